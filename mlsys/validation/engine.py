"""Running a suite in Great Expectations over DuckDB.

Expectations are pushed down into DuckDB through GX's SQL path (``duckdb-engine``): the
datasource is an in-memory DuckDB database and each suite's table asset is a VIEW over
``read_parquet([...])`` that is (re)created before each run, so memory stays bounded (DuckDB
streams the files) and no DuckDB *file* is opened, in particular never the warehouse. GX 1.x
returns empty metric results for duckdb-engine (upstream GX issues 10738 and 11579: it closes
the connection before fetching the rows) unless the dialect keeps one persisted connection, as
GX does for SQLite: :func:`_treat_duckdb_as_persisted_dialect` registers ``duckdb`` as such a
dialect; the same single connection is what makes the in-memory view visible to every metric
query. Whatever GX does, ``report.build_report`` fails the run when an expectation comes back
without an observed value (the "passed vacuously" guard)."""

from __future__ import annotations

import glob as globlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlsys.settings import GX_DATA_DOCS_SITE as DATA_DOCS_SITE
from mlsys.settings import Settings
from mlsys.validation.preflight import failed_report, first_line, read_input_sql, sql_str
from mlsys.validation.report import ValidationReport, build_report
from mlsys.validation.spec import SuiteSpec
from mlsys.validation.state import baseline_row_count, read_state, row_count_floor, state_key, write_state

logger = logging.getLogger(__name__)

RUNTIME_DIR_VARIABLE = "MLSYS_GX_RUNTIME_DIR"
_DUCKDB_MEMORY_LIMIT = "256MB"  # DuckDB spills to <data_dir>/gx/tmp beyond this
_DUCKDB_THREADS = 2


class _DuckDBDialect(StrEnum):
    """Looks like GX's GXSqlDialect members: compares equal to "duckdb" and has ``.value``."""

    DUCKDB = "duckdb"


def _treat_duckdb_as_persisted_dialect() -> bool:
    """Make GX keep one persisted connection for duckdb-engine (GX issues 10738 and 11579).

    GX executes a metric query inside ``with engine.connect()`` and fetches the rows after the
    connection is closed; duckdb-engine's cursor shares the connection, so the rows are gone and
    every metric comes back empty. Dialects listed in ``_PERSISTED_CONNECTION_DIALECTS`` (SQLite,
    SQL Server, ...) instead get a StaticPool engine and one connection kept open, which is also
    what lets the in-memory VIEW live across queries. Returns False if GX changed its internals;
    the vacuous-pass guard then fails every run loudly instead of passing silently.
    """
    try:
        from great_expectations.execution_engine import sqlalchemy_execution_engine as see
    except ImportError:  # pragma: no cover
        return False
    current = getattr(see, "_PERSISTED_CONNECTION_DIALECTS", None)
    if current is None:
        logger.warning("GX internals changed: cannot mark duckdb as a persisted-connection dialect")
        return False
    if any(d == "duckdb" for d in current):
        return True
    see._PERSISTED_CONNECTION_DIALECTS = (*current, _DuckDBDialect.DUCKDB)
    return True


def import_gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # before: GX logs on import
    import great_expectations as gx

    _quiet_gx_logging()
    _treat_duckdb_as_persisted_dialect()
    return gx


def _quiet_gx_logging() -> None:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations."):
            logging.getLogger(name).setLevel(logging.WARNING)


_CONTEXTS: dict[tuple[str, str], Any] = {}
_MAX_CONTEXTS = 8


def get_context(settings: Settings) -> Any:
    """One File Data Context per (context folder, runtime folder), cached for the process."""
    root = Path(settings.gx_context_dir)
    runtime = settings.gx_runtime_dir
    key = (str(root), str(runtime))
    context = _CONTEXTS.get(key)
    if context is not None:
        return context
    while len(_CONTEXTS) >= _MAX_CONTEXTS:  # tests create one per temporary data dir
        _CONTEXTS.pop(next(iter(_CONTEXTS)))
    if not (root / "great_expectations.yml").is_file():
        raise FileNotFoundError(f"no GX File Data Context at {root} (great_expectations.yml missing)")
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    runtime.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(
        mode="file",
        context_root_dir=str(root),
        runtime_environment={RUNTIME_DIR_VARIABLE: str(runtime)},
    )
    # In memory only (not saved): the committed great_expectations.yml already says so.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    _quiet_gx_logging()
    _CONTEXTS[key] = context
    return context


def execute(execution_engine: Any, statements: Sequence[str]) -> None:
    """Run statements on GX's own (persisted) DuckDB connection and commit."""
    with execution_engine.get_connection() as connection:
        if connection.in_transaction():
            connection.rollback()  # GX's queries leave a read transaction open on this connection
        for statement in statements:
            connection.exec_driver_sql(statement)
        connection.commit()


def _prepare_view(
    checkpoint: Any, suite: str, files: Sequence[str], settings: Settings, casts: Mapping[str, str]
) -> Any:
    definitions = list(checkpoint.validation_definitions)
    if len(definitions) != 1:
        raise RuntimeError(f"checkpoint {checkpoint.name!r} must have exactly one validation definition")
    asset = definitions[0].batch_definition.data_asset
    execution_engine = asset.datasource.get_execution_engine()
    spill = spill_dir(settings)
    statements = [
        "SET TimeZone = 'UTC'",
        f"SET memory_limit = '{_DUCKDB_MEMORY_LIMIT}'",
        f"SET threads = {_DUCKDB_THREADS}",
        "SET preserve_insertion_order = false",
        # DuckDB draws a progress bar on stdout for long scans: noise in a task log.
        "SET enable_progress_bar = false",
        # A mistyped column is read with TRY_CAST (preflight.read_input_sql); DuckDB's
        # type_pushdown turns that into a cast inside the CSV reader, which fails on the first
        # value that does not cast instead of reading it as null.
        "SET disabled_optimizers = 'type_pushdown'",
    ]
    # DuckDB refuses to switch its temp directory once it has spilled there, even to the same
    # path, so it is set once per connection (the context and its connection are cached).
    if _current_setting(execution_engine, "temp_directory") != str(spill):
        statements.append(f"SET temp_directory = {sql_str(str(spill))}")
    statements.append(
        f'CREATE OR REPLACE VIEW "{asset.table_name}" AS SELECT * FROM {read_input_sql(files, casts)}'  # noqa: S608 - our table name, quoted paths
    )
    execute(execution_engine, statements)
    return execution_engine


def spill_dir(settings: Settings) -> Path:
    """This process's DuckDB spill folder; those of processes that are gone are removed."""
    root = settings.gx_runtime_dir / "tmp"
    mine = root / str(os.getpid())
    mine.mkdir(parents=True, exist_ok=True)
    for other in root.iterdir():
        if other.name.isdigit() and other != mine and not _pid_alive(int(other.name)):
            shutil.rmtree(other, ignore_errors=True)
    return mine


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _current_setting(execution_engine: Any, name: str) -> str | None:
    with execution_engine.get_connection() as connection:
        if connection.in_transaction():
            connection.rollback()
        value = connection.exec_driver_sql(f"SELECT current_setting('{name}')").scalar()
        connection.commit()
    return None if value is None else str(value)


def run_suite(
    suite: str,
    pattern: str,
    settings: Settings,
    run_time: datetime,
    as_of: date | None,
    spec: SuiteSpec,
    *,
    min_row_count: int | None = None,
    record: bool = True,
    casts: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Run one suite's checkpoint on the files of ``pattern``. ``casts``: mistyped columns
    (found before GX) read with TRY_CAST; the run then records no row-count baseline."""
    casts = casts or {}
    files = sorted(globlib.glob(pattern))
    context = get_context(settings)
    checkpoint = context.checkpoints.get(suite)
    try:
        execution_engine = _prepare_view(checkpoint, suite, files, settings, casts)
    except Exception as exc:
        # Not the data's fault (the files passed the pre-checks): a plain error, so the task's
        # retry applies, with the one line that says what DuckDB refused.
        raise RuntimeError(
            f"GX could not set up DuckDB for suite {suite!r} on {pattern}: {first_line(exc)}"
        ) from exc
    key = state_key(spec.dated, as_of)
    previous = baseline_row_count(read_state(settings).get(suite), key)
    if min_row_count is None:
        min_row_count = row_count_floor(previous, settings.row_drop_max_share)
    anchor = as_of or run_time.date()
    floor = datetime.combine(anchor, datetime.min.time()) - timedelta(days=spec.freshness_days)
    parameters = {
        "min_row_count": min_row_count,
        "run_time": run_time.isoformat(sep=" "),
        "freshness_floor": floor.isoformat(sep=" "),
    }
    try:
        try:
            result = checkpoint.run(expectation_parameters=parameters)
        except Exception as exc:
            logger.exception("GX checkpoint %s raised", suite)
            return failed_report(
                suite,
                pattern,
                "gx_checkpoint_run",
                f"GX raised {type(exc).__name__}: {first_line(exc)}",
                row_count=None,
            )
        suite_results = list(result.run_results.values())
        if len(suite_results) != 1:
            raise RuntimeError(f"checkpoint {suite!r} returned {len(suite_results)} validation results")
        report = build_report(
            suite,
            suite_results[0],
            source=pattern,
            data_docs=_data_docs_index(context),
            previous_row_count=previous,
            sample_rows=lambda query: _sample_rows(execution_engine, query, suite),
        )
    finally:
        try:
            execute(execution_engine, [f'DROP VIEW IF EXISTS "{suite}"'])
        except Exception:
            logger.debug("could not drop the GX view", exc_info=True)
    if record and report.success and not casts and report.row_count is not None:
        write_state(settings, suite, key, report.row_count, pattern)
    return report


def _sample_rows(execution_engine: Any, query: str, table: str, limit: int = 5) -> list[Any]:
    """Up to ``limit`` rows of a failed UnexpectedRows query (GX's SUMMARY format has none)."""
    unexpected = query.format(batch=f'"{table}"')
    sql = f"SELECT * FROM ({unexpected}) AS unexpected LIMIT {limit}"  # noqa: S608 - GX's own expectation SQL, an int
    try:
        with execution_engine.get_connection() as connection:
            cursor = connection.exec_driver_sql(sql)
            names = list(cursor.keys())
            rows = cursor.fetchall()
            connection.commit()
    except Exception:
        logger.debug("could not sample unexpected rows", exc_info=True)
        return []
    return [dict(zip(names, row, strict=False)) for row in rows]


def _data_docs_index(context: Any) -> str | None:
    try:
        sites = context.get_docs_sites_urls(site_name=DATA_DOCS_SITE)
    except Exception:
        logger.debug("no Data Docs site", exc_info=True)
        return None
    for site in sites or []:
        url = site.get("site_url")
        if url and url.startswith("file://"):
            path = unquote(urlparse(url).path)
            if Path(path).is_file():
                return path
    return None


# --------------------------------------------------------------------------------------------
