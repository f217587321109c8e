"""What the gate tests share: rewriting a Parquet file as a bug or a bad export would, and the
shape of the report that stops a run (docs/validation.md)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from mlsys.validation import DataValidationError


def rewrite(path: Path, select: str) -> None:
    """Replace a Parquet file by ``select`` over it (``{src}`` is the file itself)."""
    tmp = path.with_name(f".{path.name}.tmp")
    query = select.format(src=f"read_parquet('{path}')")
    duckdb.sql(f"COPY ({query}) TO '{tmp}' (FORMAT parquet)")
    os.replace(tmp, path)


def assert_stopped_at_the_gate(
    exc: DataValidationError, suite: str, expectation: str, column: str | None, shown: object
) -> None:
    failures = [(r.suite, f.expectation, f.column) for r in exc.reports for f in r.failures]
    assert (suite, expectation, column) in failures, str(exc)
    message = str(exc)
    assert message.splitlines()[0].startswith(f"GX suite {suite!r}: FAILED"), message
    line = next(line for line in message.splitlines() if f"{column or '<table>'}: {expectation}" in line)
    assert str(shown) in line, line
    assert "Traceback" not in message and len(message.splitlines()) <= 8, message
    assert "Data Docs: " in message
