"""The built-in suites of the synthetic CRM's gate: the data sets, their column contracts and
expectations. A source with an ``mlsys_gate.yml`` declares its own (``spec``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlsys.contract import ACTIVITIES, CONVERSIONS, LEADS, raw_contract

RAW_LEADS = "raw_leads"
RAW_ACTIVITIES = "raw_activities"
RAW_CONVERSIONS = "raw_conversions"
LEAD_FEATURES = "lead_features"
TRAINING_SNAPSHOTS = "training_snapshots"
SUITES: tuple[str, ...] = (RAW_LEADS, RAW_ACTIVITIES, RAW_CONVERSIONS, LEAD_FEATURES, TRAINING_SNAPSHOTS)
# Raw suite -> its folder under $MLSYS_DATA_DIR/raw/ (the raw landing contract, docs/contracts.md).
RAW_TABLES: dict[str, str] = {
    RAW_LEADS: LEADS,
    RAW_ACTIVITIES: ACTIVITIES,
    RAW_CONVERSIONS: CONVERSIONS,
}
# lead_features reads no conversions, so a broken conversions export must not stop scoring.
RAW_SCORING_SUITES: tuple[str, ...] = (RAW_LEADS, RAW_ACTIVITIES)
RAW_TRAINING_SUITES: tuple[str, ...] = (RAW_LEADS, RAW_ACTIVITIES, RAW_CONVERSIONS)
# Marts hold the leads known at their as_of, so their row counts grow with the date: the
# row-drop baseline of a mart is a previous run of an earlier or equal as_of (backfills).
DATED_SUITES: frozenset[str] = frozenset({LEAD_FEATURES, TRAINING_SNAPSHOTS})

ERROR = "error"
WARNING = "warning"


# The raw landing contract and its vocabularies are declared in the dbt project (sql/):
# mlsys.contract reads them, these suites follow.
_CONTRACT = raw_contract()
SOURCES = _CONTRACT.vocabularies["lead_sources"]
JOB_LEVELS = _CONTRACT.vocabularies["job_levels"]
ACTIVITY_TYPES = _CONTRACT.vocabularies["activity_types"]
WINDOWS = tuple(f"{days}d" for days in _CONTRACT.activity_windows_days)

# The per-type activity counts of the marts (the synthetic marts of mlsys_local write them).
ACTIVITY_TYPE_COUNTS = tuple(f"n_{t}_{w}" for t in ACTIVITY_TYPES for w in WINDOWS)

RAW_LEADS_COLUMNS = _CONTRACT.table(LEADS).accepted_types()
RAW_ACTIVITIES_COLUMNS = _CONTRACT.table(ACTIVITIES).accepted_types()
RAW_CONVERSIONS_COLUMNS = _CONTRACT.table(CONVERSIONS).accepted_types()
# The raw tables' columns; the marts' come from their YAML in the dbt project (mart_suites).
SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    RAW_LEADS: RAW_LEADS_COLUMNS,
    RAW_ACTIVITIES: RAW_ACTIVITIES_COLUMNS,
    RAW_CONVERSIONS: RAW_CONVERSIONS_COLUMNS,
}

# Null-rate bounds (warnings): at least this share of rows must be non-null.
_NULLABLE_ATTRIBUTES_MOSTLY = 0.5
# Freshness (warnings): at least this share of the rows is dated on or after
# as_of - FRESHNESS_DAYS[suite]. A stale export fails nothing by itself, but features then
# describe an older world; rows after as_of count too, so backfills of old dates stay quiet.
_FRESHNESS_MOSTLY = 0.001
FRESHNESS_DAYS: dict[str, int] = {RAW_ACTIVITIES: 7, RAW_CONVERSIONS: 30}

SUITE_NOTES = (
    "Generated from mlsys/validation/suites.py (raw suites) and sql/models/marts/_marts.yml "
    "(marts: data_type, data_tests, meta.gate); regenerate with "
    "`python -m mlsys.validation write-context`, do not edit by hand. "
    "Severity is in each expectation's meta: meta.severity == 'error' blocks the pipeline "
    "(mlsys.validation.gate raises DataValidationError); meta.severity == 'warning' "
    "(null-rate, distribution and freshness bounds) is logged and counted, and the run continues. "
    "Parameters supplied at run time: min_row_count (previous successful row count of this "
    "suite x (1 - MLSYS_ROW_DROP_MAX_SHARE), 1 on the first run; for the marts, the previous "
    "run of the latest as_of not after this one, so backfills of older dates compare with "
    "older dates), run_time (UTC, the upper bound of raw timestamps) and freshness_floor "
    "(as_of minus the suite's freshness window)."
)

SPEC_SUITE_NOTES = SUITE_NOTES.replace(
    "Generated from mlsys/validation/suites.py (raw suites) and sql/models/marts/_marts.yml",
    "Generated from this context's mlsys_gate.yml and the marts' YAML of its dbt_project",
)


def expectation(
    type_: str,
    *,
    severity: str = ERROR,
    check: str | None = None,
    description: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"severity": severity}
    if check:
        meta["check"] = check
    out: dict[str, Any] = {"type": type_, "kwargs": kwargs, "meta": meta}
    if description:
        out["description"] = description
    return out


def sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _schema_query(columns: Mapping[str, Sequence[str]]) -> str:
    """UnexpectedRows query: one row per required column that is missing or of the wrong type.

    GX's own type expectations cannot be used: they rely on SQLAlchemy reflection, which
    duckdb-engine 0.17 does not support under SQLAlchemy 2.1 (pg_collation), so they error.
    """
    rows = ",\n  ".join(f"('{name}', {sql_list(types)})" for name, types in columns.items())
    return (
        "SELECT expected.column_name, expected.allowed_types, actual.column_type AS observed_type\n"
        f"FROM (VALUES\n  {rows}\n) AS expected(column_name, allowed_types)\n"
        "LEFT JOIN (DESCRIBE {batch}) AS actual USING (column_name)\n"
        "WHERE actual.column_type IS NULL\n"
        "   OR NOT list_contains(expected.allowed_types, actual.column_type)"
    )


def table_expectations(columns: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    return [
        expectation(
            "expect_table_row_count_to_be_between",
            check="non_empty",
            min_value=1,
            description="The table must not be empty.",
        ),
        expectation(
            "expect_table_row_count_to_be_between",
            check="row_drop_vs_previous_run",
            min_value={"$PARAMETER": "min_row_count"},
            description=(
                "Row count must not drop by more than MLSYS_ROW_DROP_MAX_SHARE against the "
                "previous successful run of this suite (min_row_count is supplied at run time)."
            ),
        ),
        expectation(
            "expect_table_columns_to_match_set",
            check="required_columns",
            column_set=sorted(columns),
            exact_match=False,
            description="All contract columns are present (extra columns are allowed).",
        ),
        expectation(
            "unexpected_rows_expectation",
            check="column_types",
            unexpected_rows_query=_schema_query(columns),
            description="Every contract column has one of the allowed DuckDB types.",
        ),
    ]


def _lead_attribute_expectations() -> list[dict[str, Any]]:
    """Rules shared by raw leads and the marts for the lead's own attributes."""
    out = [
        expectation("expect_column_values_to_not_be_null", column="source"),
        expectation("expect_column_values_to_be_in_set", column="source", value_set=list(SOURCES)),
        expectation("expect_column_values_to_be_in_set", column="job_level", value_set=list(JOB_LEVELS)),
        expectation(
            "expect_column_values_to_be_between",
            column="company_size",
            min_value=1,
            description="company_size > 0 (employees) or null.",
        ),
        expectation(
            "unexpected_rows_expectation",
            check="country_iso_alpha2",
            unexpected_rows_query=(
                "SELECT lead_id, country FROM {batch}\n"
                "WHERE country IS NOT NULL AND NOT regexp_full_match(country, '[A-Z]{{2}}')"
            ),
            meta_column="country",
            description="country is an ISO-3166 alpha-2 code (two upper-case letters) or null.",
        ),
    ]
    # Warnings: null-rate bounds of the nullable attributes, and distribution bounds.
    for column in ("industry", "country", "company_size", "job_level"):
        out.append(
            expectation(
                "expect_column_values_to_not_be_null",
                severity=WARNING,
                check="null_rate",
                column=column,
                mostly=_NULLABLE_ATTRIBUTES_MOSTLY,
                description=f"At most {1 - _NULLABLE_ATTRIBUTES_MOSTLY:.0%} of {column} is null.",
            )
        )
    out += [
        expectation(
            "expect_column_unique_value_count_to_be_between",
            severity=WARNING,
            check="distribution",
            column="source",
            min_value=2,
            description="Leads come from more than one source.",
        ),
        expectation(
            "expect_column_mean_to_be_between",
            severity=WARNING,
            check="distribution",
            column="company_size",
            min_value=1,
            max_value=100_000,
            description="Mean company size is plausible.",
        ),
    ]
    return out


def _raw_leads_expectations() -> list[dict[str, Any]]:
    return [
        expectation("expect_column_values_to_not_be_null", column="lead_id"),
        expectation("expect_column_values_to_be_unique", column="lead_id"),
        expectation("expect_column_values_to_not_be_null", column="created_at"),
        expectation(
            "expect_column_values_to_be_between",
            check="not_in_future",
            column="created_at",
            max_value={"$PARAMETER": "run_time"},
            description=(
                "created_at is not later than the run time (UTC). Rows after the features' "
                "as_of date are fine: the point-in-time filter happens in the marts."
            ),
        ),
        *_lead_attribute_expectations(),
    ]


def _timestamp_expectations(column: str, suite: str) -> list[dict[str, Any]]:
    days = FRESHNESS_DAYS[suite]
    return [
        expectation("expect_column_values_to_not_be_null", column=column),
        expectation(
            "expect_column_values_to_be_between",
            check="not_in_future",
            column=column,
            max_value={"$PARAMETER": "run_time"},
            description=(
                f"{column} is not later than the run time (UTC): a future timestamp is a broken "
                "export or time zone, and would count in every later feature window."
            ),
        ),
        expectation(
            "expect_column_values_to_be_between",
            severity=WARNING,
            check="freshness",
            column=column,
            min_value={"$PARAMETER": "freshness_floor"},
            mostly=_FRESHNESS_MOSTLY,
            description=(
                f"The export is fresh: some {column} on or after as_of - {days} days (an export "
                "that stopped updating leaves every row older)."
            ),
        ),
    ]


# Recorded in the raw_activities suite's meta (decisions) and shown in its Data Docs.
_ACTIVITY_TYPE_DECISION = (
    "activity_type outside the accepted set is a blocking error, not a warning: the features "
    "count each accepted type in its own columns, so a renamed or new type silently feeds no "
    "per-type feature (only the totals) and the model's scores drift without any error; the "
    "rarest types are the most predictive, so no share threshold is safe. To accept a new "
    "type, add it to the raw landing contract (docs/contracts.md), the dbt var activity_types "
    "and ACTIVITY_TYPES."
)


def _raw_activities_expectations() -> list[dict[str, Any]]:
    return [
        expectation("expect_column_values_to_not_be_null", column="lead_id"),
        *_timestamp_expectations("occurred_at", RAW_ACTIVITIES),
        expectation(
            "expect_column_values_to_not_be_null",
            column="activity_type",
            description="Every activity has a type (a null type feeds no per-type feature).",
        ),
        expectation(
            "expect_column_values_to_be_in_set",
            column="activity_type",
            value_set=list(ACTIVITY_TYPES),
            description=(
                "activity_type is one of the accepted types; blocking, see the suite's "
                "meta.mlsys.decisions for why."
            ),
        ),
        # Not expect_column_distinct_values_to_contain_set: GX 1.24 reports no observed value
        # for it and defaults its missing count to 0, so an empty metric would pass unseen.
        expectation(
            "expect_column_unique_value_count_to_be_between",
            severity=WARNING,
            check="distribution",
            column="activity_type",
            min_value=len(ACTIVITY_TYPES),
            description=(
                "Every accepted activity type occurs (with the blocking in-set check, fewer "
                "distinct values means a type vanished from the export and its features are 0)."
            ),
        ),
    ]


def _raw_conversions_expectations() -> list[dict[str, Any]]:
    return [
        expectation("expect_column_values_to_not_be_null", column="lead_id"),
        expectation(
            "expect_column_values_to_be_unique",
            column="lead_id",
            description="A lead converts at most once (the raw landing contract): one row per lead.",
        ),
        *_timestamp_expectations("converted_at", RAW_CONVERSIONS),
    ]


SUITE_META: dict[str, dict[str, Any]] = {
    RAW_ACTIVITIES: {"decisions": {"activity_type_in_set": _ACTIVITY_TYPE_DECISION}},
}


def built_in_raw_suites() -> dict[str, list[dict[str, Any]]]:
    """The synthetic CRM's raw suites, each preceded by the table checks of its columns (its
    marts' suites come from their YAML in sql/, mlsys.validation.mart_suites)."""
    return {
        RAW_LEADS: table_expectations(SCHEMAS[RAW_LEADS]) + _raw_leads_expectations(),
        RAW_ACTIVITIES: table_expectations(SCHEMAS[RAW_ACTIVITIES]) + _raw_activities_expectations(),
        RAW_CONVERSIONS: table_expectations(SCHEMAS[RAW_CONVERSIONS]) + _raw_conversions_expectations(),
    }
