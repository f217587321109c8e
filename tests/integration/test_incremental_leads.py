"""The incremental stg_leads equals a full rebuild from the same landing files: one row per
lead_id, the earliest record winning (ties broken by the other columns), whatever order the
files landed in, and a build with no new lead file reads none."""

from __future__ import annotations

import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from mlsys import features
from mlsys.settings import Settings
from tests.engines import differing_rows
from tests.landings import land, loads

AS_OF = date(2026, 6, 1)
LEAD_COLUMNS = "lead_id, created_at, source, industry, country, company_size, job_level"
# The full rebuild's rule, straight from the files (macro lead_precedence).
PRECEDENCE = ", ".join(f"{c} nulls last" for c in LEAD_COLUMNS.split(", ")[1:])


def _export_leads(settings: Settings, out: Path) -> Path:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.sql(f"copy (select {LEAD_COLUMNS} from stg_leads) to '{out}' (format parquet)")
    return out


def _expected_leads(settings: Settings, out: Path) -> Path:
    """The typed leads of every current landing file, the first of each lead_id by PRECEDENCE."""
    duckdb.sql(
        f"""copy (
        select {LEAD_COLUMNS} from (
            select
                cast(lead_id as bigint) as lead_id,
                cast(created_at as timestamp) as created_at,
                lower(trim(cast(source as varchar))) as source,
                nullif(trim(cast(industry as varchar)), '') as industry,
                upper(nullif(trim(cast(country as varchar)), '')) as country,
                cast(company_size as bigint) as company_size,
                lower(nullif(trim(cast(job_level as varchar)), '')) as job_level
            from read_parquet('{settings.raw_dir}/leads/*.parquet', union_by_name = true)
            where lead_id is not null
        )
        qualify row_number() over (partition by lead_id order by {PRECEDENCE}) = 1
        ) to '{out}' (format parquet)"""
    )
    return out


def _differing_from_a_rebuild(settings: Settings, tmp_path: Path, night: str) -> int:
    exported = _export_leads(settings, tmp_path / f"stg_leads-{night}.parquet")
    rows, differing = differing_rows(
        exported, _expected_leads(settings, tmp_path / f"expected-{night}.parquet")
    )
    assert rows > 0
    return differing


def _lead(settings: Settings, lead_id: int) -> tuple:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(
            "select created_at, source from stg_leads where lead_id = ?", [lead_id]
        ).fetchall()[0]


@pytest.fixture
def lead_nights(isolated_settings: Settings, tmp_path: Path) -> Settings:
    """The session's leads re-landed as a history file, without the leads (lead_id % 10 = 0)
    held back to land on a later night; `all.sql` reads them all."""
    s = isolated_settings
    folder = s.raw_dir / "leads"
    everything = tmp_path / "all_leads.parquet"
    duckdb.sql(f"copy (select * from read_parquet('{folder}/*.parquet')) to '{everything}' (format parquet)")
    for part in folder.glob("*.parquet"):
        part.unlink()
    every = f"read_parquet('{everything}')"
    land(s, "leads", "history.parquet", f"select * from {every} where lead_id % 10 != 0")
    (tmp_path / "all.sql").write_text(every)
    return s


def test_nights_of_lead_files_equal_a_full_refresh(lead_nights: Settings, tmp_path: Path) -> None:
    s = lead_nights
    every = (tmp_path / "all.sql").read_text()
    folder = s.raw_dir / "leads"
    original = dict(
        duckdb.sql(f"select lead_id, created_at from {every} where lead_id in (7, 14)").fetchall()
    )

    # Night 0: the history.
    features.build(AS_OF, s)
    assert _differing_from_a_rebuild(s, tmp_path, "0") == 0
    # Night 1: new leads, in a file without the optional industry column, one of them twice
    # (its later record loses).
    land(
        s,
        "leads",
        "day-1.parquet",
        f"select * exclude (industry) from {every} where lead_id % 10 = 0 union all "
        f"select * exclude (industry) replace (created_at + interval 1 hour as created_at, 'web' as source) "
        f"from {every} where lead_id = 10",
    )
    features.build(AS_OF, s)
    assert _differing_from_a_rebuild(s, tmp_path, "1") == 0
    # Night 2: earlier records of known leads (they win), and records of the same instant
    # as the table's: first by source (' Event ' typed to 'event') they win, last ('web') not.
    earlier = (
        f"select * replace (created_at - interval 1 day as created_at, 'event' as source) "
        f"from {every} where lead_id % 7 = 0 and lead_id % 10 != 0 union all "
        f"select * replace (' Event ' as source) from {every} where lead_id % 11 = 0 union all "
        f"select * replace ('web' as source) from {every} where lead_id % 13 = 0"
    )
    land(s, "leads", "earlier.parquet", earlier)
    features.build(AS_OF, s)
    assert _lead(s, 7) == (original[7] - timedelta(days=1), "event")
    assert _differing_from_a_rebuild(s, tmp_path, "2") == 0
    # Night 3: later records of known leads: they change nothing.
    land(
        s,
        "leads",
        "later.parquet",
        f"select * replace (created_at + interval 1 day as created_at) from {every} where lead_id % 5 = 0",
    )
    features.build(AS_OF, s)
    assert _differing_from_a_rebuild(s, tmp_path, "3") == 0
    # Night 4: night 2's file delivered again under another name.
    shutil.copyfile(folder / "earlier.parquet", folder / "earlier-again.parquet")
    features.build(AS_OF, s)
    assert _differing_from_a_rebuild(s, tmp_path, "4") == 0
    # Night 5: a corrected night-2 file replacing the first: half of the earlier records
    # withdrawn (the copy still carries them).
    corrected = land(
        s,
        "leads",
        "earlier.parquet.tmp",
        f"select * from ({earlier}) where lead_id % 14 = 0 or lead_id % 7 != 0",
    )
    time.sleep(0.01)
    os.replace(corrected, folder / "earlier.parquet")
    features.build(AS_OF, s)
    assert _differing_from_a_rebuild(s, tmp_path, "5") == 0
    # Night 6: the copy removed: the withdrawn records are gone, lead 7 is back to its own.
    (folder / "earlier-again.parquet").unlink()
    features.build(AS_OF, s)
    assert _differing_from_a_rebuild(s, tmp_path, "6") == 0
    assert _lead(s, 7)[0] == original[7]
    assert _lead(s, 14)[0] < original[14]
    # Night 7: no new lead file.
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        files_before = con.sql("select * from stg_leads__files order by filename").fetchall()
    features.build(AS_OF, s)
    incremental = _export_leads(s, tmp_path / "incremental.parquet")
    assert differing_rows(incremental, tmp_path / "stg_leads-6.parquet")[1] == 0

    # Each night read only its new or changed files; the replaced (night 5) and the removed
    # (night 6) file rebuilt the table from every current file; night 7 read nothing.
    assert loads(s, "stg_leads") == [
        (1, 1, 0, True),
        (2, 1, 0, False),
        (3, 1, 0, False),
        (4, 1, 0, False),
        (5, 1, 0, False),
        (6, 5, 1, False),
        (7, 4, 1, False),
        (8, 0, 0, False),
    ]
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        assert con.sql("select * from stg_leads__files order by filename").fetchall() == files_before
    # Night 7's query read neither a file nor the table.
    compiled = next(s.dbt_target_dir.glob("compiled/**/stg_leads.sql")).read_text()
    assert "read_parquet" not in compiled
    assert 'stg_leads" as t' not in compiled

    # The full refresh: the same leads.
    features.build(AS_OF, s, full_refresh=True)
    assert loads(s, "stg_leads") == [(1, 4, 0, True)]
    refreshed = _export_leads(s, tmp_path / "refreshed.parquet")
    assert differing_rows(incremental, refreshed)[1] == 0


def test_a_table_built_before_the_bookkeeping_is_rebuilt(lead_nights: Settings, tmp_path: Path) -> None:
    """stg_leads as the former table (no loads recorded), with rows a rebuild must drop, fix
    and bring back: the first incremental build rebuilds it from every file."""
    s = lead_nights
    features.build(AS_OF, s)
    land(
        s,
        "leads",
        "day-1.parquet",
        f"select * from {(tmp_path / 'all.sql').read_text()} where lead_id % 10 = 0",
    )
    with duckdb.connect(str(s.warehouse)) as con:
        con.execute("drop table stg_leads__loads")
        con.execute("drop table stg_leads__files")
        con.execute("delete from stg_leads where lead_id % 9 = 0")
        con.execute("update stg_leads set source = 'stale' where lead_id % 8 = 0")
    features.build(AS_OF, s)
    assert loads(s, "stg_leads") == [(1, 2, 0, True)]
    assert _differing_from_a_rebuild(s, tmp_path, "rebuilt") == 0
