"""What the tests of the incremental staging models share: landing a raw file, and reading a
model's load bookkeeping (`<model>__loads`, sql/macros/landing_files.sql)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from mlsys.settings import Settings


def land(settings: Settings, table: str, name: str, query: str) -> Path:
    """``query``'s rows as the landing file ``raw/<table>/<name>``."""
    path = settings.raw_dir / table / name
    duckdb.sql(f"copy ({query}) to '{path}' (format parquet)")
    return path


def loads(settings: Settings, model: str) -> list[tuple]:
    """The model's loads, oldest first: (batch, files_read, rebuilt_windows, full_refresh)."""
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.sql(
            f"select batch, files_read, rebuilt_windows, full_refresh from {model}__loads order by batch"
        ).fetchall()
