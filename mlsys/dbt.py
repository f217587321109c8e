"""dbt as mlsys runs it: one home for its command line, environment, vars and warehouse lock.

Every dbt call of the project goes through here: the nightly and weekly builds
(`mlsys.features`), `dbt parse` for the feature catalogue (`mlsys.catalog`), the compile of
the feature SQL for on-demand payloads, and `dbt docs generate` for the local UI. So the
options, the folders (target and logs per `MLSYS_HOME`, never in the repo) and the vars a
build passes are written once, and the compiled text on-demand runs is what the nightly
build runs.

DuckDB lets one process write a file, and a second opener fails with "Could not set lock on
file". In Airflow the 1-slot `warehouse` pool keeps the DAGs' builds apart; `warehouse_lock`
(an advisory lock next to the file) also queues builds that do not go through the pool: the
CLI next to a running DAG, a backfill with the pool resized, two local schedulers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger(__name__)


class WarehouseLockTimeout(RuntimeError):
    """Another build held the warehouse longer than a build may wait."""


class ManifestError(RuntimeError):
    """`dbt parse` could not write the project's manifest."""


def env(settings: Settings) -> dict[str, str]:
    """The variables profiles.yml and the sources read (`env_var()`), from the settings."""
    variables = {
        "MLSYS_DATA_DIR": str(settings.data_dir),
        "MLSYS_WAREHOUSE": str(settings.warehouse),
        "MLSYS_DBT_TARGET": settings.dbt_target,
        "MLSYS_SPARK_MASTER": settings.spark_master,
        "MLSYS_SPARK_WAREHOUSE_DIR": str(settings.spark_warehouse_dir),
        # The Python of Spark's workers is fixed when dbt-spark starts the session, which the
        # scoring job then reuses: this interpreter, unless the deployment chose another.
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON") or sys.executable,
    }
    if settings.spark_remote:  # unset, the profile's own default applies (a dbt run by hand)
        variables["MLSYS_SPARK_REMOTE"] = settings.spark_remote
    return variables


def args(
    settings: Settings,
    command: str,
    *extra: str,
    target_path: Path | None = None,
    log_path: Path | None = None,
) -> list[str]:
    """dbt's command line for this project and home; `extra` may start with a sub-command
    (`args(s, "docs", "generate")`), so the shared options go last. `target_path` and
    `log_path` default to the home's (`Settings.dbt_target_dir`, `dbt_log_dir`)."""
    return [
        command,
        *extra,
        "--project-dir",
        str(settings.dbt_project_dir),
        "--profiles-dir",
        str(settings.dbt_project_dir),
        "--target-path",
        str(target_path or settings.dbt_target_dir),
        "--log-path",
        str(log_path or settings.dbt_log_dir),
    ]


def build_vars(settings: Settings, as_of: date | str, **extra: Any) -> dict[str, Any]:
    """The vars of a build as of `as_of`: what the models read besides the raw data. `extra`
    adds the build's own (`stage_features`, `activity_partitions`)."""
    as_of_text = as_of.isoformat() if isinstance(as_of, date) else as_of
    return {
        "as_of": as_of_text,
        "horizon_days": settings.horizon_days,
        "snapshot_weeks": settings.snapshot_weeks,
        **extra,
    }


def executable() -> str:
    """The dbt executable next to this Python (for a dbt run in a subprocess of its own)."""
    local = Path(sys.executable).with_name("dbt")
    found = str(local) if local.exists() else shutil.which("dbt")
    if not found:
        raise FileNotFoundError("the dbt executable is not installed next to this Python")
    return found


def docs_args(settings: Settings, target_path: Path) -> list[str]:
    """`dbt docs generate --static` into `target_path`, a folder of its own: the docs must not
    rewrite the pipeline's manifest (the feature catalogue's source)."""
    return [executable(), "--quiet", *args(settings, "docs", "generate", "--static", target_path=target_path)]


@contextmanager
def warehouse_lock(settings: Settings, *, timeout_seconds: float = 3 * 3600) -> Iterator[None]:
    """Hold `<warehouse>.lock` exclusively: builds on one warehouse run one after the other.

    flock(2) is released by the kernel when the holder dies (even by SIGKILL), so a killed
    build never leaves the warehouse locked. A waiter logs who holds it and gives up after
    `timeout_seconds` (the DAGs' run timeouts are shorter)."""
    import time

    path = settings.warehouse.with_name(settings.warehouse.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_seconds
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                    log.info("warehouse %s is being built by %s: waiting", settings.warehouse, holder)
                    waited = True
                if time.monotonic() > deadline:
                    raise WarehouseLockTimeout(
                        f"the warehouse {settings.warehouse} stayed locked for {timeout_seconds:.0f}s"
                    ) from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {datetime.now(UTC).isoformat()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class BuildProgress:
    """A dbtRunner callback: a line when each model starts and ends, and a heartbeat line
    every few seconds saying which models are running (`mlsys.progress`), so a model that
    runs for minutes (a full refresh of the activities) never looks hung."""

    def __init__(self, what: str = "dbt build") -> None:
        from mlsys.progress import Progress

        self.progress = Progress(what, unit="nodes").start_heartbeat()
        self.running: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        import time

        name = event.info.name
        if name not in ("NodeStart", "NodeFinished"):
            return
        node = event.data.node_info
        if name == "NodeStart":
            self.running[node.node_name] = time.monotonic()
            if node.resource_type == "model":
                log.info("dbt model %s: started", node.node_name)
        else:
            started = self.running.pop(node.node_name, time.monotonic())
            if node.resource_type == "model":
                log.info(
                    "dbt model %s: %s in %.1fs", node.node_name, node.node_status, time.monotonic() - started
                )
            self.progress.advance(1)
        self.progress.describe("running " + ", ".join(self.running) if self.running else "")

    def finish(self, *, failed: bool = False) -> None:
        self.progress.finish(failed=failed)


class ProfileTargetError(ValueError):
    """The dbt project's profiles.yml has no output named as the settings' dbt target."""


def check_target(settings: Settings) -> None:
    """Fail before dbt starts when profiles.yml lacks the target the settings chose (a
    source built for DuckDB only, run with MLSYS_ENGINE=spark): one line saying what to set."""
    import yaml

    profiles = settings.dbt_project_dir / "profiles.yml"
    try:
        outputs = next(iter(yaml.safe_load(profiles.read_text()).values()))["outputs"]
    except (OSError, AttributeError, KeyError, StopIteration, TypeError, yaml.YAMLError):
        return  # dbt's own error says what is wrong with the file
    if settings.dbt_target not in outputs:
        raise ProfileTargetError(
            f"{profiles} has no target {settings.dbt_target!r} (MLSYS_DBT_TARGET, or the default "
            f"of MLSYS_ENGINE={settings.engine}); its targets: {', '.join(sorted(outputs))}. "
            "This dbt project does not build on that engine (docs/spark.md)."
        )


def run(dbt_args: list[str], settings: Settings, *, progress: bool = False) -> Any:
    """Invoke dbt in this process and release the warehouse file afterwards. ``progress``:
    report each model and a heartbeat while it runs (`BuildProgress`)."""
    from dbt.cli.main import dbtRunner

    check_target(settings)

    # dbt reads these through env_var(); set them for this call only. Leaving them set would
    # leak one home's paths into every later Settings.from_env() of a long-lived process
    # (the api-server plugin, a test session).
    overrides = env(settings)
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    manifest_before = manifest_stamp(settings)
    reporter = BuildProgress(f"dbt {dbt_args[0]}") if progress else None
    failed = True
    try:
        result = dbtRunner(callbacks=[reporter] if reporter else []).invoke(dbt_args)
        failed = not result.success
        return result
    finally:
        if reporter is not None:
            reporter.finish(failed=failed)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _release_duckdb()
        if manifest_stamp(settings) != manifest_before:
            record_manifest_project(settings)


def _release_duckdb() -> None:
    """dbt-duckdb caches its DuckDB connection per process; close it so the file lock goes."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - adapter always installed with the package
        return
    with DuckDBConnectionManager._LOCK:
        duckdb_env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if duckdb_env is not None:
        try:
            duckdb_env.close()
        except Exception as exc:  # noqa: BLE001 - best effort, the process may end anyway
            log.debug("closing dbt's DuckDB environment failed: %s", exc)


# The manifest: what the feature catalogue reads


def manifest_path(settings: Settings) -> Path:
    return settings.dbt_target_dir / "manifest.json"


def _origin_path(settings: Settings) -> Path:
    return settings.dbt_target_dir / "mlsys_manifest_origin.json"


def manifest_stamp(settings: Settings) -> tuple[int, int] | None:
    """(mtime, size) of the manifest, to tell whether a dbt call rewrote it."""
    try:
        stat = manifest_path(settings).stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_manifest_project(settings: Settings) -> None:
    """Note which project the manifest in the target folder was written from.

    The target folder is per MLSYS_HOME, not per project, and the manifest does not name its
    project folder: without this note, pointing MLSYS_DBT_PROJECT_DIR at another copy of the
    project would let the catalogue read the previous project's features.
    """
    path = manifest_path(settings)
    if path.exists():
        origin = {"project_dir": str(settings.dbt_project_dir), "manifest_sha256": _sha256(path)}
        _origin_path(settings).write_text(json.dumps(origin))


def _manifest_is_current(settings: Settings) -> bool:
    path, origin_path = manifest_path(settings), _origin_path(settings)
    if not path.exists() or not origin_path.exists():
        return False
    try:
        origin = json.loads(origin_path.read_text())
    except json.JSONDecodeError:
        return False
    # The hash catches a manifest rewritten by a dbt run this package did not start.
    return bool(
        origin.get("project_dir") == str(settings.dbt_project_dir)
        and origin.get("manifest_sha256") == _sha256(path)
    )


def ensure_manifest(settings: Settings) -> Path:
    """The manifest of the configured project; `dbt parse` writes it when it is missing or
    was written from another project folder.

    A manifest of the right project is used as it is, on purpose: it is the one written by
    the build of the marts being read, so features and catalogue always agree.
    """
    path = manifest_path(settings)
    if not _manifest_is_current(settings):
        # Partial parsing would start from the state of whatever project was parsed last.
        result = run(args(settings, "parse", "--no-partial-parse"), settings)
        if not result.success or not path.exists():
            raise ManifestError(
                f"dbt parse of {settings.dbt_project_dir} failed, no manifest at {path}: {result.exception}"
            )
    return path


def project_name(settings: Settings) -> str:
    """The source's name as its dbt project declares it (``name:`` in dbt_project.yml), or the
    project's folder when that file cannot tell: how errors name the source."""
    import yaml

    path = Path(settings.dbt_project_dir) / "dbt_project.yml"
    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        name = None
    if name:
        return str(name)
    folder = Path(settings.dbt_project_dir)
    return folder.parent.name if folder.name == "dbt" else folder.name
