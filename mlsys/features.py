"""Feature marts through dbt, in-process.

``dbt build`` runs the project in ``sql/`` with ``as_of`` as a var; the marts export
themselves to Parquet (``materialized='external'``) so every reader after this step reads
files and only this step holds the warehouse DuckDB file, under `mlsys.dbt.warehouse_lock`.
A build may stage its marts (``features/.staging/``) until the gate passes them; `promote`
moves them into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

from mlsys import dbt, metrics, spark
from mlsys.progress import Progress
from mlsys.settings import Settings

log = logging.getLogger(__name__)

SCORING_SELECTOR = "+lead_features"
TRAINING_SELECTOR = "+training_snapshots"


class FeatureBuildError(RuntimeError):
    """dbt failed: the message names each failing model or test and dbt's reason."""


@dataclass
class FeatureBuildResult:
    as_of: date
    outputs: dict[str, Path]
    rows: dict[str, int]
    seconds: float
    node_timings: dict[str, float] = field(default_factory=dict)
    run_results: Path | None = None
    # Rows of every model that holds data after the build (tables and exported marts); views
    # and ephemeral models have none without re-running their SQL.
    model_rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{name}: {self.rows[name]:,} rows -> {path}" for name, path in self.outputs.items()]
        return f"features as of {self.as_of} built in {self.seconds:.1f}s; " + "; ".join(parts)


def _node_lines(result: Any, statuses: set[str]) -> list[str]:
    """`<resource type> <name>: <dbt's message>` for every node whose status is in `statuses`;
    a failing test's message is dbt's "Got N results, configured to fail if != 0"."""
    lines = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(getattr(node_result, "status", "")).lower()
        if status in statuses:
            node = node_result.node
            message = " ".join((node_result.message or status).split())
            line = f"{node.resource_type} {node.name}: {message}"
            if getattr(node, "compiled_path", None):
                line += f" [SQL: {node.compiled_path}]"
            lines.append(line)
    return lines


def _failures(result: Any) -> list[str]:
    return _node_lines(result, {"error", "fail", "runtime error"})


def build(
    as_of: date,
    settings: Settings,
    *,
    selector: str = SCORING_SELECTOR,
    staged: bool = False,
    full_refresh: bool = False,
    extra_vars: dict[str, Any] | None = None,
) -> FeatureBuildResult:
    """``dbt build --select <selector>`` as of ``as_of``; raises FeatureBuildError on failure.

    ``staged``: the marts go to ``features/.staging/`` (`Settings.mart_path`), where the gate
    validates them and `promote` moves them into place; the pipeline's builds do this.
    ``full_refresh``: ``--full-refresh``, the incremental stg_leads and stg_activities rebuilt
    from every landing file (docs/data-engineering.md). ``extra_vars``: more dbt vars
    (``rebuild_activities_from``/``_to``: a window of dates re-read from every file).
    """
    if not settings.raw_dir.is_dir():
        raise FeatureBuildError(
            f"no raw landing data under {settings.raw_dir}: run `mlsys generate` or land the "
            "CRM export there (docs/contracts.md)"
        )
    wanted = {
        name: settings.mart_path(name, as_of, staged=staged)
        for name in ("lead_features", "training_snapshots")
        if name in selector
    }
    for path in wanted.values():
        # DuckDB's COPY does not create folders.
        path.parent.mkdir(parents=True, exist_ok=True)
    dbt_vars = dbt.build_vars(
        settings,
        as_of,
        stage_features=staged,
        # Read by stg_activities whenever it builds from every file: a --full-refresh, and the
        # first build of a home, which is no smaller (a first build at 10M leads ran out of
        # memory in one part). An incremental build ignores it.
        activity_partitions=activity_partitions(settings),
        **(extra_vars or {}),
    )
    training = "training_snapshots" in wanted
    # cautious: a test runs only when all the models it reads are selected (the marts are
    # built separately by scoring and by retrain).
    args = dbt.args(
        settings,
        "build",
        "--select",
        selector,
        "--indirect-selection",
        "cautious",
        "--vars",
        json.dumps(dbt_vars),
        *(["--full-refresh"] if full_refresh else []),
    )
    log.info("dbt %s", " ".join(args))
    with dbt.warehouse_lock(settings):
        if staged:
            for path in wanted.values():
                # An earlier build's file that failed its gate: must not pass for this one's.
                spark.remove(path)
        start = perf_counter()
        if training and settings.engine == "duckdb":
            _add_snapshots_in_parts(as_of, settings, dbt_vars)
        result = dbt.run(args, settings, progress=True)
        seconds = perf_counter() - start
        table_rows: dict[str, int] = {}
        if result.exception is None and result.success:
            models = [r.node for r in result.result.results if r.node.resource_type == "model"]
            if settings.engine == "duckdb":
                table_rows = _table_rows(models, settings)  # reads the warehouse: still ours
            for path in wanted.values():
                spark.flatten_mart(path)  # Spark's folder -> the contract's one file
    _raise_on_failure(result)
    for warning in _node_lines(result, {"warn"}):
        log.warning("dbt %s", warning)

    timings = {
        r.node.name: float(r.execution_time or 0.0)
        for r in result.result.results
        if r.node.resource_type == "model"
    }
    if staged:
        wanted = {name: _staged_output(name, path, as_of, settings) for name, path in wanted.items()}
    rows = {name: _parquet_rows(path) for name, path in wanted.items()}
    model_rows = {**table_rows, **rows}
    run_results = settings.dbt_target_dir / "run_results.json"
    kept = _keep_run_results(run_results, settings, as_of)
    for name, count in rows.items():
        metrics.gauge(f"features.rows.{name}", count, settings)
    if "lead_features" in rows:
        metrics.gauge("features.rows", rows["lead_features"], settings)
    metrics.timing("features.build_seconds", seconds, settings)
    for model, secs in timings.items():
        metrics.timing(f"features.model_seconds.{metrics.metric_safe(model)}", secs, settings)
    for model, count in model_rows.items():
        metrics.gauge(f"features.model_rows.{metrics.metric_safe(model)}", count, settings)
    built = FeatureBuildResult(as_of, wanted, rows, seconds, timings, kept, model_rows)
    log.info(built.summary())
    return built


def rebuild_vars(window: tuple[date, date] | None) -> dict[str, str]:
    """The dbt vars that make stg_activities delete and re-read a window of days (both
    included) from every landing file (sql/macros/activity_landings.sql)."""
    if window is None:
        return {}
    first, last = window
    if last < first:
        raise ValueError(f"the window to rebuild ends ({last}) before it starts ({first})")
    return {"rebuild_activities_from": first.isoformat(), "rebuild_activities_to": last.isoformat()}


def _raise_on_failure(result: Any) -> None:
    if result.exception is not None:
        raise FeatureBuildError(f"dbt could not run: {result.exception}") from result.exception
    if result.success:
        return
    failures = _failures(result) or ["dbt reported failure without a failing node"]
    out_of_memory = [line for line in failures if "out of memory" in line.lower()]
    if out_of_memory:
        model = out_of_memory[0].split(":", 1)[0]
        # The snapshots' models (built by training builds alone) have their own memory limit
        # and can add fewer dates per run; the other models (stg_activities on a training
        # build's first run, too) run under the build's limit and split their de-duplication
        # by MLSYS_ACTIVITY_PARTITIONS.
        if model.split(" ", 1)[-1] in (SNAPSHOT_FEATURES_MODEL, "training_snapshots"):
            hint = (
                "set MLSYS_SNAPSHOTS_PER_BUILD=1 (one new snapshot date per dbt run) or raise "
                "MLSYS_DUCKDB_TRAINING_MEMORY_LIMIT (default 3GB)"
            )
        else:
            hint = "raise MLSYS_DUCKDB_MEMORY_LIMIT or set MLSYS_ACTIVITY_PARTITIONS higher"
        raise FeatureBuildError(f"DuckDB ran out of memory in {model}: {hint}")
    raise FeatureBuildError("dbt build failed:\n  " + "\n  ".join(failures))


# Landed activities one dbt run of the kept training snapshots reads per new snapshot date:
# each date de-duplicates and aggregates the activities before it, so a run adding k dates holds
# k such hash tables. Above this, a first build adds its dates in several runs.
ACTIVITIES_PER_SNAPSHOT_BUILD = 20_000_000
SNAPSHOT_FEATURES_MODEL = "int_training_snapshot_features"


def snapshot_dates(as_of: date, settings: Settings) -> list[date]:
    """The weekly training snapshot dates as of ``as_of``, oldest first (the dbt macro
    training_snapshot_dates is the same rule): the last is as_of - horizon_days."""
    last = as_of - timedelta(days=settings.horizon_days)
    return [last - timedelta(days=7 * back) for back in range(settings.snapshot_weeks - 1, -1, -1)]


def snapshots_per_build(settings: Settings) -> int:
    """New snapshot dates one dbt run adds (0: all): MLSYS_SNAPSHOTS_PER_BUILD, or from the row
    count in the Parquet footers of the landed activities."""
    if settings.snapshots_per_build > 0:
        return settings.snapshots_per_build
    rows = _landed_rows(settings, "activities")
    per_build = ACTIVITIES_PER_SNAPSHOT_BUILD // max(1, rows)
    return 0 if per_build >= settings.snapshot_weeks else max(1, per_build)


def kept_snapshot_dates(settings: Settings) -> set[date]:
    """The snapshot dates the warehouse keeps features of (none before the first build)."""
    if not settings.warehouse.exists():
        return set()
    import duckdb

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [SNAPSHOT_FEATURES_MODEL]
        ).fetchall()[0][0]
        if not exists:
            return set()
        return {d for (d,) in con.sql(f"select distinct as_of from {SNAPSHOT_FEATURES_MODEL}").fetchall()}  # noqa: S608 - a constant name


def _add_snapshots_in_parts(as_of: date, settings: Settings, dbt_vars: dict[str, Any]) -> None:
    """Before the build of the mart, add the missing snapshot dates a few per dbt run when there
    are more than `snapshots_per_build` of them (a first build on a big CRM); the mart's build
    then adds the rest. Runs under the caller's warehouse lock."""
    per_build = snapshots_per_build(settings)
    wanted = snapshot_dates(as_of, settings)
    project_keeps = any(settings.dbt_project_dir.rglob(f"{SNAPSHOT_FEATURES_MODEL}.sql"))
    missing = [d for d in wanted if d not in kept_snapshot_dates(settings)] if project_keeps else []
    log.info(
        "training snapshots as of %s: %d of %d weekly dates kept, %d to compute",
        as_of,
        len(wanted) - len(missing),
        len(wanted),
        len(missing),
    )
    if not per_build or len(missing) <= per_build:
        return
    part_vars = {**dbt_vars, "new_snapshots_per_build": per_build}
    args = dbt.args(
        settings, "run", "--select", f"+{SNAPSHOT_FEATURES_MODEL}", "--vars", json.dumps(part_vars)
    )
    what = f"training snapshots: {per_build} new dates per dbt run"
    with Progress(what, len(missing), unit="dates").start_heartbeat() as progress:
        for _ in wanted:  # each run adds at least one date: bounded
            _raise_on_failure(dbt.run(args, settings))
            left = [d for d in wanted if d not in kept_snapshot_dates(settings)]
            progress.advance(len(missing) - len(left) - progress.done_count, detail=f"{len(left)} to compute")
            if len(left) <= per_build:
                return


# Activities per part when a full refresh of stg_activities splits the de-duplication by lead (measured,
# 2 cores, 1.5 GB DuckDB limit: 30M activities gain nothing from splitting; 150M and 300M are
# fastest in 8 parts, 16 is slower again: every part re-reads the files).
ACTIVITIES_PER_PARTITION = 20_000_000
MAX_ACTIVITY_PARTITIONS = 8


def activity_partitions(settings: Settings) -> int:
    """The dbt var activity_partitions: MLSYS_ACTIVITY_PARTITIONS, or from the row count in
    the Parquet footers of the landed activities (no data is read)."""
    if settings.activity_partitions > 0:
        return settings.activity_partitions
    rows = _landed_rows(settings, "activities")
    return max(1, min(MAX_ACTIVITY_PARTITIONS, rows // ACTIVITIES_PER_PARTITION))


def _landed_rows(settings: Settings, table: str) -> int:
    """Rows of a landed raw table from its Parquet footers (no data read); 0 when unreadable."""
    import pyarrow.parquet as pq

    try:
        return sum(pq.read_metadata(f).num_rows for f in (settings.raw_dir / table).glob("*.parquet"))
    except Exception:  # noqa: BLE001 - an unreadable file is the gate's to report, not ours
        return 0


def _staged_output(mart: str, staged: Path, as_of: date, settings: Settings) -> Path:
    """The staged file dbt wrote; a project whose ``feature_location`` predates the
    ``stage_features`` var wrote the final file instead, which is said loudly and used."""
    if staged.exists():
        return staged
    final = settings.mart_path(mart, as_of)
    if final.exists():
        log.warning(
            "the dbt project wrote %s in place, not to %s: its feature_location macro ignores "
            "var('stage_features'), so these features are visible before the gate passes "
            "(see sql/macros/as_of.sql)",
            final,
            staged.parent,
        )
        return final
    raise FeatureBuildError(f"dbt reported success but wrote no {mart} file at {staged}")


def promote(mart: str, as_of: date, settings: Settings) -> Path | None:
    """Move a staged mart that passed its gate into place (one rename on the same file
    system: readers see the old file or the new one, never part of one). None when nothing
    was staged (the gate validated the file in place)."""
    staged = settings.mart_path(mart, as_of, staged=True)
    if not staged.exists():
        return None
    final = settings.mart_path(mart, as_of)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir():  # a Spark folder a dbt run by hand left: the file replaces it
        shutil.rmtree(final)
    os.replace(staged, final)
    log.info("%s of %s passed the gate: %s", mart, as_of, final)
    return final


def _table_rows(models: list[Any], settings: Settings) -> dict[str, int]:
    """Row counts of the table-materialized models, from the warehouse dbt just released.

    dbt-duckdb reports no rows_affected, and counting a view would re-run its SQL (for
    stg_activities, the de-duplication of every activity); a table's count is metadata.
    """
    tables = [m for m in models if m.config.materialized in {"table", "incremental"}]
    if not tables:
        return {}
    import duckdb

    counts: dict[str, int] = {}
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        for node in tables:
            relation = ".".join(f'"{part}"' for part in (node.schema, node.alias or node.name))
            counts[node.name] = int(con.sql(f"select count(*) from {relation}").fetchall()[0][0])  # noqa: S608 - quoted identifiers from dbt's manifest
    return counts


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _keep_run_results(run_results: Path, settings: Settings, as_of: date) -> Path | None:
    """dbt overwrites target/run_results.json each call; keep one per as_of for audit."""
    if not run_results.exists():
        return None
    keep_dir = settings.home / "dbt" / "run_results"
    keep_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = keep_dir / f"as_of={as_of.isoformat()}-at={stamp}.json"
    shutil.copyfile(run_results, kept)
    return kept
