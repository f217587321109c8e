"""The Great Expectations gate: validate the landing files and the marts before anyone uses them.

Five built-in suites, one per data set of the synthetic CRM (``suites``):

* ``raw_leads``           -> ``$MLSYS_DATA_DIR/raw/leads/*.parquet``
* ``raw_activities``      -> ``$MLSYS_DATA_DIR/raw/activities/*.parquet``
* ``raw_conversions``     -> ``$MLSYS_DATA_DIR/raw/conversions/*.parquet``
* ``lead_features``       -> ``settings.lead_features_path(as_of)``
* ``training_snapshots``  -> ``settings.training_snapshots_path(as_of)``

The raw suites run before dbt (the DAGs' ``validate_raw`` task), so bad landing data never
reaches the warehouse and a corrupt file or a missing column fails here with a named check
instead of deep inside dbt. Scoring reads leads and activities; training also reads
conversions. A GX context may instead carry an ``mlsys_gate.yml`` (``spec``): another
source's suites, declared in YAML (docs/gate-format.md). The marts' suites are derived from
the marts' YAML of the dbt project, where each feature is declared (``mart_suites``).

The package, by job:

* ``suites``        the built-in raw suite definitions;
* ``mart_suites``   the marts' suites, derived from the marts' YAML of a dbt project;
* ``gate_format``   the gate format (``mlsys_gate.schema.json``), checked when a gate loads;
* ``spec``          which suites a context holds, what each reads, which stage it gates;
* ``preflight``     DuckDB checks before GX: files readable, columns and types present;
* ``engine``        running a suite in GX over an in-memory DuckDB view;
* ``report``        the report, :class:`DataValidationError`, and GX results turned into both;
* ``state``         row counts of previous successful runs (the row-drop check);
* ``incremental``   the raw gate: new landing files in full, the table by footers and keys;
* ``passes``        a mart's pass recorded next to its file (validated once per build);
* ``context_files`` the committed GX context, rendered from the definitions;
* this module       the API the pipeline and the CLI call.

Committed vs runtime: the suites live as GX 1.x files in the File Data Context at
``<repo>/great_expectations/``; after editing the definitions run
``python -m mlsys.validation write-context`` (``tests/integration/test_validation.py`` fails while the two
disagree). Validation results, Data Docs, row-count state and DuckDB spill files go to
``settings.gx_runtime_dir`` (``$MLSYS_DATA_DIR/gx``), never into the repo.

Blocking vs warning: every expectation carries ``meta.severity`` (``"error"`` or
``"warning"``). Errors fail the gate; warnings (null-rate, distribution and freshness bounds)
are logged and counted, and the run goes on. :func:`gate_all` raises one
:class:`DataValidationError` for every failed suite of a gate; its message is the readable
summary, which is also logged at ERROR.

Importing this package is cheap (no GX, no DuckDB): they are imported inside the functions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mlsys.settings import Settings
from mlsys.validation.incremental import (
    INCREMENTAL_SUITES,
    record_pass,
    unique_columns,
    validate_incrementally,
)
from mlsys.validation.preflight import preflight
from mlsys.validation.report import (
    DataValidationError,
    ExpectationFailure,
    ValidationReport,
    with_failure_first,
)
from mlsys.validation.spec import (
    GATE_SPEC_FILE,
    GateSpec,
    SuiteSpec,
    gate_spec,
    load_gate_spec,
    raw_suites,
    suite_definitions,
)
from mlsys.validation.suites import (
    ACTIVITY_TYPES,
    JOB_LEVELS,
    LEAD_FEATURES,
    RAW_ACTIVITIES,
    RAW_CONVERSIONS,
    RAW_LEADS,
    SOURCES,
    SUITES,
    TRAINING_SNAPSHOTS,
)

__all__ = [
    "ACTIVITY_TYPES",
    "GATE_SPEC_FILE",
    "JOB_LEVELS",
    "LEAD_FEATURES",
    "RAW_ACTIVITIES",
    "RAW_CONVERSIONS",
    "RAW_LEADS",
    "SOURCES",
    "SUITES",
    "TRAINING_SNAPSHOTS",
    "DataValidationError",
    "ExpectationFailure",
    "GateSpec",
    "SuiteSpec",
    "ValidationReport",
    "gate",
    "gate_all",
    "gate_spec",
    "load_gate_spec",
    "raw_suites",
    "validate_mart",
    "validate_parquet",
    "validate_raw",
]

logger = logging.getLogger(__name__)

_LOCK = threading.RLock()


def _utc_naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _pattern(parquet_glob: str | Path) -> str:
    path = Path(parquet_glob)
    if path.is_dir():
        path = path / "*.parquet"
    return str(path.expanduser().absolute())


def validate_parquet(
    suite: str,
    parquet_glob: str | Path,
    settings: Settings,
    *,
    run_time: datetime | None = None,
    as_of: date | None = None,
    min_row_count: int | None = None,
    record: bool = True,
) -> ValidationReport:
    """Validate the Parquet file(s) matching ``parquet_glob`` against ``suite``.

    ``parquet_glob`` is a file, a folder (all ``*.parquet`` in it) or a glob. Bad input (no
    file, an unreadable file, a missing or mistyped column) gives a failed report whose single
    failure names the file or column; GX is not run then and no Data Docs are built.
    ``run_time`` (default: now, UTC) bounds raw timestamps; ``as_of`` (default: the run
    time's date) anchors the freshness warnings and, for the marts, picks the row-drop
    baseline among earlier or equal dates. ``min_row_count`` overrides the row-drop floor and
    ``record=False`` leaves the row-count state alone (the incremental raw gate validates a
    night's files, not the table: `incremental`).
    """
    spec = gate_spec(settings)
    if suite not in spec.suites:
        raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(spec.suites)}")
    run_time = _utc_naive(run_time or datetime.now(UTC))
    pattern = _pattern(parquet_glob)
    started = time.monotonic()
    suite_spec = spec.suites[suite]
    with _LOCK:
        checked = preflight(
            suite, pattern, suite_spec.columns, required_by=_contract_of(suite_spec, settings)
        )
        report = checked.report
        if report is None:
            from mlsys.validation.engine import run_suite

            report = run_suite(
                suite,
                pattern,
                settings,
                run_time,
                as_of,
                suite_spec,
                min_row_count=min_row_count,
                record=record,
                casts=checked.mistyped,
            )
            if checked.type_failure is not None:
                report = with_failure_first(report, checked.type_failure)
    logger.info("GX suite %s validated in %.1f s", suite, time.monotonic() - started)
    _emit_metrics(report, settings)
    return report


def _contract_of(spec: SuiteSpec, settings: Settings) -> str:
    """Whose contract a suite's columns are, as the missing-column error names it."""
    from mlsys.dbt import project_name

    source = project_name(settings)
    if spec.input:
        return f"the raw contract of source {source} (suite {spec.name})"
    return f"the {spec.name} mart contract of source {source}"


def validate_mart(mart: str, as_of: date, settings: Settings) -> ValidationReport:
    """A mart's file of ``as_of`` against the suite of the same name: a staged build waiting
    for this gate (features.build(staged=True)), else the file in place."""
    return validate_parquet(mart, settings.mart_path_to_gate(mart, as_of), settings, as_of=as_of)


def validate_raw(
    suite: str,
    settings: Settings,
    *,
    as_of: date | None = None,
    run_time: datetime | None = None,
) -> ValidationReport:
    """One raw landing table (``raw_leads``, ``raw_activities``, ``raw_conversions`` in the
    built-in gate; whatever the context's ``mlsys_gate.yml`` declares otherwise)."""
    spec = gate_spec(settings)
    raw = {name: s for name, s in spec.suites.items() if s.input}
    if suite not in raw:
        raise ValueError(f"unknown raw suite {suite!r}; expected one of {', '.join(raw)}")
    files = settings.data_dir / str(raw[suite].input)
    if suite not in INCREMENTAL_SUITES:
        return validate_parquet(suite, files, settings, run_time=run_time, as_of=as_of)
    # The files landed since the last pass in full, the table by its footers and key columns.
    run_time = _utc_naive(run_time or datetime.now(UTC))
    pattern = _pattern(files)
    with _LOCK:
        report = validate_incrementally(
            suite,
            pattern,
            raw[suite].columns,
            settings,
            run_time=run_time,
            as_of=as_of,
            validate_parquet=validate_parquet,
            columns_held_unique=lambda: unique_columns(suite_definitions(spec)[suite]),
            required_by=_contract_of(raw[suite], settings),
        )
    if report is not None:
        _emit_metrics(report, settings)
        return report
    report = validate_parquet(suite, files, settings, run_time=run_time, as_of=as_of)
    if report.success and report.row_count is not None:
        import glob as globlib

        record_pass(suite, sorted(globlib.glob(pattern)), report.row_count, settings, pattern)
    return report


def gate(report: ValidationReport) -> None:
    """Log the report; raise :class:`DataValidationError` unless it succeeded."""
    gate_all([report])


def gate_all(reports: Sequence[ValidationReport]) -> dict[str, Any]:
    """Log every report; raise one :class:`DataValidationError` naming every failed suite.

    The summary goes to this module's logger at ERROR (inside an Airflow task that is the
    task log) and is the exception's message, so callers that re-raise it (the DAG tasks as
    ``AirflowFailException``, the CLI) show the same lines.
    """
    failed = []
    for report in reports:
        if not report.success:
            logger.error("%s", report.summary())
            failed.append(report)
        elif report.warnings:
            logger.warning("%s", report.summary())
        else:
            logger.info("%s", report.summary())
    if failed:
        raise DataValidationError(*failed)
    return {
        r.suite: {
            "success": r.success,
            "rows": r.row_count,
            "warnings": len(r.warnings),
            "data_docs": r.data_docs,
        }
        for r in reports
    }


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _emit_metrics(report: ValidationReport, settings: Settings) -> None:
    """METRICS HOOK: publish the gate's outcome through ``mlsys.metrics`` (its CONTRACT lists the names).

    ``mlsys.validation.success`` (gauge 0/1) and ``mlsys.validation.failed_expectations``
    (gauge, blocking failures) as in the contract, plus the same per suite
    (``mlsys.validation.<suite>.success|failed_expectations|warnings``). Never raises.
    """
    try:
        from mlsys import metrics

        values = {
            "success": 1 if report.success else 0,
            "failed_expectations": len(report.failures),
            "warnings": len(report.warnings),
        }
        for name in ("success", "failed_expectations"):
            metrics.gauge(f"validation.{name}", values[name], settings)
        for name, value in values.items():
            metrics.gauge(f"validation.{metrics.metric_safe(report.suite)}.{name}", value, settings)
    except Exception:  # metrics must never break the pipeline
        logger.warning("could not emit validation metrics", exc_info=True)
