"""Cheap checks before GX runs, in DuckDB: the input files exist, are readable, and carry the
contract's columns with allowed types. A failure here is a report that names the file or column."""

from __future__ import annotations

import glob as globlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsys.validation.report import ExpectationFailure, ValidationReport
from mlsys.validation.suites import ERROR

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_csv(files: Sequence[str]) -> bool:
    return bool(files) and all(f.lower().endswith(CSV_SUFFIXES) for f in files)


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def read_input_sql(files: Sequence[str], casts: Mapping[str, str] | None = None) -> str:
    """The SQL that reads the input files: Parquet, or CSV exports (DuckDB sniffs the
    delimiter and the column types, so a column the contract types as BIGINT fails the type
    check when a row of the export holds text). ``casts`` (column -> DuckDB type) reads those
    columns with TRY_CAST, a value that does not cast as null: how the gate's other checks
    still run on the values of a mistyped column that can be read."""
    listing = ", ".join(sql_str(f) for f in files)
    if _is_csv(files):
        source = f"read_csv([{listing}], union_by_name = true, header = true, hive_partitioning = false)"
    else:
        source = f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"
    if not casts:
        return source
    replaced = ", ".join(f"TRY_CAST({quoted(c)} AS {t}) AS {quoted(c)}" for c, t in casts.items())
    return f"(SELECT * REPLACE ({replaced}) FROM {source})"  # noqa: S608 - quoted names, our types


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


@dataclass(frozen=True)
class Preflight:
    """What the checks before GX found.

    ``report``: a failure that stops the suite before GX (no file, an unreadable file, a
    missing column). ``mistyped``: columns read with a type the contract does not allow, each
    with the type GX reads it as instead (TRY_CAST, so the suite's other checks still run on
    the values that can be read), and ``type_failure`` the error that names them, with a few
    offending values and where they are in the files.
    """

    report: ValidationReport | None = None
    mistyped: Mapping[str, str] = field(default_factory=dict)
    type_failure: ExpectationFailure | None = None


# DuckDB's message for a value the CSV reader cannot convert: Could not convert string "x" to 'BIGINT'
_NOT_CONVERTED = re.compile(r'Could not convert string "(.*)" to ')
OFFENDING_SHOWN = 5


def _target_type(types: Sequence[str]) -> str:
    """The type a mistyped column is read as: BIGINT when allowed, else the last listed
    (lists run from the narrowest to the widest type)."""
    return "BIGINT" if "BIGINT" in types else types[-1]


def offending_values(con: Any, files: Sequence[str], column: str, target: str) -> tuple[int, list[str]]:
    """How many values of ``column`` do not read as ``target``, and the first few as text
    with where they are: the line of a CSV file (as an editor numbers it, the header is line
    1; from DuckDB's rejects table) or the row of a Parquet file (1-based)."""
    import duckdb

    count = 0
    shown: list[str] = []
    for f in files:
        name = Path(f).name
        if _is_csv([f]):
            types = "{" + sql_str(column) + ": " + sql_str(target) + "}"
            # A connection per file: DuckDB's rejects table collects every scan of a connection.
            with duckdb.connect(":memory:") as own:
                own.execute(
                    f"SELECT count({quoted(column)}) FROM read_csv({sql_str(f)}, header = true, "  # noqa: S608 - quoted
                    f"hive_partitioning = false, types = {types}, store_rejects = true)"
                ).fetchall()
                rejected = own.execute(
                    "SELECT line, error_message, csv_line FROM reject_errors "
                    "WHERE error_type = 'CAST' AND column_name = ? ORDER BY line",
                    [column],
                ).fetchall()
            count += len(rejected)
            for line, message, csv_line in rejected[: OFFENDING_SHOWN - len(shown)]:
                found = _NOT_CONVERTED.search(str(message))
                value = repr(found.group(1)) if found else f"in {csv_line!r}"
                shown.append(f"{value} at line {line} of {name}")
        else:
            bad = (
                f"FROM read_parquet({sql_str(f)}, file_row_number = true) "
                f"WHERE {quoted(column)} IS NOT NULL AND TRY_CAST({quoted(column)} AS {target}) IS NULL"
            )
            counted = con.execute(f"SELECT count(*) {bad}").fetchone()
            count += int(counted[0]) if counted else 0
            rows = con.execute(
                f"SELECT file_row_number + 1, CAST({quoted(column)} AS VARCHAR) {bad} "
                f"ORDER BY file_row_number LIMIT {OFFENDING_SHOWN - len(shown)}"
            ).fetchall()
            shown.extend(f"{value!r} at row {row} of {name}" for row, value in rows)
    return count, shown


def _type_failure(
    con: Any,
    files: Sequence[str],
    pattern: str,
    actual: Mapping[str, str],
    mistyped: Mapping[str, str],
    expected: Mapping[str, Sequence[str]],
) -> ExpectationFailure:
    import duckdb

    parts = []
    for column, target in mistyped.items():
        text = f"{column}: {actual[column]} (expected {' or '.join(expected[column])})"
        try:
            count, shown = offending_values(con, files, column, target)
        except duckdb.Error:
            count, shown = 0, []
        if shown:
            text += f", {count:,} value(s) that do not read as {target}, e.g. {', '.join(shown)}"
        parts.append(text)
    return ExpectationFailure(
        expectation="unexpected_rows_expectation:column_types",
        column=", ".join(mistyped),
        observed=f"wrong type for {'; '.join(parts)} in {pattern}",
        unexpected_sample=[],
        severity=ERROR,
        detail=f"the other checks read {'these columns' if len(mistyped) > 1 else 'it'} "
        f"with TRY_CAST (a value that does not read as null)",
    )


def preflight(
    suite: str, pattern: str, expected: Mapping[str, Sequence[str]], *, required_by: str = ""
) -> Preflight:
    """Cheap checks before GX: files exist, are readable, have the contract's columns and types.

    ``required_by`` says whose contract the columns are (``the raw contract of source x``),
    for the missing-column error.
    """
    import duckdb

    files = sorted(globlib.glob(pattern))
    if not files:
        return Preflight(
            failed_report(suite, pattern, "input_files_exist", f"no Parquet file matches {pattern}")
        )
    con = duckdb.connect(":memory:")
    try:
        bad: list[str] = []
        for f in [] if _is_csv(files) else files:
            try:
                con.execute(f"SELECT count(*) FROM parquet_metadata({sql_str(f)})").fetchall()  # noqa: S608 - _sql_str quotes the file name
            except duckdb.Error as exc:
                bad.append(f"{f}: {first_line(exc)}")
        if bad:
            return Preflight(
                failed_report(
                    suite,
                    pattern,
                    "input_files_are_parquet",
                    f"{len(bad)} unreadable Parquet file(s), first: {bad[0]}",
                    sample=bad[:5],
                )
            )
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {read_input_sql(files)}").fetchall()  # noqa: S608 - read_input_sql quotes the paths
            counted = con.execute(f"SELECT count(*) FROM {read_input_sql(files)}").fetchone()  # noqa: S608 - read_input_sql quotes the paths
            row_count = int(counted[0]) if counted else 0
        except duckdb.Error as exc:
            return Preflight(
                failed_report(
                    suite,
                    pattern,
                    "input_files_are_parquet",
                    f"cannot read {pattern}: {first_line(exc)}",
                )
            )
        actual = {str(row[0]): str(row[1]) for row in described}
        missing = [c for c in expected if c not in actual]
        if missing:
            whose = f", required by {required_by}" if required_by else ""
            plural = "s" if len(missing) > 1 else ""
            return Preflight(
                failed_report(
                    suite,
                    pattern,
                    "expect_table_columns_to_match_set:required_columns",
                    f"missing column{plural} {', '.join(missing)}{whose} (in {pattern})",
                    column=", ".join(missing),
                    row_count=row_count,
                )
            )
        mistyped = {c: _target_type(types) for c, types in expected.items() if actual[c] not in types}
        if not mistyped:
            return Preflight()
        return Preflight(
            mistyped=mistyped,
            type_failure=_type_failure(con, files, pattern, actual, mistyped, expected),
        )
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# Internals: GX
# --------------------------------------------------------------------------------------------
