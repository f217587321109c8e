"""Cheap checks before GX runs, in DuckDB: the input files exist, are readable, and carry the
contract's columns with allowed types. A failure here is a report that names the file or column."""

from __future__ import annotations

import glob as globlib
from collections.abc import Mapping, Sequence
from typing import Any

from mlsys.validation.report import ExpectationFailure, ValidationReport
from mlsys.validation.suites import ERROR

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_csv(files: Sequence[str]) -> bool:
    return bool(files) and all(f.lower().endswith(CSV_SUFFIXES) for f in files)


def read_input_sql(files: Sequence[str]) -> str:
    """The SQL that reads the input files: Parquet, or CSV exports (DuckDB sniffs the
    delimiter and the column types, so a column the contract types as BIGINT fails the type
    check when a row of the export holds text)."""
    listing = ", ".join(sql_str(f) for f in files)
    if _is_csv(files):
        return f"read_csv([{listing}], union_by_name = true, header = true, hive_partitioning = false)"
    return f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"


def failed_report(
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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def preflight(suite: str, pattern: str, expected: Mapping[str, Sequence[str]]) -> ValidationReport | None:
    """Cheap checks before GX: files exist, are Parquet, have the contract's columns and types.

    Returns a failed report, or None when GX should run.
    """
    import duckdb

    files = sorted(globlib.glob(pattern))
    if not files:
        return failed_report(suite, pattern, "input_files_exist", f"no Parquet file matches {pattern}")
    con = duckdb.connect(":memory:")
    try:
        bad: list[str] = []
        for f in [] if _is_csv(files) else files:
            try:
                con.execute(f"SELECT count(*) FROM parquet_metadata({sql_str(f)})").fetchall()  # noqa: S608 - _sql_str quotes the file name
            except duckdb.Error as exc:
                bad.append(f"{f}: {first_line(exc)}")
        if bad:
            return failed_report(
                suite,
                pattern,
                "input_files_are_parquet",
                f"{len(bad)} unreadable Parquet file(s), first: {bad[0]}",
                sample=bad[:5],
            )
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {read_input_sql(files)}").fetchall()  # noqa: S608 - _read_parquet_sql quotes the paths
            counted = con.execute(f"SELECT count(*) FROM {read_input_sql(files)}").fetchone()  # noqa: S608 - _read_parquet_sql quotes the paths
            row_count = int(counted[0]) if counted else 0
        except duckdb.Error as exc:
            return failed_report(
                suite,
                pattern,
                "input_files_are_parquet",
                f"cannot read {pattern}: {first_line(exc)}",
            )
    finally:
        con.close()
    actual = {str(row[0]): str(row[1]) for row in described}
    missing = [c for c in expected if c not in actual]
    if missing:
        return failed_report(
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
        return failed_report(
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
