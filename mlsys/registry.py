"""MLflow tracking and registry: one experiment, the `lead_scoring` model, aliases.

Aliases, not stages (deprecated in MLflow 3): `champion` is what scores, `challenger` is the
latest candidate. Rolling back is pointing `champion` at an older version.

Nightly scoring keeps a local copy of the champion (`champion_cache`, docs/reliability.md,
docs/adr/0003-champion-cache.md): under `$MLSYS_HOME/model_cache/`, keyed by tracking URI,
model name, version and the version's source. The registry decides which version scores
whenever it answers; the copy is used without it only when asked (the last Airflow try), and
then loudly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class NoChampionError(RuntimeError):
    pass


class RegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry store did not answer (after MLflow's own retries)."""


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store and make sure the experiment exists."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        db_path = settings.mlflow_tracking_uri.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(db_path) or ".", exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # `models:/` URIs resolve against the registry URI, a separate process-wide setting: pin
    # it too, or a process that switched homes (a test session, a long-lived server) could
    # load version N of another store's model.
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
        location = None
        if "://" not in settings.mlflow_tracking_uri or settings.mlflow_tracking_uri.startswith("sqlite"):
            location = settings.mlflow_artifact_root.as_uri()
        experiment_id = mlflow.create_experiment(settings.experiment_name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    configure(settings)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def alias_version(settings: Settings, alias: str, *, mlflow_client: Any = None) -> Any | None:
    """The model version holding `alias`, or None when no version does. `mlflow_client`: an
    MlflowClient the caller keeps (a server asking every few seconds), else a new one.

    Inside `champion_cache(...)` the champion's (version, source) is remembered, and when the
    registry cannot be reached the remembered one is returned if the policy allows it."""
    from mlflow.exceptions import MlflowException

    policy = _POLICY.get()
    try:
        mlflow_client = mlflow_client or client(settings)
        found = mlflow_client.get_model_version_by_alias(settings.model_name, alias)
    except Exception as exc:
        if isinstance(exc, MlflowException) and (
            "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", ""))
            or "not found" in str(exc).lower()
            or "does not exist" in str(exc).lower()
            or _model_missing_behind_auth(settings, exc)
        ):
            return None
        if policy is None or alias != CHAMPION or not is_unreachable(exc):
            raise
        return _cached_champion(settings, policy, exc)
    if policy is not None and alias == CHAMPION:
        _remember_champion(settings, found)
    return found


def _model_missing_behind_auth(settings: Settings, exc: Exception) -> bool:
    """MLflow's basic-auth answers 403 to an account that is not admin (Airflow's service
    account) looking up an alias of a registered model that does not exist yet: it cannot tell
    a model from a prompt without one. The model itself answers 404 then; any other 403 stays
    an error."""
    from mlflow.exceptions import MlflowException

    if "PERMISSION_DENIED" not in str(getattr(exc, "error_code", "")):
        return False
    try:
        client(settings).get_registered_model(settings.model_name)
    except MlflowException as missing:
        return "RESOURCE_DOES_NOT_EXIST" in str(missing.error_code)
    return False


@dataclass
class LoadedModel:
    model: Any
    name: str
    version: str
    metadata: dict[str, Any]
    run_id: str | None

    @property
    def numeric(self) -> list[str]:
        return list(self.metadata.get("features", {}).get("numeric", []))

    @property
    def categorical(self) -> list[str]:
        return list(self.metadata.get("features", {}).get("categorical", []))

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def load_version(settings: Settings, version: str) -> LoadedModel:
    import mlflow
    import mlflow.sklearn

    policy = _POLICY.get()
    if policy is not None:
        return _load_through_cache(settings, str(version), policy)
    configure(settings)
    mv = client(settings).get_model_version(settings.model_name, version)
    # Load from the version's own source (a logged-model id, unique across stores), not from
    # `models:/<name>/<version>`: MLflow resolves and caches that name per process, so after
    # a process has touched another store's version N it would load that one again.
    uri = str(mv.source)
    model = mlflow.sklearn.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    return LoadedModel(model, settings.model_name, str(version), dict(info.metadata or {}), mv.run_id)


def load_champion(settings: Settings) -> LoadedModel:
    """The model holding `champion` now, pinned by version for the rest of the run."""
    version = alias_version(settings, CHAMPION)
    if version is None:
        raise NoChampionError(
            f"no version of model {settings.model_name!r} holds the {CHAMPION!r} alias in "
            f"{settings.mlflow_tracking_uri}: run `airflow dags trigger retrain` "
            "(or `mlsys train`) first"
        )
    log.info("champion is %s version %s", settings.model_name, version.version)
    return load_version(settings, str(version.version))


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))


# -- the champion cache of nightly scoring ------------------------------------------------------


@dataclass(frozen=True)
class CachePolicy:
    """`fallback`: may a cached champion stand in when the registry does not answer?
    `used_cache` gets an entry each time one did (the caller reports it)."""

    fallback: bool
    used_cache: list[str] = field(default_factory=list)


_POLICY: ContextVar[CachePolicy | None] = ContextVar("mlsys_champion_cache", default=None)


@contextmanager
def champion_cache(*, fallback: bool) -> Iterator[CachePolicy]:
    """Within this block `alias_version(champion)` and `load_version` go through the local
    champion cache: every version the registry names is kept (and loaded from the copy when
    its source matches), and with ``fallback=True`` a registry that cannot be reached is
    replaced by the last champion it named. Nightly scoring only; other callers never see it."""
    policy = CachePolicy(fallback)
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


@dataclass(frozen=True)
class CachedVersion:
    """What `alias_version` returns from the cache: the fields plan/score read."""

    version: str
    source: str
    run_id: str | None
    cached: bool = True


def is_unreachable(exc: BaseException) -> bool:
    """True for "nobody answered" (connection refused/reset, timeout, DNS, 5xx after MLflow's
    own retries, a database store that cannot be opened), False for answers such as 404/403."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        name = type(seen).__name__
        if isinstance(seen, ConnectionError | TimeoutError) or name in {
            "ConnectionError",
            "ConnectTimeout",
            "ReadTimeout",
            "Timeout",
            "MaxRetryError",
            "NewConnectionError",
            "OperationalError",
        }:
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return any(
        marker in text
        for marker in (
            "Max retries exceeded",
            "Connection refused",
            "Failed to establish a new connection",
            "failed with timeout exception",
            "Name or service not known",
            "too many 5",  # urllib3: "too many 503 error responses"
            "unable to open database file",
        )
    )


def cache_dir(settings: Settings) -> Path:
    """One folder per tracking store and model: a copy is never taken for another store's."""
    store = hashlib.sha256(settings.mlflow_tracking_uri.encode()).hexdigest()[:16]
    return settings.home / "model_cache" / store / settings.model_name


def _entry_dir(settings: Settings, version: str, source: str) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return cache_dir(settings) / f"v{version}-{digest}"


def _pointer(settings: Settings) -> Path:
    return cache_dir(settings) / "champion.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def _remember_champion(settings: Settings, mv: Any) -> None:
    record = {"version": str(mv.version), "source": str(mv.source), "run_id": mv.run_id}
    path = _pointer(settings)
    try:
        if path.exists() and {k: v for k, v in json.loads(path.read_text()).items() if k in record} == record:
            return
        _write_json(path, {**record, "seen_at": datetime.now(UTC).isoformat()})
    except (OSError, ValueError) as exc:  # the cache is a spare; scoring goes on without it
        log.warning("could not record the champion in the model cache: %s", exc)


def _fallback_metric(settings: Settings, used: bool) -> None:
    from mlsys import metrics

    metrics.gauge("score.champion_from_cache", int(used), settings)


def _cached_champion(settings: Settings, policy: CachePolicy, exc: BaseException) -> CachedVersion:
    where = settings.mlflow_tracking_uri
    if not policy.fallback:
        raise RegistryUnavailableError(
            f"the MLflow registry at {where} cannot be reached ({_short(exc)}); the task retries "
            "with backoff, and its last try scores with the cached champion if there is one"
        ) from exc
    try:
        record = json.loads(_pointer(settings).read_text())
        entry = _entry_dir(settings, str(record["version"]), str(record["source"]))
    except (OSError, ValueError, KeyError):
        record, entry = None, None
    if record is None or entry is None or not _entry_valid(entry):
        raise RegistryUnavailableError(
            f"the MLflow registry at {where} cannot be reached ({_short(exc)}) and no cached copy "
            f"of the champion is under {cache_dir(settings)}: nothing can score until it answers"
        ) from exc
    log.error(
        "MLFLOW REGISTRY UNREACHABLE at %s (%s): scoring with the CACHED champion %s version %s "
        "(last named champion at %s); an alias moved since then is not seen",
        where,
        _short(exc),
        settings.model_name,
        record["version"],
        record.get("seen_at", "?"),
    )
    _fallback_metric(settings, True)
    policy.used_cache.append(f"champion alias -> version {record['version']}")
    return CachedVersion(str(record["version"]), str(record["source"]), record.get("run_id"))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _entry_valid(entry: Path) -> bool:
    """The copy is complete (written to a temporary folder, then renamed) and unaltered."""
    try:
        meta = json.loads((entry / "entry.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("sha256")) and meta.get("sha256") == _tree_digest(entry / "model")


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    if not folder.is_dir():
        return ""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _store_entry(settings: Settings, mv: Any, entry: Path) -> None:
    """Download the version's model into the cache: a temporary folder, then a rename."""
    import mlflow

    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=str(mv.source),
            dst_path=str(tmp / "download"),
            tracking_uri=settings.mlflow_tracking_uri,
            registry_uri=settings.mlflow_tracking_uri,
        )
        os.rename(local, tmp / "model")
        meta = {
            "model_name": settings.model_name,
            "version": str(mv.version),
            "source": str(mv.source),
            "run_id": mv.run_id,
            "tracking_uri": settings.mlflow_tracking_uri,
            "cached_at": datetime.now(UTC).isoformat(),
            "sha256": _tree_digest(tmp / "model"),
        }
        (tmp / "entry.json").write_text(json.dumps(meta))
        shutil.rmtree(entry, ignore_errors=True)
        os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(settings, keep=entry)


def _prune(settings: Settings, keep: Path, n_kept: int = 3) -> None:
    """Keep the newest few copies (a rollback to the previous champion stays cached)."""
    entries = sorted(
        (p for p in cache_dir(settings).glob("v*-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[n_kept - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _load_entry(settings: Settings, entry: Path) -> LoadedModel:
    import mlflow
    import mlflow.sklearn

    meta = json.loads((entry / "entry.json").read_text())
    local = entry / "model"
    model = mlflow.sklearn.load_model(str(local))
    # The MLmodel file itself: get_model_info() would ask the tracking server about the model.
    info = mlflow.models.Model.load(str(local / "MLmodel"))
    return LoadedModel(
        model, settings.model_name, str(meta["version"]), dict(info.metadata or {}), meta.get("run_id")
    )


def _load_through_cache(settings: Settings, version: str, policy: CachePolicy) -> LoadedModel:
    try:
        mv = client(settings).get_model_version(settings.model_name, version)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        if not policy.fallback:
            raise RegistryUnavailableError(
                f"the MLflow registry at {settings.mlflow_tracking_uri} cannot be reached "
                f"({_short(exc)}); the task retries with backoff"
            ) from exc
        candidates = sorted(cache_dir(settings).glob(f"v{version}-*"), key=lambda p: p.stat().st_mtime)
        valid = [p for p in reversed(candidates) if _entry_valid(p)]
        if not valid:
            raise RegistryUnavailableError(
                f"the MLflow registry at {settings.mlflow_tracking_uri} cannot be reached "
                f"({_short(exc)}) and version {version} of {settings.model_name!r} is not cached"
            ) from exc
        log.error(
            "MLFLOW REGISTRY UNREACHABLE at %s: loading %s version %s from the local cache %s",
            settings.mlflow_tracking_uri,
            settings.model_name,
            version,
            valid[0],
        )
        _fallback_metric(settings, True)
        policy.used_cache.append(f"version {version}")
        return _load_entry(settings, valid[0])
    entry = _entry_dir(settings, version, str(mv.source))
    if not _entry_valid(entry):
        try:
            _store_entry(settings, mv, entry)
        except OSError as exc:  # a full or read-only disk: load straight from MLflow as before
            log.warning("could not cache %s version %s: %s", settings.model_name, version, exc)
            policy_token = _POLICY.set(None)
            try:
                return load_version(settings, version)
            finally:
                _POLICY.reset(policy_token)
    _fallback_metric(settings, False)
    return _load_entry(settings, entry)
