"""The Great Expectations gate (mlsys.validation) on small Parquet files built with DuckDB."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from benchmarks import bench_validation
from mlsys import validation
from mlsys.settings import REPO_ROOT, Settings
from mlsys.validation import (
    LEAD_FEATURES,
    RAW_ACTIVITIES,
    RAW_CONVERSIONS,
    RAW_LEADS,
    TRAINING_SNAPSHOTS,
    DataValidationError,
    ValidationReport,
    engine,
)
from mlsys.validation import __main__ as validation_cli
from mlsys.validation.context_files import render_context_files
from mlsys.validation.engine import execute as engine_execute
from mlsys.validation.engine import get_context
from mlsys.validation.report import build_report
from mlsys.validation.spec import suite_definitions
from mlsys.validation.suites import ERROR, WARNING, sql_list
from mlsys_local.synthetic_marts import synthetic_features_sql

AS_OF = date(2026, 6, 1)
RUN_TIME = datetime(2026, 6, 1, 3, 0, 0)
ROWS = 400


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Everything (Parquet, GX results, Data Docs, row-count state) under tmp_path."""
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("MLSYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLSYS_STATSD_PORT", "9")  # discard
    monkeypatch.delenv("MLSYS_GX_CONTEXT_DIR", raising=False)
    return Settings.from_env()


def copy_to_parquet(select_sql: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


def features_sql(rows: int = ROWS, *, label: bool = False, replace: str = "", where: str = "") -> str:
    base = synthetic_features_sql(rows, AS_OF, label=label)
    select = f"SELECT * REPLACE ({replace})" if replace else "SELECT *"
    return f"{select} FROM ({base}) AS f {where}"


def raw_leads_sql(rows: int = ROWS, replace: str = "") -> str:
    base = f"""
        SELECT
            i::BIGINT AS lead_id,
            TIMESTAMP '2025-01-01 00:00:00' + to_minutes(i::BIGINT) AS created_at,
            ['web', 'referral', 'event', 'paid_search', 'social', 'outbound'][1 + i % 6] AS source,
            CASE WHEN i % 10 = 0 THEN NULL ELSE 'software' END AS industry,
            CASE WHEN i % 10 = 1 THEN NULL ELSE ['US', 'DE', 'GB'][1 + i % 3] END AS country,
            CASE WHEN i % 10 = 2 THEN NULL ELSE (1 + i % 900)::BIGINT END AS company_size,
            CASE WHEN i % 10 = 3 THEN NULL ELSE ['vp', 'manager'][1 + i % 2] END AS job_level,
            'extra columns are allowed' AS crm_note
        FROM range({rows}) AS t(i)
    """
    select = f"SELECT * REPLACE ({replace})" if replace else "SELECT *"
    return f"{select} FROM ({base}) AS r"


def raw_activities_sql(rows: int = ROWS, replace: str = "") -> str:
    """Activities of the 30 days before AS_OF, every accepted type, newest first."""
    types = sql_list(validation.ACTIVITY_TYPES)
    base = f"""
        SELECT
            (i % 100)::BIGINT AS lead_id,
            TIMESTAMP '2026-05-31 12:00:00' - to_minutes(i::BIGINT * 97) AS occurred_at,
            {types}[1 + i % {len(validation.ACTIVITY_TYPES)}] AS activity_type
        FROM range({rows}) AS t(i)
    """
    select = f"SELECT * REPLACE ({replace})" if replace else "SELECT *"
    return f"{select} FROM ({base}) AS a"


def raw_conversions_sql(rows: int = 40, replace: str = "") -> str:
    base = f"""
        SELECT i::BIGINT AS lead_id, TIMESTAMP '2026-05-31 09:00:00' - to_days(i::BIGINT) AS converted_at
        FROM range({rows}) AS t(i)
    """
    select = f"SELECT * REPLACE ({replace})" if replace else "SELECT *"
    return f"{select} FROM ({base}) AS c"


def write_raw(settings: Settings, table: str, sql: str, name: str = "part-0.parquet") -> Path:
    return copy_to_parquet(sql, settings.raw_dir / table / name)


def write_features(settings: Settings, sql: str) -> Path:
    return copy_to_parquet(sql, settings.lead_features_path(AS_OF))


def write_raw_leads(settings: Settings, sql: str, name: str = "part-0.parquet") -> Path:
    return copy_to_parquet(sql, settings.raw_dir / "leads" / name)


def failure_names(report: ValidationReport) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for f in report.failures:
        out.setdefault(f.expectation, set()).add(f.column)
    return out


# ----------------------------------------------------------------------------- module basics


def test_import_is_cheap_and_does_not_load_gx() -> None:
    code = (
        "import sys, mlsys.validation; "
        "heavy = ('great_expectations', 'duckdb', 'sqlalchemy', 'pandas'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_committed_context_matches_python_definitions() -> None:
    root = REPO_ROOT / "great_expectations"
    stale = [
        rel
        for rel, text in render_context_files().items()
        if not (root / rel).is_file() or (root / rel).read_text() != text
    ]
    assert not stale, f"run `python -m mlsys.validation write-context`; stale: {stale}"
    suites = {p.stem for p in (root / "expectations").glob("*.json")}
    assert suites == set(validation.SUITES)
    assert "uncommitted/" in (root / ".gitignore").read_text()


def test_every_expectation_declares_its_severity() -> None:
    for suite, expectations in suite_definitions().items():
        severities = {e["meta"]["severity"] for e in expectations}
        assert severities == {ERROR, WARNING}, suite
        for e in expectations:
            if e["meta"]["severity"] == WARNING:
                assert e["meta"].get("check") in {"null_rate", "distribution", "freshness"}, e


def test_activity_types_are_the_ones_the_features_count() -> None:
    """The blocking in-set check and the dbt var that makes per-type features must agree."""
    import yaml

    project = yaml.safe_load((REPO_ROOT / "sql" / "dbt_project.yml").read_text())
    assert list(validation.ACTIVITY_TYPES) == project["vars"]["activity_types"]
    meta = json.loads((REPO_ROOT / "great_expectations/expectations/raw_activities.json").read_text())["meta"]
    assert "blocking error" in meta["mlsys"]["decisions"]["activity_type_in_set"]


# ----------------------------------------------------------------------------- good data


def repo_context_files() -> dict[str, float]:
    root = REPO_ROOT / "great_expectations"
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def test_good_lead_features_pass_with_an_observed_value_for_every_expectation(
    settings: Settings,
) -> None:
    write_features(settings, features_sql())
    before = repo_context_files()
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)

    assert report.success, report.summary()
    assert report.failures == [] and report.warnings == []
    assert report.row_count == ROWS
    n_expectations = len(suite_definitions()[LEAD_FEATURES])
    assert report.evaluated == n_expectations == len(report.checks)
    for check in report.checks:
        assert check["success"], check
        assert check["observed"] is not None, check
    # Runtime state goes under the data dir, not into the repo.
    assert report.data_docs is not None
    assert Path(report.data_docs).is_file()
    assert Path(report.data_docs).is_relative_to(settings.data_dir / "gx")
    assert (settings.data_dir / "gx" / "state" / "row_counts.json").is_file()
    assert repo_context_files() == before  # GX wrote nothing into the committed context
    assert "PASSED" in report.summary()
    validation.gate(report)  # does not raise


def test_good_training_snapshots_and_raw_leads_pass(settings: Settings) -> None:
    two_dates = f"""
        {features_sql(label=True)}
        UNION ALL
        {features_sql(label=True, replace="DATE '2026-05-25' AS as_of")}
    """
    copy_to_parquet(two_dates, settings.training_snapshots_path(AS_OF))
    report = validation.validate_mart(TRAINING_SNAPSHOTS, AS_OF, settings)
    assert report.success, report.summary()
    assert report.row_count == 2 * ROWS

    write_raw_leads(settings, raw_leads_sql(200), "part-0.parquet")
    write_raw_leads(settings, raw_leads_sql(200, replace="lead_id + 200 AS lead_id"), "part-1.parquet")
    raw = validation.validate_raw(RAW_LEADS, settings)
    assert raw.success, raw.summary()
    assert raw.row_count == 400


# ----------------------------------------------------------------------------- bad data


@pytest.mark.parametrize(
    ("case", "replace", "expectation", "column", "sample"),
    [
        (
            "null lead_id",
            "CASE WHEN lead_id = 7 THEN NULL ELSE lead_id END AS lead_id",
            "expect_column_values_to_not_be_null",
            "lead_id",
            None,
        ),
        (
            "duplicate lead_id",
            "CASE WHEN lead_id = 7 THEN 8 ELSE lead_id END AS lead_id",
            "expect_column_values_to_be_unique",
            "lead_id",
            8,
        ),
        (
            "unknown source",
            "CASE WHEN lead_id % 50 = 3 THEN 'carrier_pigeon' ELSE source END AS source",
            "expect_column_values_to_be_in_set",
            "source",
            "carrier_pigeon",
        ),
        (
            "negative company_size",
            "CASE WHEN lead_id = 12 THEN -5 ELSE company_size END AS company_size",
            "expect_column_values_to_be_between",
            "company_size",
            -5,
        ),
        (
            "lower-case country",
            "CASE WHEN lead_id = 12 THEN 'de' ELSE country END AS country",
            "unexpected_rows_expectation:country_iso_alpha2",
            "country",
            None,
        ),
        (
            "negative count",
            "CASE WHEN lead_id = 3 THEN -1 ELSE n_page_view_7d END AS n_page_view_7d",
            "expect_column_values_to_be_between",
            "n_page_view_7d",
            -1,
        ),
    ],
)
def test_bad_lead_features_fail_naming_the_expectation(
    settings: Settings, case: str, replace: str, expectation: str, column: str, sample: object
) -> None:
    write_features(settings, features_sql(replace=replace))
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)

    assert not report.success, case
    failed = failure_names(report)
    assert column in failed.get(expectation, set()), (case, report.summary())
    if sample is not None:
        failure = next(f for f in report.failures if f.expectation == expectation and f.column == column)
        assert sample in failure.unexpected_sample
    assert expectation in report.summary() and column in report.summary()


def test_created_at_in_the_future_fails_raw_leads(settings: Settings) -> None:
    write_raw_leads(
        settings,
        raw_leads_sql(
            replace="CASE WHEN lead_id = 5 THEN TIMESTAMP '2031-01-01' ELSE created_at END AS created_at"
        ),
    )
    report = validation.validate_parquet(RAW_LEADS, settings.raw_dir / "leads", settings, run_time=RUN_TIME)
    assert not report.success
    failure = next(f for f in report.failures if f.column == "created_at")
    assert failure.expectation == "expect_column_values_to_be_between:not_in_future"
    assert failure.unexpected_sample == [datetime(2031, 1, 1)]
    # Rows after the features' as_of (but before the run time) are fine.
    write_raw_leads(
        settings,
        raw_leads_sql(
            replace="CASE WHEN lead_id = 5 THEN TIMESTAMP '2026-06-01 02:00' "
            "ELSE created_at END AS created_at"
        ),
    )
    ok = validation.validate_parquet(RAW_LEADS, settings.raw_dir / "leads", settings, run_time=RUN_TIME)
    assert ok.success, ok.summary()


def test_training_snapshots_unique_on_lead_and_date_and_binary_label(settings: Settings) -> None:
    dup = f"{features_sql(label=True)} UNION ALL {features_sql(10, label=True)}"
    copy_to_parquet(dup, settings.training_snapshots_path(AS_OF))
    report = validation.validate_mart(TRAINING_SNAPSHOTS, AS_OF, settings)
    assert "lead_id, as_of" in failure_names(report)["expect_compound_columns_to_be_unique"]

    copy_to_parquet(
        features_sql(label=True, replace="CASE WHEN lead_id = 1 THEN 2 ELSE label END AS label"),
        settings.training_snapshots_path(AS_OF),
    )
    report = validation.validate_mart(TRAINING_SNAPSHOTS, AS_OF, settings)
    assert "label" in failure_names(report)["expect_column_values_to_be_in_set"]


def test_missing_column_is_a_one_line_reason(settings: Settings) -> None:
    write_features(settings, f"SELECT * EXCLUDE (lead_age_days) FROM ({features_sql()})")
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    assert not report.success
    [failure] = report.failures
    assert failure.column == "lead_age_days"
    assert failure.expectation == "expect_table_columns_to_match_set:required_columns"
    assert "missing column lead_age_days, required by the lead_features mart contract of source mlsys" in str(
        failure.observed
    )


def test_wrong_column_type_fails(settings: Settings) -> None:
    write_features(settings, features_sql(replace="company_size::VARCHAR AS company_size"))
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    [failure] = report.failures
    assert failure.expectation == "unexpected_rows_expectation:column_types"
    assert failure.column == "company_size"
    assert "VARCHAR" in str(failure.observed)


def test_empty_table_fails(settings: Settings) -> None:
    write_features(settings, features_sql(where="WHERE false"))
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    assert not report.success
    assert report.row_count == 0
    assert "expect_table_row_count_to_be_between:non_empty" in failure_names(report)


def test_corrupt_file_in_the_folder_names_the_file(settings: Settings) -> None:
    write_raw_leads(settings, raw_leads_sql())
    corrupt = settings.raw_dir / "leads" / "part-9.parquet"
    corrupt.write_text("lead_id,created_at\n1,2026-01-01\n")
    report = validation.validate_raw(RAW_LEADS, settings)
    assert not report.success
    [failure] = report.failures
    assert failure.expectation == "input_files_are_parquet"
    assert str(corrupt) in str(failure.observed)
    assert len(report.summary().splitlines()) <= 4  # a clear reason, not a stack trace


def test_no_input_file_fails(settings: Settings) -> None:
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    assert not report.success
    [failure] = report.failures
    assert failure.expectation == "input_files_exist"
    assert str(settings.lead_features_path(AS_OF)) in str(failure.observed)
    with pytest.raises(DataValidationError, match="no Parquet file matches"):
        validation.gate(report)


def test_row_count_drop_against_the_previous_successful_run(settings: Settings) -> None:
    write_features(settings, features_sql(1000))
    assert validation.validate_mart(LEAD_FEATURES, AS_OF, settings).success

    write_features(settings, features_sql(400))  # 60% fewer rows; the limit is 50%
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    assert not report.success
    [failure] = report.failures
    assert failure.expectation == "expect_table_row_count_to_be_between:row_drop_vs_previous_run"
    assert failure.observed == 400
    assert "previous successful run: 1,000 rows" in report.summary()

    # Still compared with 1000: a failed run is not a baseline.
    write_features(settings, features_sql(600))
    assert validation.validate_mart(LEAD_FEATURES, AS_OF, settings).success


# ----------------------------------------------------------------------------- raw activities, conversions


def test_good_raw_activities_and_conversions_pass_with_an_observed_value_for_every_expectation(
    settings: Settings,
) -> None:
    write_raw(settings, "activities", raw_activities_sql())
    write_raw(settings, "conversions", raw_conversions_sql())
    for suite, rows in ((RAW_ACTIVITIES, ROWS), (RAW_CONVERSIONS, 40)):
        report = validation.validate_raw(suite, settings, as_of=AS_OF, run_time=RUN_TIME)
        assert report.success, report.summary()
        assert report.failures == [] and report.warnings == [], report.summary()
        assert report.row_count == rows
        assert report.evaluated == len(suite_definitions()[suite]) == len(report.checks)
        assert all(c["observed"] is not None for c in report.checks), report.checks


@pytest.mark.parametrize(
    ("case", "replace", "expectation", "column", "sample"),
    [
        (
            "activities dated years in the future",
            "CASE WHEN lead_id = 4 THEN occurred_at + INTERVAL 5 YEAR ELSE occurred_at END AS occurred_at",
            "expect_column_values_to_be_between:not_in_future",
            "occurred_at",
            None,
        ),
        (
            "renamed activity type",
            "CASE WHEN activity_type = 'page_view' THEN 'web_visit' ELSE activity_type END AS activity_type",
            "expect_column_values_to_be_in_set",
            "activity_type",
            "web_visit",
        ),
        (
            "null activity type",
            "CASE WHEN lead_id = 3 THEN NULL ELSE activity_type END AS activity_type",
            "expect_column_values_to_not_be_null",
            "activity_type",
            None,
        ),
        (
            "null lead_id",
            "CASE WHEN lead_id = 3 THEN NULL ELSE lead_id END AS lead_id",
            "expect_column_values_to_not_be_null",
            "lead_id",
            None,
        ),
        (
            "null occurred_at",
            "CASE WHEN lead_id = 3 THEN NULL ELSE occurred_at END AS occurred_at",
            "expect_column_values_to_not_be_null",
            "occurred_at",
            None,
        ),
    ],
)
def test_bad_raw_activities_block_naming_the_expectation(
    settings: Settings, case: str, replace: str, expectation: str, column: str, sample: object
) -> None:
    write_raw(settings, "activities", raw_activities_sql(replace=replace))
    report = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert not report.success, case
    assert column in failure_names(report).get(expectation, set()), (case, report.summary())
    failure = next(f for f in report.failures if f.expectation == expectation and f.column == column)
    if sample is not None:
        assert sample in failure.unexpected_sample
    line = next(line for line in report.summary().splitlines() if expectation in line and column in line)
    assert line.lstrip().startswith(f"ERROR   {column}: {expectation} observed ")
    assert " rows unexpected" in line


def test_future_activity_shows_the_timestamp_readably(settings: Settings) -> None:
    write_raw(
        settings,
        "activities",
        raw_activities_sql(
            replace="CASE WHEN lead_id = 4 THEN TIMESTAMP '2031-01-01 08:00:00' "
            "ELSE occurred_at END AS occurred_at"
        ),
    )
    report = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    [failure] = report.failures
    assert failure.unexpected_sample == [datetime(2031, 1, 1, 8, 0)]
    assert "4 of 400 rows unexpected (1.00%)" in report.summary()
    assert "unexpected e.g. [2031-01-01 08:00:00]" in report.summary()


def test_a_vanished_type_and_a_stale_export_only_warn(settings: Settings) -> None:
    write_raw(
        settings,
        "activities",
        raw_activities_sql(replace="replace(activity_type, 'demo_requested', 'page_view') AS activity_type"),
    )
    report = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert report.success, report.summary()
    [warning] = report.warnings
    assert (warning.expectation, warning.column, warning.observed) == (
        "expect_column_unique_value_count_to_be_between:distribution",
        "activity_type",
        len(validation.ACTIVITY_TYPES) - 1,
    )

    write_raw(settings, "activities", raw_activities_sql())
    later = date(2026, 7, 15)  # the newest activity is 45 days before this as_of
    stale = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=later, run_time=datetime(2026, 7, 15, 3))
    assert stale.success, stale.summary()
    [warning] = stale.warnings
    assert (warning.expectation, warning.column) == (
        "expect_column_values_to_be_between:freshness",
        "occurred_at",
    )
    assert "2026-07-08" in stale.summary()  # the floor: as_of - 7 days


def test_a_lead_converts_at_most_once(settings: Settings) -> None:
    write_raw(
        settings,
        "conversions",
        raw_conversions_sql(replace="CASE WHEN lead_id = 5 THEN 6 ELSE lead_id END AS lead_id"),
    )
    report = validation.validate_raw(RAW_CONVERSIONS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert not report.success
    [failure] = report.failures
    assert (failure.expectation, failure.column) == ("expect_column_values_to_be_unique", "lead_id")
    assert 6 in failure.unexpected_sample

    write_raw(
        settings,
        "conversions",
        raw_conversions_sql(
            replace="CASE WHEN lead_id = 5 THEN TIMESTAMP '2030-01-01' ELSE converted_at END AS converted_at"
        ),
    )
    report = validation.validate_raw(RAW_CONVERSIONS, settings, as_of=AS_OF, run_time=RUN_TIME)
    [failure] = report.failures
    assert (failure.expectation, failure.column) == (
        "expect_column_values_to_be_between:not_in_future",
        "converted_at",
    )


def test_unknown_raw_suite_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown raw suite 'lead_features'"):
        validation.validate_raw(LEAD_FEATURES, settings)


def test_backfill_of_an_older_date_compares_with_older_dates_only(settings: Settings) -> None:
    def run(as_of: date, rows: int) -> ValidationReport:
        path = copy_to_parquet(
            f"SELECT * REPLACE (DATE '{as_of}' AS as_of) FROM ({features_sql(rows)})",
            settings.lead_features_path(as_of),
        )
        assert path.exists()
        return validation.validate_mart(LEAD_FEATURES, as_of, settings)

    assert run(AS_OF, 1000).success
    # A backfill of January: fewer leads were known then; today's 1000 is no baseline for it.
    january = run(date(2026, 1, 1), 300)
    assert january.success, january.summary()
    # Later backfills compare with the latest earlier date (300), not with June (1000).
    assert run(date(2026, 3, 1), 200).success  # 200 >= 300 * 0.5
    march_drop = run(date(2026, 3, 2), 90)  # < 200 * 0.5
    assert not march_drop.success
    assert "previous successful run: 200 rows" in march_drop.summary()
    # The nightly run after June still compares with June.
    june_drop = run(date(2026, 6, 2), 400)
    assert not june_drop.success
    assert "previous successful run: 1,000 rows" in june_drop.summary()
    # Raw tables do not depend on the date: their baseline is the previous run, any as_of.
    write_raw_leads(settings, raw_leads_sql(400))
    assert validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF).success
    write_raw_leads(settings, raw_leads_sql(100))
    assert not validation.validate_raw(RAW_LEADS, settings, as_of=date(2026, 1, 1)).success


def test_state_of_an_older_version_is_no_baseline(settings: Settings) -> None:
    state = settings.data_dir / "gx" / "state" / "row_counts.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({LEAD_FEATURES: {"row_count": 10_000, "validated_at": "x", "source": "y"}}))
    write_features(settings, features_sql(100))
    assert validation.validate_mart(LEAD_FEATURES, AS_OF, settings).success
    runs = json.loads(state.read_text())[LEAD_FEATURES]["runs"]
    assert runs[AS_OF.isoformat()]["row_count"] == 100


# ----------------------------------------------------------------------------- severities and gate


def test_warning_only_expectation_does_not_fail_the_gate(settings: Settings) -> None:
    write_features(
        settings,
        features_sql(replace="CASE WHEN lead_id % 10 < 8 THEN NULL ELSE industry END AS industry"),
    )
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    assert report.success, report.summary()
    assert report.failures == []
    [warning] = report.warnings
    assert (warning.expectation, warning.column, warning.severity) == (
        "expect_column_values_to_not_be_null:null_rate",
        "industry",
        WARNING,
    )
    validation.gate(report)  # logs, does not raise


def test_gate_raises_with_expectation_and_column_in_the_message(settings: Settings) -> None:
    write_features(
        settings, features_sql(replace="CASE WHEN lead_id = 9 THEN 'fax' ELSE source END AS source")
    )
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    with pytest.raises(DataValidationError) as excinfo:
        validation.gate(report)
    message = str(excinfo.value)
    assert excinfo.value.report is report
    assert "expect_column_values_to_be_in_set" in message
    assert "source" in message and "'fax'" in message
    assert "Data Docs:" in message


# ----------------------------------------------------------------------------- vacuous-pass guard


def test_guard_fails_a_result_without_observed_value() -> None:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    def result(column: str, payload: dict[str, object]) -> ExpectationValidationResult:
        config = ExpectationConfiguration(
            type="expect_column_values_to_not_be_null",
            kwargs={"column": column},
            meta={"severity": ERROR},
        )
        return ExpectationValidationResult(success=True, result=payload, expectation_config=config)

    suite_result = ExpectationSuiteValidationResult(
        success=True,
        results=[
            result("lead_id", {"element_count": 3, "unexpected_count": 0}),
            result("source", {}),  # "passed" without looking at any data
        ],
        suite_name=LEAD_FEATURES,
    )
    report = build_report(LEAD_FEATURES, suite_result)
    assert not report.success
    [failure] = report.failures
    assert failure.column == "source"
    assert "passed vacuously" in str(failure.observed)
    assert "passed vacuously" in report.summary()


def test_guard_catches_the_real_gx_duckdb_empty_result_bug(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the persisted-connection fix GX+duckdb-engine returns no metrics at all."""
    from great_expectations.execution_engine import sqlalchemy_execution_engine as see

    unpatched = tuple(d for d in see._PERSISTED_CONNECTION_DIALECTS if d != "duckdb")
    monkeypatch.setattr(see, "_PERSISTED_CONNECTION_DIALECTS", unpatched)
    monkeypatch.setattr(engine, "_treat_duckdb_as_persisted_dialect", lambda: False)
    monkeypatch.setattr(engine, "_CONTEXTS", {})  # a fresh datasource engine

    write_features(settings, features_sql())
    report = validation.validate_mart(LEAD_FEATURES, AS_OF, settings)
    assert not report.success
    assert report.failures
    assert all("passed vacuously" in str(f.observed) for f in report.failures)
    assert "passed vacuously" in report.summary()


def test_unknown_suite_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown suite 'leads'"):
        validation.validate_parquet("leads", settings.raw_dir, settings)


def test_command_line_bench_and_write_context(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_validation.main(["marts", "--rows", "3000", "--workdir", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and '"peak_rss_mb"' in out

    copy = tmp_path / "context"
    written = validation_cli.main(["write-context", "--root", str(copy)])
    assert written == 0
    committed = REPO_ROOT / "great_expectations"
    for rel in render_context_files():
        assert (copy / rel).read_text() == (committed / rel).read_text()


def test_gate_all_names_every_failed_suite_and_survives_pickling(settings: Settings) -> None:
    write_raw_leads(settings, raw_leads_sql(replace="'fax' AS source"))
    write_raw(settings, "activities", raw_activities_sql(replace="'web_visit' AS activity_type"))
    reports = [
        validation.validate_raw(RAW_LEADS, settings, run_time=RUN_TIME),
        validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME),
    ]
    with pytest.raises(DataValidationError) as excinfo:
        validation.gate_all(reports)
    message = str(excinfo.value)
    assert message.splitlines()[0] == "data quality gate FAILED in 2 suites (raw_leads, raw_activities)"
    assert "source: expect_column_values_to_be_in_set" in message
    assert "activity_type: expect_column_values_to_be_in_set" in message
    assert "'web_visit'" in message and "'fax'" in message
    assert message.count("Data Docs: ") == 2
    copy = pickle.loads(pickle.dumps(excinfo.value))
    assert str(copy) == message and [r.suite for r in copy.reports] == [RAW_LEADS, RAW_ACTIVITIES]


def test_a_suite_after_duckdb_spilled_to_disk_still_runs(settings: Settings) -> None:
    """DuckDB refuses to set its temp directory again once it spilled there (seen at 30M rows)."""
    write_raw(settings, "conversions", raw_conversions_sql())
    stale = settings.data_dir / "gx" / "tmp" / "999999999"  # no such process
    stale.mkdir(parents=True)
    assert validation.validate_raw(RAW_CONVERSIONS, settings, as_of=AS_OF, run_time=RUN_TIME).success
    assert not stale.exists()
    assert (settings.data_dir / "gx" / "tmp" / str(os.getpid())).is_dir()

    checkpoint = get_context(settings).checkpoints.get(RAW_CONVERSIONS)
    engine = next(iter(checkpoint.validation_definitions)).batch_definition.data_asset.datasource
    spill = (
        "SELECT count(*) FROM (SELECT i::VARCHAR || repeat('x', 24) AS s FROM range(5000000) AS t(i) "
        "GROUP BY s HAVING count(*) > 1)"
    )
    engine_execute(engine.get_execution_engine(), ["SET memory_limit = '64MB'", spill])
    report = validation.validate_raw(RAW_CONVERSIONS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert report.success, report.summary()


def test_command_line_bench_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    copy_to_parquet(raw_leads_sql(), data / "raw" / "leads" / "part-0.parquet")
    copy_to_parquet(raw_activities_sql(), data / "raw" / "activities" / "part-0.parquet")
    copy_to_parquet(raw_conversions_sql(), data / "raw" / "conversions" / "part-0.parquet")
    assert bench_validation.main(["raw", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.count("PASSED") == 3 and '"peak_rss_mb"' in out and '"raw_activities"' in out


def test_raw_activities_gate_validates_new_files_and_the_table_by_its_footers(settings: Settings) -> None:
    """The first pass validates every file; later runs validate the files landed since in full
    and the whole table by footers (readable, columns, row count not dropped)."""
    write_raw(settings, "activities", raw_activities_sql(), name="history.parquet")
    first = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert first.success and first.row_count == ROWS and first.evaluated > 0

    nothing_new = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert nothing_new.success and nothing_new.evaluated == 0 and nothing_new.row_count == ROWS

    night = write_raw(settings, "activities", raw_activities_sql(rows=50), name="day-1.parquet")
    report = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert report.success and report.evaluated > 0, report.summary()
    assert report.source == str(night) and report.row_count == 50  # the rows validated in full

    # docs/data-engineering.md: delete the record of passed files to validate the table whole.
    record = settings.data_dir / "gx" / "state" / f"raw_files_{RAW_ACTIVITIES}.json"
    assert night.name in record.read_text()
    record.unlink()
    whole = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert whole.success and whole.evaluated > 0 and whole.row_count == ROWS + 50, whole.summary()
    assert night.name in record.read_text()  # recorded again: the next run reads no file
    assert validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME).evaluated == 0

    # A bad new file stops the gate with the suite's own report, naming the file; it is not
    # recorded, so the next run stops again.
    bad = write_raw(
        settings,
        "activities",
        raw_activities_sql(rows=50, replace="CASE WHEN lead_id = 3 THEN NULL ELSE lead_id END AS lead_id"),
        name="day-2.parquet",
    )
    for _ in range(2):
        failed = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
        assert not failed.success
        assert "lead_id" in failure_names(failed)["expect_column_values_to_not_be_null"]
        assert str(bad) in failed.summary().splitlines()[0]
    bad.unlink()

    # A lost file: the table's row count (from the footers) dropped below the floor.
    (settings.raw_dir / "activities" / "history.parquet").unlink()
    dropped = validation.validate_raw(RAW_ACTIVITIES, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert not dropped.success
    [failure] = dropped.failures
    assert failure.expectation == "expect_table_row_count_to_be_between:row_drop"
    assert "50 rows in all landed files, below" in failure.observed


def test_raw_leads_gate_checks_new_files_and_their_ids_against_the_earlier_files(settings: Settings) -> None:
    """The leads (and conversions) are gated incrementally too: a new file in full, and its
    lead ids against the earlier files' (the one cross-file rule of the suite)."""
    write_raw_leads(settings, raw_leads_sql(), name="history.parquet")
    first = validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert first.success and first.row_count == ROWS and first.evaluated > 0

    nothing_new = validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert nothing_new.success and nothing_new.evaluated == 0 and nothing_new.row_count == ROWS
    assert (
        "Data Docs: not built (GX did not run: no file landed since the last pass)" in nothing_new.summary()
    )

    fresh_ids = raw_leads_sql(rows=30, replace=f"lead_id + {ROWS} AS lead_id")
    night = write_raw_leads(settings, fresh_ids, name="day-1.parquet")
    report = validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert report.success and report.evaluated > 0, report.summary()
    assert report.source == str(night) and report.row_count == 30

    # A new file that repeats two ids of the history: each file passes on its own, the gate
    # does not, and the file is not recorded (the next run stops again).
    repeats = raw_leads_sql(
        rows=30, replace=f"CASE WHEN lead_id IN (3, 7) THEN lead_id ELSE lead_id + {2 * ROWS} END AS lead_id"
    )
    again = write_raw_leads(settings, repeats, name="day-2.parquet")
    for _ in range(2):
        failed = validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME)
        assert not failed.success
        [failure] = failed.failures
        assert (failure.expectation, failure.column) == ("expect_column_values_to_be_unique", "lead_id")
        assert failure.observed == "2 lead_id value(s) of the new file(s) already in earlier landing files"
        assert failure.unexpected_sample == [3, 7]
        assert str(again) in failed.summary().splitlines()[0]
    again.unlink()
    assert validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME).success
    # A file taken away and landed again is validated again (the pass of the table without it
    # forgot it).
    aside = night.rename(night.with_name("aside.tmp"))
    assert validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME).evaluated == 0
    aside.rename(night)
    back = validation.validate_raw(RAW_LEADS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert back.success and back.evaluated > 0 and back.source == str(night)

    # The conversions hold lead_id unique the same way.
    write_raw(settings, "conversions", raw_conversions_sql(), name="history.parquet")
    assert validation.validate_raw(RAW_CONVERSIONS, settings, as_of=AS_OF, run_time=RUN_TIME).success
    write_raw(settings, "conversions", raw_conversions_sql(rows=2), name="day-1.parquet")
    converted_twice = validation.validate_raw(RAW_CONVERSIONS, settings, as_of=AS_OF, run_time=RUN_TIME)
    assert failure_names(converted_twice) == {"expect_column_values_to_be_unique": {"lead_id"}}
