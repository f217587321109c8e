"""The Great Expectations gate: validate the Parquet inputs and marts before anyone uses them.

Five suites, one per data set (DESIGN sections 2 and 2b):

* ``raw_leads``           -> ``$MLSYS_DATA_DIR/raw/leads/*.parquet``
* ``raw_activities``      -> ``$MLSYS_DATA_DIR/raw/activities/*.parquet``
* ``raw_conversions``     -> ``$MLSYS_DATA_DIR/raw/conversions/*.parquet``
* ``lead_features``       -> ``settings.lead_features_path(as_of)``
* ``training_snapshots``  -> ``settings.training_snapshots_path(as_of)``

The raw suites run before dbt (the DAGs' ``validate_raw`` task), so bad landing data never
reaches the warehouse and a corrupt file or a missing column fails here with a named check
instead of deep inside dbt. Scoring reads leads and activities; training also reads
conversions (:data:`RAW_SCORING_SUITES`, :data:`RAW_TRAINING_SUITES`).

A second data source
--------------------
A GX context may carry an ``mlsys_gate.yml`` (:data:`GATE_SPEC_FILE`): its suites, each with
its column contract, its expectations and, for a raw table, its input (a Parquet or CSV glob
under ``$MLSYS_DATA_DIR``) and the stages it gates. Pointing ``MLSYS_GX_CONTEXT_DIR`` at such a
context switches the gate to that source with YAML only; ``write-context --root <context>``
renders the GX files from it. Without the file, the built-in suites below apply.

Where things live
-----------------
The suites are defined once, in Python, in :func:`suite_definitions` below. They are committed
as GX 1.x files in the File Data Context at ``<repo>/great_expectations/``
(``expectations/<suite>.json``, plus one ``validation_definitions/<suite>.json`` and one
``checkpoints/<suite>.json`` per suite). After editing the definitions run
``python -m mlsys.validation write-context``; ``tests/test_validation.py`` fails while the
committed JSON and the Python definitions disagree. At run time the gate reads the committed
files and never writes into that folder.

Runtime state (validation results, Data Docs, the row counts of previous runs, DuckDB
spill files) goes to ``settings.data_dir / "gx"`` through the ``MLSYS_GX_RUNTIME_DIR``
substitution variable in ``great_expectations.yml``. Opened without the gate (a plain
``gx.get_context(mode="file", context_root_dir="great_expectations")``), the committed
``config_variables.yml`` points it at the git-ignored ``great_expectations/uncommitted/``.

Blocking vs warning
-------------------
Every expectation carries ``meta.severity`` (``"error"`` or ``"warning"``; GX's own ``severity``
field is set to ``critical``/``warning`` to match). Errors fail the gate. Warnings (null-rate,
distribution and freshness bounds) are logged and reported as metrics; the run continues.
:func:`gate_all` raises one :class:`DataValidationError` for every failed suite of a gate; its
message is the readable summary (each failed expectation with its column, observed value and
a few unexpected values, and the path of the Data Docs), which is also logged at ERROR.

Engine
------
Expectations are pushed down into DuckDB through GX's SQL path (``duckdb-engine``): the
datasource is an in-memory DuckDB database and each suite's table asset is a VIEW over
``read_parquet([...])`` that the gate (re)creates before each run, so memory stays bounded
(DuckDB streams the Parquet files) and no DuckDB *file* is opened at all - in particular never
the project's warehouse. GX 1.x returns empty metric results for duckdb-engine (upstream GX
issues 10738 and 11579: it closes the connection before fetching the rows) unless the dialect
keeps one persisted connection, as GX does for SQLite. :func:`_treat_duckdb_as_persisted_dialect`
registers ``duckdb`` as such a dialect; the same single connection is what makes the in-memory
view visible to every metric query. Whatever GX does, :func:`_build_report` fails the whole run
when any expectation comes back without an observed value (the "passed vacuously" guard).

Importing this module is cheap (no GX, no DuckDB): they are imported inside the functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import glob as globlib
import itertools
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlsys.settings import Settings

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Suite definitions (the single source of the committed expectations/*.json files)
# --------------------------------------------------------------------------------------------

RAW_LEADS = "raw_leads"
RAW_ACTIVITIES = "raw_activities"
RAW_CONVERSIONS = "raw_conversions"
LEAD_FEATURES = "lead_features"
TRAINING_SNAPSHOTS = "training_snapshots"
SUITES: tuple[str, ...] = (RAW_LEADS, RAW_ACTIVITIES, RAW_CONVERSIONS, LEAD_FEATURES, TRAINING_SNAPSHOTS)
# Raw suite -> its folder under $MLSYS_DATA_DIR/raw/ (DESIGN section 2).
RAW_TABLES: dict[str, str] = {
    RAW_LEADS: "leads",
    RAW_ACTIVITIES: "activities",
    RAW_CONVERSIONS: "conversions",
}
# lead_features reads no conversions, so a broken conversions export must not stop scoring.
RAW_SCORING_SUITES: tuple[str, ...] = (RAW_LEADS, RAW_ACTIVITIES)
RAW_TRAINING_SUITES: tuple[str, ...] = (RAW_LEADS, RAW_ACTIVITIES, RAW_CONVERSIONS)
# Marts hold the leads known at their as_of, so their row counts grow with the date: the
# row-drop baseline of a mart is a previous run of an earlier or equal as_of (backfills).
DATED_SUITES: frozenset[str] = frozenset({LEAD_FEATURES, TRAINING_SNAPSHOTS})

ERROR = "error"
WARNING = "warning"

DATASOURCE_NAME = "mlsys_parquet"
BATCH_DEFINITION_NAME = "whole_table"
DATA_DOCS_SITE = "local_site"
RUNTIME_DIR_VARIABLE = "MLSYS_GX_RUNTIME_DIR"

SOURCES = ("web", "referral", "event", "paid_search", "social", "outbound")
JOB_LEVELS = ("c_level", "vp", "director", "manager", "individual")
ACTIVITY_TYPES = (
    "email_open",
    "email_click",
    "page_view",
    "pricing_page_view",
    "form_submit",
    "content_download",
    "webinar_attended",
    "demo_requested",
)
WINDOWS = ("7d", "30d", "90d")

# DuckDB type names (as DESCRIBE reports them) accepted per logical type. Integer columns accept
# any signed integer width, so an INTEGER written where the contract says BIGINT still passes;
# a DOUBLE or VARCHAR count does not.
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")
_FLOAT = ("FLOAT", "DOUBLE")
_TIMESTAMP = (
    "TIMESTAMP",
    "TIMESTAMP_S",
    "TIMESTAMP_MS",
    "TIMESTAMP_NS",
    "TIMESTAMP WITH TIME ZONE",
)
_DATE = ("DATE",)
_TEXT = ("VARCHAR",)

ACTIVITY_WINDOW_COUNTS = tuple(f"n_activities_{w}" for w in WINDOWS)
ACTIVITY_TYPE_COUNTS = tuple(f"n_{t}_{w}" for t in ACTIVITY_TYPES for w in WINDOWS)
COUNT_COLUMNS = ("n_activities_total", *ACTIVITY_WINDOW_COUNTS, *ACTIVITY_TYPE_COUNTS)

RAW_LEADS_COLUMNS: dict[str, tuple[str, ...]] = {
    "lead_id": _INTEGER,
    "created_at": _TIMESTAMP,
    "source": _TEXT,
    "industry": _TEXT,
    "country": _TEXT,
    "company_size": _INTEGER,
    "job_level": _TEXT,
}
LEAD_FEATURES_COLUMNS: dict[str, tuple[str, ...]] = {
    "lead_id": _INTEGER,
    "as_of": _DATE,
    "source": _TEXT,
    "industry": _TEXT,
    "country": _TEXT,
    "job_level": _TEXT,
    "company_size": _INTEGER,
    "lead_age_days": _INTEGER,
    "days_since_first_activity": _FLOAT,
    "days_since_last_activity": _FLOAT,
    **dict.fromkeys(COUNT_COLUMNS, _INTEGER),
    "activity_trend_7d": _INTEGER,
}
TRAINING_SNAPSHOTS_COLUMNS: dict[str, tuple[str, ...]] = {
    **LEAD_FEATURES_COLUMNS,
    "label": _INTEGER,
}
RAW_ACTIVITIES_COLUMNS: dict[str, tuple[str, ...]] = {
    "lead_id": _INTEGER,
    "occurred_at": _TIMESTAMP,
    "activity_type": _TEXT,
}
RAW_CONVERSIONS_COLUMNS: dict[str, tuple[str, ...]] = {
    "lead_id": _INTEGER,
    "converted_at": _TIMESTAMP,
}

SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    RAW_LEADS: RAW_LEADS_COLUMNS,
    RAW_ACTIVITIES: RAW_ACTIVITIES_COLUMNS,
    RAW_CONVERSIONS: RAW_CONVERSIONS_COLUMNS,
    LEAD_FEATURES: LEAD_FEATURES_COLUMNS,
    TRAINING_SNAPSHOTS: TRAINING_SNAPSHOTS_COLUMNS,
}

# Null-rate bounds (warnings): at least this share of rows must be non-null.
_NULLABLE_ATTRIBUTES_MOSTLY = 0.5
_ACTIVITY_RECENCY_MOSTLY = 0.05
# Freshness (warnings): at least this share of the rows is dated on or after
# as_of - FRESHNESS_DAYS[suite]. A stale export fails nothing by itself, but features then
# describe an older world; rows after as_of count too, so backfills of old dates stay quiet.
_FRESHNESS_MOSTLY = 0.001
FRESHNESS_DAYS: dict[str, int] = {RAW_ACTIVITIES: 7, RAW_CONVERSIONS: 30}

_SUITE_NOTES = (
    "Generated from mlsys/validation.py (suite_definitions); regenerate with "
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

_SPEC_SUITE_NOTES = _SUITE_NOTES.replace(
    "Generated from mlsys/validation.py (suite_definitions)",
    "Generated from this context's mlsys_gate.yml (mlsys.validation.suite_definitions)",
)


def _expectation(
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


def _sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _schema_query(columns: Mapping[str, Sequence[str]]) -> str:
    """UnexpectedRows query: one row per required column that is missing or of the wrong type.

    GX's own type expectations cannot be used: they rely on SQLAlchemy reflection, which
    duckdb-engine 0.17 does not support under SQLAlchemy 2.1 (pg_collation), so they error.
    """
    rows = ",\n  ".join(f"('{name}', {_sql_list(types)})" for name, types in columns.items())
    return (
        "SELECT expected.column_name, expected.allowed_types, actual.column_type AS observed_type\n"
        f"FROM (VALUES\n  {rows}\n) AS expected(column_name, allowed_types)\n"
        "LEFT JOIN (DESCRIBE {batch}) AS actual USING (column_name)\n"
        "WHERE actual.column_type IS NULL\n"
        "   OR NOT list_contains(expected.allowed_types, actual.column_type)"
    )


def _table_expectations(columns: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    return [
        _expectation(
            "expect_table_row_count_to_be_between",
            check="non_empty",
            min_value=1,
            description="The table must not be empty.",
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            check="row_drop_vs_previous_run",
            min_value={"$PARAMETER": "min_row_count"},
            description=(
                "Row count must not drop by more than MLSYS_ROW_DROP_MAX_SHARE against the "
                "previous successful run of this suite (min_row_count is supplied at run time)."
            ),
        ),
        _expectation(
            "expect_table_columns_to_match_set",
            check="required_columns",
            column_set=sorted(columns),
            exact_match=False,
            description="All contract columns are present (extra columns are allowed).",
        ),
        _expectation(
            "unexpected_rows_expectation",
            check="column_types",
            unexpected_rows_query=_schema_query(columns),
            description="Every contract column has one of the allowed DuckDB types.",
        ),
    ]


def _lead_attribute_expectations() -> list[dict[str, Any]]:
    """Rules shared by raw leads and the marts for the lead's own attributes."""
    out = [
        _expectation("expect_column_values_to_not_be_null", column="source"),
        _expectation("expect_column_values_to_be_in_set", column="source", value_set=list(SOURCES)),
        _expectation("expect_column_values_to_be_in_set", column="job_level", value_set=list(JOB_LEVELS)),
        _expectation(
            "expect_column_values_to_be_between",
            column="company_size",
            min_value=1,
            description="company_size > 0 (employees) or null.",
        ),
        _expectation(
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
            _expectation(
                "expect_column_values_to_not_be_null",
                severity=WARNING,
                check="null_rate",
                column=column,
                mostly=_NULLABLE_ATTRIBUTES_MOSTLY,
                description=f"At most {1 - _NULLABLE_ATTRIBUTES_MOSTLY:.0%} of {column} is null.",
            )
        )
    out += [
        _expectation(
            "expect_column_unique_value_count_to_be_between",
            severity=WARNING,
            check="distribution",
            column="source",
            min_value=2,
            description="Leads come from more than one source.",
        ),
        _expectation(
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


def _feature_expectations(suite: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [_expectation("expect_column_values_to_not_be_null", column="lead_id")]
    if suite == LEAD_FEATURES:
        out += [
            _expectation("expect_column_values_to_be_unique", column="lead_id"),
            _expectation("expect_column_values_to_not_be_null", column="as_of"),
            _expectation(
                "expect_column_unique_value_count_to_be_between",
                column="as_of",
                min_value=1,
                max_value=1,
                description="One feature file holds exactly one as_of date.",
            ),
        ]
    else:
        out += [
            _expectation(
                "expect_compound_columns_to_be_unique",
                column_list=["lead_id", "as_of"],
                description="One row per lead per snapshot date.",
            ),
            _expectation("expect_column_values_to_not_be_null", column="as_of"),
        ]
    out += _lead_attribute_expectations()
    out += [
        _expectation("expect_column_values_to_not_be_null", column="lead_age_days"),
        _expectation("expect_column_values_to_be_between", column="lead_age_days", min_value=0),
        _expectation("expect_column_values_to_be_between", column="days_since_first_activity", min_value=0),
        _expectation("expect_column_values_to_be_between", column="days_since_last_activity", min_value=0),
        _expectation("expect_column_values_to_not_be_null", column="activity_trend_7d"),
    ]
    for column in COUNT_COLUMNS:
        out += [
            _expectation("expect_column_values_to_not_be_null", column=column),
            _expectation("expect_column_values_to_be_between", column=column, min_value=0),
        ]
    windows = [*ACTIVITY_WINDOW_COUNTS, "n_activities_total"]
    for shorter, longer in itertools.pairwise(windows):
        out.append(
            _expectation(
                "expect_column_pair_values_a_to_be_greater_than_b",
                column_A=longer,
                column_B=shorter,
                or_equal=True,
                description=f"{longer} >= {shorter} (windows are nested).",
            )
        )
    # Warnings: null-rate of recency features, distribution bounds.
    for column in ("days_since_first_activity", "days_since_last_activity"):
        out.append(
            _expectation(
                "expect_column_values_to_not_be_null",
                severity=WARNING,
                check="null_rate",
                column=column,
                mostly=_ACTIVITY_RECENCY_MOSTLY,
                description=f"At least {_ACTIVITY_RECENCY_MOSTLY:.0%} of leads have an activity.",
            )
        )
    out += [
        _expectation(
            "expect_column_mean_to_be_between",
            severity=WARNING,
            check="distribution",
            column="lead_age_days",
            min_value=0,
            max_value=3650,
            description="Mean lead age is under ten years.",
        ),
        _expectation(
            "expect_column_mean_to_be_between",
            severity=WARNING,
            check="distribution",
            column="n_activities_90d",
            min_value=0,
            max_value=1000,
            description="Mean activity count over 90 days is plausible.",
        ),
    ]
    if suite == TRAINING_SNAPSHOTS:
        out += [
            _expectation("expect_column_values_to_not_be_null", column="label"),
            _expectation("expect_column_values_to_be_in_set", column="label", value_set=[0, 1]),
            _expectation(
                "expect_column_mean_to_be_between",
                severity=WARNING,
                check="distribution",
                column="label",
                min_value=0.001,
                max_value=0.5,
                description="Conversion rate (label mean) between 0.1% and 50%.",
            ),
        ]
    return out


def _raw_leads_expectations() -> list[dict[str, Any]]:
    return [
        _expectation("expect_column_values_to_not_be_null", column="lead_id"),
        _expectation("expect_column_values_to_be_unique", column="lead_id"),
        _expectation("expect_column_values_to_not_be_null", column="created_at"),
        _expectation(
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
        _expectation("expect_column_values_to_not_be_null", column=column),
        _expectation(
            "expect_column_values_to_be_between",
            check="not_in_future",
            column=column,
            max_value={"$PARAMETER": "run_time"},
            description=(
                f"{column} is not later than the run time (UTC): a future timestamp is a broken "
                "export or time zone, and would count in every later feature window."
            ),
        ),
        _expectation(
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
    "type, add it to DESIGN section 2, the dbt var activity_types and ACTIVITY_TYPES."
)


def _raw_activities_expectations() -> list[dict[str, Any]]:
    return [
        _expectation("expect_column_values_to_not_be_null", column="lead_id"),
        *_timestamp_expectations("occurred_at", RAW_ACTIVITIES),
        _expectation(
            "expect_column_values_to_not_be_null",
            column="activity_type",
            description="Every activity has a type (a null type feeds no per-type feature).",
        ),
        _expectation(
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
        _expectation(
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
        _expectation("expect_column_values_to_not_be_null", column="lead_id"),
        _expectation(
            "expect_column_values_to_be_unique",
            column="lead_id",
            description="A lead converts at most once (DESIGN section 2): one row per lead.",
        ),
        *_timestamp_expectations("converted_at", RAW_CONVERSIONS),
    ]


_SUITE_META: dict[str, dict[str, Any]] = {
    RAW_ACTIVITIES: {"decisions": {"activity_type_in_set": _ACTIVITY_TYPE_DECISION}},
}


def suite_definitions(spec: GateSpec | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every suite as a list of ``{"type", "kwargs", "meta", "description"}`` dicts: the
    built-in suites of the synthetic CRM, or those of a context's gate spec (``mlsys_gate.yml``),
    each preceded by the same table checks (non-empty, row drop, required columns, types)."""
    if spec is not None and spec.expectations is not None:
        suites = {
            name: _table_expectations(spec.suites[name].columns) + [dict(e) for e in spec.expectations[name]]
            for name in spec.suites
        }
    else:
        suites = {
            RAW_LEADS: _table_expectations(SCHEMAS[RAW_LEADS]) + _raw_leads_expectations(),
            RAW_ACTIVITIES: _table_expectations(SCHEMAS[RAW_ACTIVITIES]) + _raw_activities_expectations(),
            RAW_CONVERSIONS: _table_expectations(SCHEMAS[RAW_CONVERSIONS]) + _raw_conversions_expectations(),
            LEAD_FEATURES: _table_expectations(SCHEMAS[LEAD_FEATURES]) + _feature_expectations(LEAD_FEATURES),
            TRAINING_SNAPSHOTS: _table_expectations(SCHEMAS[TRAINING_SNAPSHOTS])
            + _feature_expectations(TRAINING_SNAPSHOTS),
        }
    for expectations in suites.values():
        for exp in expectations:
            # "meta_column" names the column of a table-level (UnexpectedRows) expectation.
            column = exp["kwargs"].pop("meta_column", None)
            if column:
                exp["meta"]["column"] = column
    return suites


# --------------------------------------------------------------------------------------------
# Gate spec: which suites a GX context holds, what each reads and which stage it gates
# --------------------------------------------------------------------------------------------

GATE_SPEC_FILE = "mlsys_gate.yml"
STAGES = ("scoring", "training")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


@dataclass(frozen=True)
class SuiteSpec:
    """One suite of a gate: its column contract (checked before GX runs) and, for a raw
    table, the files it reads (a glob under MLSYS_DATA_DIR) and the stages it gates.
    A suite without ``input`` is a mart (``lead_features``, ``training_snapshots``), read
    from the settings' feature paths, whose row-drop baseline is dated."""

    name: str
    columns: dict[str, tuple[str, ...]]
    input: str | None = None
    stages: tuple[str, ...] = ()
    freshness_days: int = 0

    @property
    def dated(self) -> bool:
        return self.input is None


@dataclass(frozen=True)
class GateSpec:
    suites: dict[str, SuiteSpec]
    # None: the built-in expectations of suite_definitions(); else per suite, from the spec.
    expectations: dict[str, list[dict[str, Any]]] | None = None

    def raw_suites(self, *, training: bool) -> tuple[str, ...]:
        stage = "training" if training else "scoring"
        return tuple(name for name, s in self.suites.items() if s.input and stage in s.stages)


def default_gate_spec() -> GateSpec:
    """The synthetic CRM's gate (DESIGN section 2): the module constants above."""
    suites: dict[str, SuiteSpec] = {}
    for name in SUITES:
        raw = RAW_TABLES.get(name)
        stages = tuple(
            stage
            for stage, members in (("scoring", RAW_SCORING_SUITES), ("training", RAW_TRAINING_SUITES))
            if name in members
        )
        suites[name] = SuiteSpec(
            name=name,
            columns=dict(SCHEMAS[name]),
            input=f"raw/{raw}/*.parquet" if raw else None,
            stages=stages,
            freshness_days=FRESHNESS_DAYS.get(name, 0),
        )
    return GateSpec(suites)


def _spec_expectation(suite: str, item: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(item, Mapping) or "type" not in item:
        raise ValueError(f"{GATE_SPEC_FILE}: every expectation of {suite} needs a `type`")
    unknown = set(item) - {"type", "kwargs", "severity", "check", "column", "description"}
    if unknown:
        raise ValueError(f"{GATE_SPEC_FILE}: {suite}: unknown expectation key(s) {sorted(unknown)}")
    severity = str(item.get("severity", ERROR))
    if severity not in (ERROR, WARNING):
        raise ValueError(f"{GATE_SPEC_FILE}: {suite}: severity must be {ERROR} or {WARNING}")
    kwargs = dict(item.get("kwargs") or {})
    if item.get("column"):  # the column of a table-level (unexpected rows) expectation
        kwargs["meta_column"] = str(item["column"])
    return _expectation(
        str(item["type"]),
        severity=severity,
        check=item.get("check"),
        description=item.get("description"),
        **kwargs,
    )


def load_gate_spec(root: Path) -> GateSpec:
    """The gate of the GX context at ``root``: its ``mlsys_gate.yml`` when it has one (a second
    data source, onboarded with YAML only), else the built-in gate of the synthetic CRM."""
    path = Path(root) / GATE_SPEC_FILE
    if not path.is_file():
        return default_gate_spec()
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    raw_suites = data.get("suites")
    if not isinstance(raw_suites, Mapping) or not raw_suites:
        raise ValueError(f"{path}: `suites` must map suite names to their definitions")
    suites: dict[str, SuiteSpec] = {}
    expectations: dict[str, list[dict[str, Any]]] = {}
    for name, body in raw_suites.items():
        body = body or {}
        columns = body.get("columns")
        if not isinstance(columns, Mapping) or not columns:
            raise ValueError(f"{path}: suite {name} needs `columns` (name: [DuckDB types])")
        stages = tuple(body.get("stages") or ())
        if body.get("input") and not stages:
            raise ValueError(f"{path}: raw suite {name} needs `stages` (some of {STAGES})")
        if set(stages) - set(STAGES):
            raise ValueError(f"{path}: suite {name}: stages must be among {STAGES}")
        suites[str(name)] = SuiteSpec(
            name=str(name),
            columns={str(c): tuple(t if isinstance(t, list) else [t]) for c, t in columns.items()},
            input=body.get("input"),
            stages=stages,
            freshness_days=int(body.get("freshness_days", 0)),
        )
        expectations[str(name)] = [_spec_expectation(name, e) for e in body.get("expectations") or []]
    return GateSpec(suites, expectations)


def gate_spec(settings: Settings | None = None) -> GateSpec:
    settings = settings or Settings.from_env()
    return load_gate_spec(Path(settings.gx_context_dir))


def raw_suites(settings: Settings | None = None, *, training: bool = False) -> tuple[str, ...]:
    """The raw suites that gate scoring (or, with ``training``, retraining) in this context."""
    return gate_spec(settings).raw_suites(training=training)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationFailure:
    expectation: str
    column: str | None
    observed: object
    unexpected_sample: list[Any]
    severity: str  # "error" | "warning"
    detail: str = ""  # expected range / set / reason, for the summary line


@dataclass
class ValidationReport:
    suite: str
    success: bool
    evaluated: int
    failures: list[ExpectationFailure]
    warnings: list[ExpectationFailure]
    data_docs: str | None
    row_count: int | None
    source: str = ""  # the Parquet file(s) validated
    # One entry per evaluated expectation: expectation, column, severity, success, observed.
    checks: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        status = "PASSED" if self.success else "FAILED"
        rows = "?" if self.row_count is None else f"{self.row_count:,}"
        lines = [
            f"GX suite {self.suite!r}: {status} - {len(self.failures)} blocking failure(s), "
            f"{len(self.warnings)} warning(s), {self.evaluated} expectation(s) evaluated on "
            f"{rows} row(s) of {self.source or '?'}"
        ]
        for failure in self.failures:
            lines.append("  ERROR   " + _failure_line(failure))
        for warning in self.warnings:
            lines.append("  WARNING " + _failure_line(warning))
        docs = self.data_docs or "not built (GX did not run: the input failed the checks above)"
        lines.append(f"  Data Docs: {docs}")
        return "\n".join(lines)


class DataValidationError(RuntimeError):
    """The gate failed: ``str(err)`` is the summary of every failed report.

    ``report`` is the first failed report, ``reports`` all of them (a gate over several
    suites reports every failing suite at once, so one run tells the whole story).
    """

    def __init__(self, report: ValidationReport, *more: ValidationReport) -> None:
        self.report = report
        self.reports = [report, *more]
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.reports) == 1:
            return self.report.summary()
        suites = ", ".join(r.suite for r in self.reports)
        head = f"data quality gate FAILED in {len(self.reports)} suites ({suites})"
        return "\n".join([head, *(r.summary() for r in self.reports)])

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling would call __init__ with the message string, not the reports.
        return (type(self), tuple(self.reports))


def validate_parquet(
    suite: str,
    parquet_glob: str | Path,
    settings: Settings | None = None,
    *,
    run_time: datetime | None = None,
    as_of: date | None = None,
) -> ValidationReport:
    """Validate the Parquet file(s) matching ``parquet_glob`` against ``suite``.

    ``parquet_glob`` is a file, a folder (all ``*.parquet`` in it) or a glob. Bad input (no
    file, an unreadable file, a missing or mistyped column) gives a failed report whose single
    failure names the file or column; GX is not run then and no Data Docs are built.
    ``run_time`` (default: now, UTC) bounds raw timestamps; ``as_of`` (default: the run
    time's date) anchors the freshness warnings and, for the marts, picks the row-drop
    baseline among earlier or equal dates.
    """
    settings = settings or Settings.from_env()
    spec = gate_spec(settings)
    if suite not in spec.suites:
        raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(spec.suites)}")
    run_time = _utc_naive(run_time or datetime.now(UTC))
    pattern = _pattern(parquet_glob)
    started = time.monotonic()
    with _LOCK:
        report = _preflight(suite, pattern, spec.suites[suite].columns)
        if report is None:
            report = _run_gx(suite, pattern, settings, run_time, as_of, spec.suites[suite])
    logger.info("GX suite %s validated in %.1f s", suite, time.monotonic() - started)
    _emit_metrics(report, settings)
    return report


def validate_mart(mart: str, as_of: date, settings: Settings | None = None) -> ValidationReport:
    """A mart's file of ``as_of`` against the suite of the same name: a staged build waiting
    for this gate (features.build(staged=True)), else the file in place."""
    settings = settings or Settings.from_env()
    return validate_parquet(mart, settings.mart_path_to_gate(mart, as_of), settings, as_of=as_of)


def validate_lead_features(as_of: date, settings: Settings | None = None) -> ValidationReport:
    return validate_mart(LEAD_FEATURES, as_of, settings)


def validate_training_snapshots(as_of: date, settings: Settings | None = None) -> ValidationReport:
    return validate_mart(TRAINING_SNAPSHOTS, as_of, settings)


def validate_raw(
    suite: str,
    settings: Settings | None = None,
    *,
    as_of: date | None = None,
    run_time: datetime | None = None,
) -> ValidationReport:
    """One raw landing table (``raw_leads``, ``raw_activities``, ``raw_conversions`` in the
    built-in gate; whatever the context's ``mlsys_gate.yml`` declares otherwise)."""
    settings = settings or Settings.from_env()
    spec = gate_spec(settings)
    raw = {name: s for name, s in spec.suites.items() if s.input}
    if suite not in raw:
        raise ValueError(f"unknown raw suite {suite!r}; expected one of {', '.join(raw)}")
    files = settings.data_dir / str(raw[suite].input)
    return validate_parquet(suite, files, settings, run_time=run_time, as_of=as_of)


def validate_raw_leads(settings: Settings | None = None, *, as_of: date | None = None) -> ValidationReport:
    return validate_raw(RAW_LEADS, settings, as_of=as_of)


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


def _emit_metrics(report: ValidationReport, settings: Settings | None = None) -> None:
    """METRICS HOOK: publish the gate's outcome through ``mlsys.metrics`` (DESIGN section 6).

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


# --------------------------------------------------------------------------------------------
# Internals: input checks
# --------------------------------------------------------------------------------------------

_LOCK = threading.RLock()
_DUCKDB_MEMORY_LIMIT = "256MB"  # DuckDB spills to <data_dir>/gx/tmp beyond this
_DUCKDB_THREADS = 2


def _utc_naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _pattern(parquet_glob: str | Path) -> str:
    path = Path(parquet_glob)
    if path.is_dir():
        path = path / "*.parquet"
    return str(path.expanduser().absolute())


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_csv(files: Sequence[str]) -> bool:
    return bool(files) and all(f.lower().endswith(_CSV_SUFFIXES) for f in files)


def _read_parquet_sql(files: Sequence[str]) -> str:
    """The SQL that reads the input files: Parquet, or CSV exports (DuckDB sniffs the
    delimiter and the column types, so a column the contract types as BIGINT fails the type
    check when a row of the export holds text)."""
    listing = ", ".join(_sql_str(f) for f in files)
    if _is_csv(files):
        return f"read_csv([{listing}], union_by_name = true, header = true, hive_partitioning = false)"
    return f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"


def _failed_report(
    suite: str,
    pattern: str,
    expectation: str,
    observed: str,
    *,
    column: str | None = None,
    sample: list[Any] | None = None,
    row_count: int | None = None,
) -> ValidationReport:
    failure = ExpectationFailure(
        expectation=expectation,
        column=column,
        observed=observed,
        unexpected_sample=sample or [],
        severity=ERROR,
    )
    return ValidationReport(
        suite=suite,
        success=False,
        evaluated=0,
        failures=[failure],
        warnings=[],
        data_docs=None,
        row_count=row_count,
        source=pattern,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _preflight(suite: str, pattern: str, expected: Mapping[str, Sequence[str]]) -> ValidationReport | None:
    """Cheap checks before GX: files exist, are Parquet, have the contract's columns and types.

    Returns a failed report, or None when GX should run.
    """
    import duckdb

    files = sorted(globlib.glob(pattern))
    if not files:
        return _failed_report(suite, pattern, "input_files_exist", f"no Parquet file matches {pattern}")
    con = duckdb.connect(":memory:")
    try:
        bad: list[str] = []
        for f in [] if _is_csv(files) else files:
            try:
                con.execute(f"SELECT count(*) FROM parquet_metadata({_sql_str(f)})").fetchall()  # noqa: S608 - _sql_str quotes the file name
            except duckdb.Error as exc:
                bad.append(f"{f}: {_first_line(exc)}")
        if bad:
            return _failed_report(
                suite,
                pattern,
                "input_files_are_parquet",
                f"{len(bad)} unreadable Parquet file(s), first: {bad[0]}",
                sample=bad[:5],
            )
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {_read_parquet_sql(files)}").fetchall()  # noqa: S608 - _read_parquet_sql quotes the paths
            counted = con.execute(f"SELECT count(*) FROM {_read_parquet_sql(files)}").fetchone()  # noqa: S608 - _read_parquet_sql quotes the paths
            row_count = int(counted[0]) if counted else 0
        except duckdb.Error as exc:
            return _failed_report(
                suite,
                pattern,
                "input_files_are_parquet",
                f"cannot read {pattern}: {_first_line(exc)}",
            )
    finally:
        con.close()
    actual = {str(row[0]): str(row[1]) for row in described}
    missing = [c for c in expected if c not in actual]
    if missing:
        return _failed_report(
            suite,
            pattern,
            "expect_table_columns_to_match_set:required_columns",
            f"missing column(s) {', '.join(missing)} in {pattern}",
            column=missing[0] if len(missing) == 1 else ", ".join(missing),
            sample=missing[:5],
            row_count=row_count,
        )
    mistyped = [
        f"{c}: {actual[c]} (expected {' or '.join(types)})"
        for c, types in expected.items()
        if actual[c] not in types
    ]
    if mistyped:
        columns = [m.split(":", 1)[0] for m in mistyped]
        return _failed_report(
            suite,
            pattern,
            "unexpected_rows_expectation:column_types",
            f"wrong type for {'; '.join(mistyped)} in {pattern}",
            column=", ".join(columns),
            sample=mistyped[:5],
            row_count=row_count,
        )
    return None


# --------------------------------------------------------------------------------------------
# Internals: GX
# --------------------------------------------------------------------------------------------


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


def _import_gx() -> Any:
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


def _runtime_dir(settings: Settings) -> Path:
    return settings.data_dir / "gx"


def _get_context(settings: Settings) -> Any:
    """One File Data Context per (context folder, runtime folder), cached for the process."""
    root = Path(settings.gx_context_dir)
    runtime = _runtime_dir(settings)
    key = (str(root), str(runtime))
    context = _CONTEXTS.get(key)
    if context is not None:
        return context
    while len(_CONTEXTS) >= _MAX_CONTEXTS:  # tests create one per temporary data dir
        _CONTEXTS.pop(next(iter(_CONTEXTS)))
    if not (root / "great_expectations.yml").is_file():
        raise FileNotFoundError(f"no GX File Data Context at {root} (great_expectations.yml missing)")
    gx = _import_gx()
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


def _execute(execution_engine: Any, statements: Sequence[str]) -> None:
    """Run statements on GX's own (persisted) DuckDB connection and commit."""
    with execution_engine.get_connection() as connection:
        if connection.in_transaction():
            connection.rollback()  # GX's queries leave a read transaction open on this connection
        for statement in statements:
            connection.exec_driver_sql(statement)
        connection.commit()


def _prepare_view(checkpoint: Any, suite: str, files: Sequence[str], settings: Settings) -> Any:
    definitions = list(checkpoint.validation_definitions)
    if len(definitions) != 1:
        raise RuntimeError(f"checkpoint {checkpoint.name!r} must have exactly one validation definition")
    asset = definitions[0].batch_definition.data_asset
    execution_engine = asset.datasource.get_execution_engine()
    spill = _spill_dir(settings)
    statements = [
        "SET TimeZone = 'UTC'",
        f"SET memory_limit = '{_DUCKDB_MEMORY_LIMIT}'",
        f"SET threads = {_DUCKDB_THREADS}",
        "SET preserve_insertion_order = false",
        # DuckDB draws a progress bar on stdout for long scans: noise in a task log.
        "SET enable_progress_bar = false",
    ]
    # DuckDB refuses to switch its temp directory once it has spilled there, even to the same
    # path, so it is set once per connection (the context and its connection are cached).
    if _current_setting(execution_engine, "temp_directory") != str(spill):
        statements.append(f"SET temp_directory = {_sql_str(str(spill))}")
    statements.append(
        f'CREATE OR REPLACE VIEW "{asset.table_name}" AS SELECT * FROM {_read_parquet_sql(files)}'  # noqa: S608 - our table name, quoted paths
    )
    _execute(execution_engine, statements)
    return execution_engine


def _spill_dir(settings: Settings) -> Path:
    """This process's DuckDB spill folder; those of processes that are gone are removed."""
    root = _runtime_dir(settings) / "tmp"
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


def _run_gx(
    suite: str,
    pattern: str,
    settings: Settings,
    run_time: datetime,
    as_of: date | None,
    spec: SuiteSpec,
) -> ValidationReport:
    files = sorted(globlib.glob(pattern))
    context = _get_context(settings)
    checkpoint = context.checkpoints.get(suite)
    try:
        execution_engine = _prepare_view(checkpoint, suite, files, settings)
    except Exception as exc:
        # Not the data's fault (the files passed the pre-checks): a plain error, so the task's
        # retry applies, with the one line that says what DuckDB refused.
        raise RuntimeError(
            f"GX could not set up DuckDB for suite {suite!r} on {pattern}: {_first_line(exc)}"
        ) from exc
    state_key = _state_key(spec.dated, as_of)
    previous = _baseline_row_count(_read_state(settings).get(suite), state_key)
    min_row_count = _min_row_count(previous, settings.row_drop_max_share)
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
            return _failed_report(
                suite,
                pattern,
                "gx_checkpoint_run",
                f"GX raised {type(exc).__name__}: {_first_line(exc)}",
                row_count=None,
            )
        suite_results = list(result.run_results.values())
        if len(suite_results) != 1:
            raise RuntimeError(f"checkpoint {suite!r} returned {len(suite_results)} validation results")
        report = _build_report(
            suite,
            suite_results[0],
            source=pattern,
            data_docs=_data_docs_index(context),
            previous_row_count=previous,
            sample_rows=lambda query: _sample_rows(execution_engine, query, suite),
        )
    finally:
        try:
            _execute(execution_engine, [f'DROP VIEW IF EXISTS "{suite}"'])
        except Exception:
            logger.debug("could not drop the GX view", exc_info=True)
    if report.success and report.row_count is not None:
        _write_state(settings, suite, state_key, report.row_count, pattern)
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
# Internals: turning GX results into a report (with the vacuous-pass guard)
# --------------------------------------------------------------------------------------------

_OBSERVATION_KEYS = ("observed_value", "unexpected_count", "element_count")


def _has_observation(result: Mapping[str, Any] | None, success: bool = False) -> bool:
    if not result:
        return False
    if (
        success
        and result.get("observed_value", 0) is None
        and not any(k in result for k in _OBSERVATION_KEYS[1:])
    ):
        # A success "observing" nothing (observed_value None, no counts) looked at no data.
        return False
    return any(k in result for k in _OBSERVATION_KEYS)


def _exception_message(exception_info: Any) -> str | None:
    if not exception_info:
        return None
    infos: list[Any] = [exception_info]
    if isinstance(exception_info, Mapping) and "raised_exception" not in exception_info:
        infos = list(exception_info.values())
    for info in infos:
        if isinstance(info, Mapping) and info.get("raised_exception"):
            message = str(info.get("exception_message") or "exception").strip()
            return message.splitlines()[0] if message else "exception"
    return None


def _column_of(config: Any) -> str | None:
    kwargs = config.kwargs or {}
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']}, {kwargs.get('column_B')}"
    if kwargs.get("column_list"):
        return ", ".join(str(c) for c in kwargs["column_list"])
    meta = config.meta or {}
    return str(meta["column"]) if meta.get("column") else None


def _expectation_name(config: Any) -> str:
    check = (config.meta or {}).get("check")
    return f"{config.type}:{check}" if check else str(config.type)


def _severity_of(config: Any) -> str:
    meta = config.meta or {}
    declared = str(meta.get("severity") or getattr(config, "severity", "") or ERROR).lower()
    return WARNING if declared == WARNING else ERROR


def _expected_text(config: Any) -> str:
    kwargs = config.kwargs or {}
    parts = []
    if "value_set" in kwargs:
        parts.append(f"in {list(kwargs['value_set'])}")
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None or high is not None:
        parts.append(f"between {'-inf' if low is None else low} and {'+inf' if high is None else high}")
    if kwargs.get("column_set"):
        parts.append("required columns present")
    if kwargs.get("mostly") is not None:
        parts.append(f"mostly={kwargs['mostly']}")
    return "expected " + ", ".join(parts) if parts else ""


def _observed(result: Mapping[str, Any]) -> object:
    if "observed_value" in result:
        return result["observed_value"]
    return {
        "unexpected_count": result.get("unexpected_count"),
        "element_count": result.get("element_count"),
        "unexpected_percent": result.get("unexpected_percent"),
    }


def _unexpected_sample(result: Mapping[str, Any], limit: int = 5) -> list[Any]:
    """Distinct unexpected values, most frequent first (nulls are not worth showing)."""
    values: list[Any] = []
    counts = result.get("partial_unexpected_counts") or []
    candidates = [c.get("value") for c in counts if isinstance(c, Mapping)] or list(
        result.get("partial_unexpected_list") or []
    )
    for value in candidates:
        if value is not None and value not in values:
            values.append(value)
        if len(values) == limit:
            break
    return values


def _build_report(
    suite: str,
    suite_result: Any,
    *,
    source: str = "",
    data_docs: str | None = None,
    previous_row_count: int | None = None,
    sample_rows: Any = None,
) -> ValidationReport:
    failures: list[ExpectationFailure] = []
    warnings: list[ExpectationFailure] = []
    checks: list[dict[str, Any]] = []
    row_count: int | None = None
    vacuous: list[str] = []
    for r in suite_result.results:
        config = r.expectation_config
        result: Mapping[str, Any] = r.result or {}
        name = _expectation_name(config)
        column = _column_of(config)
        severity = _severity_of(config)
        if config.type == "expect_table_row_count_to_be_between" and "observed_value" in result:
            row_count = int(result["observed_value"])
        if not _has_observation(result, bool(r.success)):
            # The guard: no observed value means GX did not really look at the data.
            vacuous.append(name)
            error = _exception_message(r.exception_info)
            observed: object = (
                "no observed value: the check passed vacuously (GX+DuckDB returned no metric)"
                + (f"; GX raised: {error}" if error else "")
            )
            failure = ExpectationFailure(name, column, observed, [], ERROR, "treated as failed")
            failures.append(failure)
            checks.append(_check(name, column, ERROR, False, None))
            continue
        checks.append(_check(name, column, severity, bool(r.success), _observed(result)))
        if r.success:
            continue
        detail = _expected_text(config) or str(getattr(config, "description", None) or "").rstrip(".")
        if name.endswith(":row_drop_vs_previous_run") and previous_row_count is not None:
            detail += f" (previous successful run: {previous_row_count:,} rows)"
        sample = _unexpected_sample(result)
        query = (config.kwargs or {}).get("unexpected_rows_query")
        if not sample and isinstance(query, str) and sample_rows is not None:
            sample = sample_rows(query)
        failure = ExpectationFailure(
            expectation=name,
            column=column,
            observed=_observed(result),
            unexpected_sample=sample,
            severity=severity,
            detail=detail,
        )
        (warnings if severity == WARNING else failures).append(failure)
    if vacuous:
        logger.error(
            "GX suite %s: %d expectation(s) returned no observed value (%s): the check passed "
            "vacuously, validation treated as FAILED",
            suite,
            len(vacuous),
            ", ".join(vacuous[:5]),
        )
    return ValidationReport(
        suite=suite,
        success=not failures,
        evaluated=len(suite_result.results),
        failures=failures,
        warnings=warnings,
        data_docs=data_docs,
        row_count=row_count,
        source=source,
        checks=checks,
    )


def _check(name: str, column: str | None, severity: str, success: bool, observed: object) -> dict[str, Any]:
    return {
        "expectation": name,
        "column": column,
        "severity": severity,
        "success": success,
        "observed": observed,
    }


def _short(value: object, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value_text(value: object) -> str:
    # Timestamps read better as ISO text than as datetime.datetime(2031, 1, 1, 0, 0).
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return repr(value)


def _failure_line(f: ExpectationFailure) -> str:
    observed = f.observed
    if isinstance(observed, Mapping) and "unexpected_count" in observed:
        bad, total = observed.get("unexpected_count"), observed.get("element_count")
        pct_text = (
            f" ({100.0 * bad / total:.2f}%)"
            if isinstance(bad, int) and isinstance(total, int) and total
            else ""
        )
        count_text = (
            f"{bad:,} of {total:,}"
            if isinstance(bad, int) and isinstance(total, int)
            else f"{bad} of {total}"
        )
        observed_text = f"{count_text} rows unexpected{pct_text}"
    elif f.expectation.startswith("unexpected_rows_expectation") and isinstance(observed, int):
        observed_text = f"{observed} unexpected row(s)"
    else:
        observed_text = _short(observed, 300)
    line = f"{f.column or '<table>'}: {f.expectation} observed {observed_text}"
    if f.detail:
        line += f"; {f.detail}"
    if f.unexpected_sample:
        shown = ", ".join(_short(_value_text(v), 80) for v in f.unexpected_sample[:5])
        line += f"; unexpected e.g. [{shown}]"
    return line


# --------------------------------------------------------------------------------------------
# Internals: row-count state of the previous successful run
# --------------------------------------------------------------------------------------------


def _state_path(settings: Settings) -> Path:
    return _runtime_dir(settings) / "state" / "row_counts.json"


# state[suite]["runs"][key] = {"row_count", "validated_at", "source"}: the last successful run
# per key. The key is the as_of date (ISO) of a mart and "undated" for a raw table, whose
# rows do not depend on the run's date (the landing folder is the whole export).
_UNDATED = "undated"
_MAX_RUNS_PER_SUITE = 1000  # about three years of nightly dates; oldest dropped first


def _state_key(dated: bool, as_of: date | None) -> str:
    return as_of.isoformat() if dated and as_of is not None else _UNDATED


def _baseline_row_count(suite_state: Any, key: str) -> int | None:
    """Row count of the run to compare with: the same key, else the latest earlier as_of.

    A backfill of an older date therefore compares with a run of an even older (or the same)
    date, never with today's larger mart.
    """
    runs = suite_state.get("runs") if isinstance(suite_state, dict) else None
    if not isinstance(runs, dict):
        return None  # first run, or the per-suite state of older versions: start afresh
    if key == _UNDATED:
        candidates = [k for k in runs if k == _UNDATED]
    else:
        candidates = [k for k in runs if k != _UNDATED and k <= key]
    if not candidates:
        return None
    run = runs[max(candidates)]
    count = run.get("row_count") if isinstance(run, dict) else None
    return count if isinstance(count, int) else None


def _read_state(settings: Settings) -> dict[str, Any]:
    path = _state_path(settings)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        logger.warning("ignoring unreadable GX state file %s", path)
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(settings: Settings, suite: str, key: str, row_count: int, source: str) -> None:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The scoring and retrain DAGs may finish a suite at the same moment: without the lock
    # one read-modify-write would drop the other's entry.
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update_state(path, settings, suite, key, row_count, source)


def _update_state(path: Path, settings: Settings, suite: str, key: str, row_count: int, source: str) -> None:
    state = _read_state(settings)
    suite_state = state.get(suite)
    runs = suite_state.get("runs") if isinstance(suite_state, dict) else None
    runs = dict(runs) if isinstance(runs, dict) else {}
    runs[key] = {
        "row_count": row_count,
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
    }
    for stale in sorted(k for k in runs if k != _UNDATED)[:-_MAX_RUNS_PER_SUITE]:
        del runs[stale]
    state[suite] = {"runs": runs}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _min_row_count(previous: Any, max_drop_share: float) -> int:
    if not isinstance(previous, int) or previous <= 0:
        return 1
    share = min(max(max_drop_share, 0.0), 1.0)
    return max(1, math.ceil(previous * (1.0 - share)))


# --------------------------------------------------------------------------------------------
# Writing the committed File Data Context from the Python definitions
# --------------------------------------------------------------------------------------------

_ID_NAMESPACE = uuid.UUID("5b1d7a52-3c2f-4a8e-9a63-6f0c8a1d2e47")


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


_GREAT_EXPECTATIONS_YML = """\
# Great Expectations 1.x File Data Context of mlsys (the data gate, DESIGN section 1).
# Generated by `python -m mlsys.validation write-context` from mlsys/validation.py.
#
# Committed: this file, config_variables.yml, expectations/ (one suite per data set),
# validation_definitions/ and checkpoints/ (one per suite).
# Not committed: everything GX writes while running (validation results, Data Docs). The gate
# sends it to ${{MLSYS_GX_RUNTIME_DIR}} = <MLSYS_DATA_DIR>/gx; without the gate the default in
# config_variables.yml keeps it in the git-ignored uncommitted/ folder.
config_version: 4

config_variables_file_path: config_variables.yml
plugins_directory:
analytics_enabled: false
progress_bars:
  globally: false

stores:
  expectations_store:
    class_name: ExpectationsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: expectations/
  validation_results_store:
    class_name: ValidationResultsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: ${{{runtime}}}/validations/
  checkpoint_store:
    class_name: CheckpointStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: checkpoints/
  validation_definition_store:
    class_name: ValidationDefinitionStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: validation_definitions/

expectations_store_name: expectations_store
validation_results_store_name: validation_results_store
checkpoint_store_name: checkpoint_store

data_docs_sites:
  {site}:
    class_name: SiteBuilder
    show_how_to_buttons: false
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${{{runtime}}}/data_docs/{site}/
    site_index_builder:
      class_name: DefaultSiteIndexBuilder

# One in-memory DuckDB database, read through duckdb-engine. mlsys.validation creates each
# table below as a VIEW over read_parquet([...]) on GX's single persisted connection right
# before the suite runs, so no DuckDB file (and never the warehouse) is opened or locked.
fluent_datasources:
  {datasource}:
    type: sql
    id: {datasource_id}
    connection_string: 'duckdb:///:memory:'
    create_temp_table: false
    assets:
{assets}"""

_ASSET_YML = """\
      {name}:
        type: table
        id: {asset_id}
        table_name: {name}
        batch_metadata: {{}}
        batch_definitions:
          {batch}:
            id: {batch_id}
            partitioner:
"""

_CONFIG_VARIABLES_YML = """\
# Committed default for the one substitution variable of great_expectations.yml (no secrets
# here). mlsys.validation overrides it with <MLSYS_DATA_DIR>/gx; so does the environment
# variable of the same name.
MLSYS_GX_RUNTIME_DIR: uncommitted
"""

_GITIGNORE = """\
# Runtime state of GX (validation results, Data Docs, local config) is never committed.
uncommitted/
"""


def _suite_json(
    suite: str, expectations: Sequence[Mapping[str, Any]], notes: str = _SUITE_NOTES
) -> dict[str, Any]:
    """The suite as GX serialises it, with stable ids (so regenerating gives no diff)."""
    _import_gx()
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    seen: dict[str, int] = {}
    ids: list[str] = []
    domain_objects = []
    for exp in expectations:
        signature = json.dumps([exp["type"], exp["kwargs"], exp["meta"].get("check")], sort_keys=True)
        seen[signature] = seen.get(signature, 0) + 1
        ids.append(_stable_id("expectation", suite, signature, str(seen[signature])))
        configuration = ExpectationConfiguration(
            type=exp["type"],
            kwargs=dict(exp["kwargs"]),
            meta=dict(exp["meta"]),
            description=exp.get("description"),
            severity=(
                FailureSeverity.WARNING if exp["meta"]["severity"] == WARNING else FailureSeverity.CRITICAL
            ),
        )
        domain_objects.append(configuration.to_domain_obj())  # validates the kwargs
    gx_suite = ExpectationSuite(
        name=suite,
        expectations=domain_objects,
        id=_stable_id("suite", suite),
        meta={
            "mlsys": {
                "blocking": "meta.severity == 'error'",
                "warning_only": sorted({_name(e) for e in expectations if e["meta"]["severity"] == WARNING}),
                **_SUITE_META.get(suite, {}),
            }
        },
        notes=notes,
    )
    for expectation, expectation_id in zip(gx_suite.expectations, ids, strict=True):
        expectation.id = expectation_id
    data: dict[str, Any] = gx_suite.to_json_dict()
    data["meta"].pop("great_expectations_version", None)
    return data


def _name(exp: Mapping[str, Any]) -> str:
    kwargs = exp["kwargs"]
    column = kwargs.get("column") or exp["meta"].get("column")
    label = exp["type"] + (f":{exp['meta']['check']}" if exp["meta"].get("check") else "")
    return f"{label}({column})" if column else label


def render_context_files(spec: GateSpec | None = None) -> dict[str, str]:
    """Every committed file of the GX context, as {relative path: text}: the built-in suites,
    or those of a gate spec (``mlsys_gate.yml``, which stays the hand-written source)."""
    suites = list(spec.suites) if spec is not None else list(SUITES)
    assets = "".join(
        _ASSET_YML.format(
            name=suite,
            asset_id=_stable_id("asset", suite),
            batch=BATCH_DEFINITION_NAME,
            batch_id=_stable_id("batch_definition", suite),
        )
        for suite in suites
    )
    files = {
        "great_expectations.yml": _GREAT_EXPECTATIONS_YML.format(
            runtime=RUNTIME_DIR_VARIABLE,
            site=DATA_DOCS_SITE,
            datasource=DATASOURCE_NAME,
            datasource_id=_stable_id("datasource", DATASOURCE_NAME),
            assets=assets,
        ),
        "config_variables.yml": _CONFIG_VARIABLES_YML,
        ".gitignore": _GITIGNORE,
    }
    for suite, expectations in suite_definitions(spec).items():
        suite_ref = {"id": _stable_id("suite", suite), "name": suite}
        vd_id = _stable_id("validation_definition", suite)
        files[f"expectations/{suite}.json"] = _dump(
            _suite_json(suite, expectations, _SUITE_NOTES if spec is None else _SPEC_SUITE_NOTES)
        )
        files[f"validation_definitions/{suite}.json"] = _dump(
            {
                "data": {
                    "asset": {"id": _stable_id("asset", suite), "name": suite},
                    "batch_definition": {
                        "id": _stable_id("batch_definition", suite),
                        "name": BATCH_DEFINITION_NAME,
                    },
                    "datasource": {
                        "id": _stable_id("datasource", DATASOURCE_NAME),
                        "name": DATASOURCE_NAME,
                    },
                },
                "id": vd_id,
                "name": suite,
                "suite": suite_ref,
            }
        )
        files[f"checkpoints/{suite}.json"] = _dump(
            {
                "actions": [
                    {
                        "name": "update_data_docs",
                        "site_names": [DATA_DOCS_SITE],
                        "type": "update_data_docs",
                    }
                ],
                "id": _stable_id("checkpoint", suite),
                "name": suite,
                "result_format": {"result_format": "SUMMARY", "partial_unexpected_count": 20},
                "validation_definitions": [{"id": vd_id, "name": suite}],
            }
        )
    return files


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_context(root: Path | None = None) -> list[Path]:
    """(Re)write the committed files of the GX context; returns the files that changed."""
    root = Path(root or Settings.from_env().gx_context_dir)
    spec = load_gate_spec(root)
    changed = []
    for relative, text in render_context_files(spec if spec.expectations is not None else None).items():
        path = root / relative
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed.append(path)
    return changed


# --------------------------------------------------------------------------------------------
# Benchmark and command line (python -m mlsys.validation ...)
# --------------------------------------------------------------------------------------------


def synthetic_features_sql(rows: int, as_of: date, *, label: bool = False) -> str:
    """A SELECT producing ``rows`` valid lead_features (or training_snapshots) rows."""
    sources, levels = _sql_list(SOURCES), _sql_list(JOB_LEVELS)
    cols = [
        "i::BIGINT AS lead_id",
        f"DATE '{as_of.isoformat()}' AS as_of",
        f"{sources}[1 + i % 6] AS source",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE 'industry_' || (i % 12)::VARCHAR END AS industry",
        "CASE WHEN i % 7 = 0 THEN NULL ELSE ['US', 'DE', 'GB', 'FR'][1 + i % 4] END AS country",
        f"CASE WHEN i % 9 = 0 THEN NULL ELSE {levels}[1 + i % 5] END AS job_level",
        "CASE WHEN i % 11 = 0 THEN NULL ELSE (1 + i % 5000)::BIGINT END AS company_size",
        "(i % 720)::INTEGER AS lead_age_days",
        "CASE WHEN i % 4 = 0 THEN NULL ELSE (9 + i % 9)::DOUBLE END AS days_since_first_activity",
        "CASE WHEN i % 4 = 0 THEN NULL ELSE (i % 10)::DOUBLE END AS days_since_last_activity",
        "(i % 50 + 30)::BIGINT AS n_activities_total",
        "(i % 5)::BIGINT AS n_activities_7d",
        "(i % 5 + 10)::BIGINT AS n_activities_30d",
        "(i % 5 + 20)::BIGINT AS n_activities_90d",
    ]
    cols += [f"(i % 3)::BIGINT AS {c}" for c in ACTIVITY_TYPE_COUNTS]
    cols.append("((i % 7) - 3)::BIGINT AS activity_trend_7d")
    if label:
        cols.append("(CASE WHEN i % 20 = 0 THEN 1 ELSE 0 END)::INTEGER AS label")
    return "SELECT\n  " + ",\n  ".join(cols) + f"\nFROM range({int(rows)}) AS t(i)"


def _benchmark(rows: int, workdir: Path) -> dict[str, Any]:
    import resource

    import duckdb

    as_of = date(2026, 6, 1)
    settings = dataclasses.replace(Settings.from_env(), data_dir=workdir)
    path = settings.lead_features_path(as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        con = duckdb.connect()
        con.execute(f"COPY ({synthetic_features_sql(rows, as_of)}) TO {_sql_str(str(path))} (FORMAT parquet)")
        con.close()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    _get_context(settings)  # GX import and context: a fixed cost of about 5 s, 300 MB
    context_seconds = time.monotonic() - started
    report = validate_lead_features(as_of, settings)
    seconds = time.monotonic() - started
    return {
        "rows": report.row_count,
        "success": report.success,
        "evaluated": report.evaluated,
        "seconds_total": round(seconds, 2),
        "seconds_gx_import_and_context": round(context_seconds, 2),
        "seconds_validation": round(seconds - context_seconds, 2),
        "peak_rss_mb_before": round(rss_before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "report": report.summary(),
    }


def _benchmark_raw(data_dir: Path, as_of: date) -> dict[str, Any]:
    """The raw suites over an existing landing folder (e.g. from ``mlsys generate``)."""
    import resource

    settings = dataclasses.replace(Settings.from_env(), data_dir=data_dir)
    started = time.monotonic()
    _get_context(settings)
    context_seconds = time.monotonic() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    suites: dict[str, Any] = {}
    reports = []
    for suite in RAW_TRAINING_SUITES:
        suite_started = time.monotonic()
        report = validate_raw(suite, settings, as_of=as_of)
        reports.append(report)
        suites[suite] = {
            "rows": report.row_count,
            "success": report.success,
            "seconds": round(time.monotonic() - suite_started, 2),
            "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    return {
        "suites": suites,
        "success": all(r.success for r in reports),
        "seconds_gx_import_and_context": round(context_seconds, 2),
        "seconds_total": round(time.monotonic() - started, 2),
        "peak_rss_mb_before": round(rss_before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "report": "\n".join(r.summary() for r in reports),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsys.validation", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write-context", help="regenerate the committed GX context files")
    write.add_argument("--root", type=Path, default=None)
    bench = sub.add_parser("bench", help="validate N synthetic lead_features rows; print time and peak RSS")
    bench.add_argument("--rows", type=int, default=5_000_000)
    bench.add_argument("--workdir", type=Path, required=True)
    bench_raw = sub.add_parser(
        "bench-raw", help="run the raw suites over DATA_DIR/raw (e.g. from `mlsys generate`); time, peak RSS"
    )
    bench_raw.add_argument("--data-dir", type=Path, required=True)
    bench_raw.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 6, 1))
    run = sub.add_parser("validate", help="validate one Parquet file/folder/glob against a suite")
    run.add_argument("suite", choices=SUITES)
    run.add_argument("path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "write-context":
        for path in write_context(args.root):
            print(f"wrote {path}")
        return 0
    if args.command in ("bench", "bench-raw"):
        if args.command == "bench":
            result = _benchmark(args.rows, args.workdir.resolve())
        else:
            result = _benchmark_raw(args.data_dir.resolve(), args.as_of)
        print(result.pop("report"))
        print(json.dumps(result, indent=2))
        return 0 if result["success"] else 1
    report = validate_parquet(args.suite, args.path)
    print(report.summary())
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())
