"""The raw gate, incremental: the files landed since the last pass are validated in full by
the suite; the whole table only with checks that read Parquet footers, and a key column.

A production CRM lands one day of activities a night and the history only grows; running the
suite on every row every night makes the gate's cost follow the history (30-36 s at 300M
activities). Row-wise expectations (types, nulls, timestamps, the vocabulary) hold for the
table when they hold for each file, and each file's verdict does not change until the file
does. So the gate keeps, in ``<gx runtime>/state/raw_files_<suite>.json``, every file that
passed (name, size, modification time), and each run:

1. checks the whole table cheaply: every file readable, with the contract's columns and
   types (footers only, `preflight`), and the total row count, from the footers, not below
   the last pass's less MLSYS_ROW_DROP_MAX_SHARE (a lost or truncated export);
2. runs the suite, every expectation, on the files that are new or changed since their pass
   (their rows only; the suite's row-count floor is then "not empty"), named in the report;
3. for a column the suite holds unique (`lead_id` of the leads and of the conversions), reads
   that one column of the earlier files and fails when a new file repeats one of their values
   (within the new files the suite checked it already).
A bad new file fails the gate with the same report as before, and is not recorded: the next
run checks it again. The first run, and any run without a record, validates everything.
The suites this applies to: `INCREMENTAL_SUITES`, the built-in raw suites (at 10M leads the
leads suite alone took longer than a night's new activities). A context's own suites
(`mlsys_gate.yml`) under other names are validated whole: their expectations may compare rows.
"""

from __future__ import annotations

import glob as globlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mlsys.settings import Settings
from mlsys.validation.engine import spill_dir
from mlsys.validation.preflight import failed_report, preflight
from mlsys.validation.report import ExpectationFailure, ValidationReport, with_failure_first
from mlsys.validation.state import baseline_row_count, read_state, row_count_floor, state_key, write_state
from mlsys.validation.suites import ERROR, RAW_ACTIVITIES, RAW_CONVERSIONS, RAW_LEADS, sql_list

logger = logging.getLogger(__name__)

INCREMENTAL_SUITES = frozenset({RAW_LEADS, RAW_ACTIVITIES, RAW_CONVERSIONS})
UNIQUE = "expect_column_values_to_be_unique"


def unique_columns(expectations: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns a suite's blocking expectations hold unique."""
    return tuple(
        e["kwargs"]["column"]
        for e in expectations
        if e["type"] == UNIQUE and e.get("meta", {}).get("severity", ERROR) == ERROR
    )


def _record_path(settings: Settings, suite: str) -> Path:
    return settings.gx_runtime_dir / "state" / f"raw_files_{suite}.json"


def _identity(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def read_passed(settings: Settings, suite: str) -> dict[str, Any]:
    try:
        data = json.loads(_record_path(settings, suite).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_passed(settings: Settings, suite: str, files: dict[str, list[int] | None]) -> None:
    path = _record_path(settings, suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _footer_rows(files: list[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def validate_incrementally(
    suite: str,
    pattern: str,
    columns: dict[str, tuple[str, ...]],
    settings: Settings,
    *,
    run_time: datetime,
    as_of: date | None,
    validate_parquet: Callable[..., ValidationReport],
    columns_held_unique: Callable[[], tuple[str, ...]] = tuple,
    required_by: str = "",
) -> ValidationReport | None:
    """The report of an incremental run, or None when the whole table must be validated
    (no record of a pass yet, or not Parquet): the caller then runs the suite on everything
    and calls `record_pass`. ``validate_parquet``: the package's, which runs the suite;
    ``columns_held_unique``: the columns whose values must not repeat across files (asked
    only when there are new files: it reads the suite's definitions); ``required_by``:
    whose contract the columns are, for the missing-column error (as the suite's)."""
    files = sorted(globlib.glob(pattern))
    passed = read_passed(settings, suite)
    if not passed or not files or not all(f.endswith(".parquet") for f in files):
        return None
    whole = preflight(suite, pattern, columns, required_by=required_by)
    if whole.report is not None:
        return whole.report
    if whole.type_failure is not None:
        # A mistyped column anywhere in the table stops the night as the full suite would.
        return ValidationReport(suite, False, 0, [whole.type_failure], [], None, None, source=pattern)
    total = _footer_rows(files)
    if total == 0:
        # The suite's own first check, with its name: an export that landed empty.
        return failed_report(
            suite, pattern, "expect_table_row_count_to_be_between:non_empty", "0 rows in all landed files"
        )
    previous = baseline_row_count(read_state(settings).get(suite), state_key(False, None))
    floor = row_count_floor(previous, settings.row_drop_max_share)
    if total < floor:
        return failed_report(
            suite,
            pattern,
            "expect_table_row_count_to_be_between:row_drop",
            f"{total:,} rows in all landed files, below {floor:,} (the last pass had "
            f"{previous or 0:,}, less MLSYS_ROW_DROP_MAX_SHARE): a lost or truncated export?",
            row_count=total,
        )
    new = [f for f in files if passed.get(f) != _identity(f)]
    if not new:
        if set(passed) != set(files):
            # Files were removed (the footers' count allowed it): they are not passed any more,
            # so one that lands again is validated again.
            record_pass(suite, files, total, settings, pattern)
        logger.info(
            "GX suite %s: no new landing file since the last pass; %s rows in all", suite, f"{total:,}"
        )
        return ValidationReport(suite, True, 0, [], [], None, total, source=f"{pattern} (no new file)")
    # The suite reads a glob: the new files are linked into a folder of their own (same names,
    # so a failure names the landing file).
    folder = settings.gx_runtime_dir / "incremental" / suite
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in new:
        (folder / Path(f).name).symlink_to(Path(f).resolve())
    logger.info("GX suite %s: validating the %d file(s) landed since the last pass", suite, len(new))
    report = validate_parquet(
        suite, folder / "*.parquet", settings, run_time=run_time, as_of=as_of, min_row_count=1, record=False
    )
    report.source = ", ".join(new)
    earlier = [f for f in files if f not in new]
    for column in columns_held_unique() if report.success and earlier else ():
        repeated = repeated_values(column, new, earlier, settings)
        if repeated:
            count, sample = repeated
            failure = ExpectationFailure(
                expectation=UNIQUE,
                column=column,
                observed=f"{count:,} {column} value(s) of the new file(s) already in earlier landing files",
                unexpected_sample=sample,
                severity=ERROR,
                detail="each value once across every landing file",
            )
            report = with_failure_first(report, failure)
    if report.success:
        record_pass(suite, files, total, settings, pattern)
    return report


def repeated_values(
    column: str, new: list[str], earlier: list[str], settings: Settings
) -> tuple[int, list[Any]] | None:
    """How many distinct values of ``column`` in the ``new`` files are also in the ``earlier``
    ones, and a few of them; None when none are. Reads that one column: the new files' distinct
    values are the join's build side, the earlier files stream past them."""
    import duckdb

    quoted = '"' + column.replace('"', '""') + '"'
    with duckdb.connect(config={"memory_limit": "256MB", "temp_directory": str(spill_dir(settings))}) as con:
        count, sample = con.sql(
            f"""
            with new as (
                select distinct {quoted} as v from read_parquet({sql_list(new)}) where {quoted} is not null
            ),
            repeated as (
                select distinct new.v from read_parquet({sql_list(earlier)}) as earlier
                join new on earlier.{quoted} = new.v
            )
            select count(*), list(v order by v)[1:5] from repeated
            """  # noqa: S608 - paths and a contract column, quoted
        ).fetchall()[0]
    return (int(count), list(sample)) if count else None


def record_pass(suite: str, files: list[str], total: int, settings: Settings, pattern: str) -> None:
    """Every file of a passing run, and the table's row count (the next run's drop baseline)."""
    _write_passed(settings, suite, {f: _identity(f) for f in files})
    write_state(settings, suite, state_key(False, None), total, pattern)
