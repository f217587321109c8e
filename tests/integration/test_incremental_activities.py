"""The incremental nightly path equals a full refresh: de-duplicated activities loaded from
the new landing files only, and features from the 90-day windows plus a per-lead state."""

from __future__ import annotations

import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from mlsys import cli, features
from mlsys.settings import Settings
from tests.landings import land, loads

AS_OF = date(2026, 6, 1)
N1, N2, N3 = (AS_OF - timedelta(days=d) for d in (3, 2, 1))
ACTIVITY_COLUMNS = "lead_id, occurred_at, activity_type, activity_type_id"


def _differing(left: str, right: str) -> int:
    """Rows of either relation missing from the other (EXCEPT ALL both ways)."""
    return int(
        duckdb.sql(
            f"select count(*) from ((select * from {left} except all select * from {right}) "
            f"union all (select * from {right} except all select * from {left}))"
        ).fetchall()[0][0]
    )


def _export_activities(settings: Settings, out: Path) -> str:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.sql(f"copy (select {ACTIVITY_COLUMNS} from stg_activities) to '{out}' (format parquet)")
    return f"read_parquet('{out}')"


def _expected_activities(settings: Settings) -> str:
    """The typed distinct activities of every current landing file, straight from the files."""
    return f"""(select distinct cast(lead_id as bigint) as lead_id,
        cast(occurred_at as timestamp) as occurred_at,
        lower(trim(activity_type)) as activity_type,
        list_position({features_types()}, lower(trim(activity_type))) as activity_type_id
        from read_parquet('{settings.raw_dir}/activities/*.parquet'))"""


def features_types() -> str:
    from mlsys.validation import ACTIVITY_TYPES

    return "[" + ", ".join(f"'{t}'" for t in ACTIVITY_TYPES) + "]"


def _compiled(settings: Settings, model: str) -> str:
    return next(settings.dbt_target_dir.glob(f"run/**/{model}.sql")).read_text()


def _keep(settings: Settings, as_of: date, out: Path) -> str:
    shutil.copyfile(settings.lead_features_path(as_of), out)
    return f"read_parquet('{out}')"


def _reference_features(settings: Settings, as_of: date, out: Path) -> str:
    """lead_features of `as_of` aggregated from every activity before it (no state)."""
    features.build(as_of, settings, extra_vars={"features_from_full_history": True})
    return _keep(settings, as_of, out)


@pytest.fixture
def nights(isolated_settings: Settings, tmp_path: Path) -> Settings:
    """The session's activities re-landed as a history file before N1 (minus a set of old
    activities held back to arrive late)."""
    s = isolated_settings
    folder = s.raw_dir / "activities"
    everything = tmp_path / "all_activities.parquet"
    duckdb.sql(f"copy (select * from read_parquet('{folder}/*.parquet')) to '{everything}' (format parquet)")
    for part in folder.glob("*.parquet"):
        part.unlink()
    s_all = f"read_parquet('{everything}')"
    late = f"lead_id % 13 = 0 and occurred_at < date '{AS_OF}' - interval 200 day"
    land(
        s,
        "activities",
        "history.parquet",
        f"select * from {s_all} where occurred_at < date '{N1}' and not ({late})",
    )
    (tmp_path / "late.sql").write_text(f"select * from {s_all} where {late}")
    (tmp_path / "all.sql").write_text(s_all)
    return s


def test_nights_of_landings_equal_a_full_refresh(nights: Settings, tmp_path: Path) -> None:
    s = nights
    every = (tmp_path / "all.sql").read_text()

    def day(d: date) -> str:
        next_day = d + timedelta(days=1)
        return f"select * from {every} where occurred_at >= date '{d}' and occurred_at < date '{next_day}'"

    # Night 0: the history.
    features.build(N1, s)
    # Night 1: day N1, its activities twice over (exact duplicates collapse), and activities
    # from over 200 days ago arriving late.
    land(s, "activities", "day-1.parquet", f"{day(N1)} union all {day(N1)}")
    land(s, "activities", "late.parquet", (tmp_path / "late.sql").read_text())
    features.build(N2, s)
    # Night 2: day N2, and day N1's file delivered again under another name.
    land(s, "activities", "day-2.parquet", day(N2))
    shutil.copyfile(
        s.raw_dir / "activities" / "day-1.parquet", s.raw_dir / "activities" / "day-1-again.parquet"
    )
    features.build(N3, s)
    state_sql = _compiled(s, "int_lead_activity_state")
    assert "late arrivals" in state_sql  # brought forward, not rebuilt
    assert f"brought forward from the windows of {N2}" in _compiled(s, "int_scoring_activity_windows")
    incremental_n3 = _keep(s, N3, tmp_path / "incremental-n3.parquet")
    assert _differing(incremental_n3, _reference_features(s, N3, tmp_path / "reference-n3.parquet")) == 0

    # Night 3: day N3, and a corrected day-2 file replacing the first (a fifth of the leads'
    # rows withdrawn, a demo request added for others, one activity dated months back).
    corrected = (
        f"select * from ({day(N2)}) where lead_id % 5 != 0 union all "
        f"select lead_id, timestamp '{N2} 12:00:00', 'demo_requested' "
        f"from ({day(N2)}) where lead_id % 11 = 0 "
        f"union all select lead_id, timestamp '{N2}' - interval 150 day, 'page_view' "
        f"from ({day(N2)}) where lead_id % 17 = 0"
    )
    replaced = land(s, "activities", "day-2.parquet.tmp", corrected)
    time.sleep(0.01)
    os.replace(replaced, s.raw_dir / "activities" / "day-2.parquet")
    land(s, "activities", "day-3.parquet", day(N3))
    features.build(AS_OF, s)
    incremental = _keep(s, AS_OF, tmp_path / "incremental.parquet")

    # Each night read only its new or changed files (the reference build of N3 read none);
    # night 3 rebuilt day-2's old dates.
    assert loads(s, "stg_activities") == [
        (1, 1, 0, True),
        (2, 2, 0, False),
        (3, 2, 0, False),
        (4, 0, 0, False),
        (5, 2, 1, False),
    ]
    activities = _export_activities(s, tmp_path / "incremental-activities.parquet")
    assert _differing(activities, _expected_activities(s)) == 0
    assert _differing(incremental, _reference_features(s, AS_OF, tmp_path / "reference.parquet")) == 0

    # The full refresh, as docs/data-engineering.md tells a data engineer to ask for it (gates
    # included): the same activities, the same features.
    assert cli.main(f"features --as-of {AS_OF} --full-refresh".split()) == 0
    assert loads(s, "stg_activities") == [(1, 6, 0, True)]
    assert _differing(activities, _export_activities(s, tmp_path / "full-activities.parquet")) == 0
    assert _differing(incremental, f"read_parquet('{s.lead_features_path(AS_OF)}')") == 0


def test_windows_brought_forward_over_skipped_nights(nights: Settings, tmp_path: Path) -> None:
    """The windows of N1 brought forward three days (two nights skipped, late arrivals among
    the loads), then to the same night again with one more late file: the features equal the
    ones aggregated from every activity."""
    s = nights
    every = (tmp_path / "all.sql").read_text()
    features.build(N1, s)
    days = f"select * from {every} where occurred_at >= date '{N1}' and occurred_at < date '{AS_OF}'"
    land(s, "activities", "days.parquet", days)
    late = (tmp_path / "late.sql").read_text()
    land(s, "activities", "late-1.parquet", f"select * from ({late}) where lead_id % 2 = 0")
    features.build(AS_OF, s)
    assert f"brought forward from the windows of {N1}" in _compiled(s, "int_scoring_activity_windows")
    skipped = _keep(s, AS_OF, tmp_path / "skipped.parquet")
    land(s, "activities", "late-2.parquet", f"select * from ({late}) where lead_id % 2 = 1")
    features.build(AS_OF, s)
    assert f"brought forward from the windows of {AS_OF}" in _compiled(s, "int_scoring_activity_windows")
    again = _keep(s, AS_OF, tmp_path / "again.parquet")
    assert _differing(skipped, again) > 0  # the second late file changed some leads' features
    assert _differing(again, _reference_features(s, AS_OF, tmp_path / "reference.parquet")) == 0


def test_a_window_of_dates_is_rebuilt_on_request(nights: Settings, tmp_path: Path) -> None:
    s = nights
    features.build(N1, s)
    # Rows lost from the table (a bad manual fix, say): the files still hold them.
    with duckdb.connect(str(s.warehouse)) as con:
        lost = con.execute(
            "delete from stg_activities "
            "where occurred_at >= date '2026-03-01' and occurred_at < date '2026-03-08'"
        ).fetchall()[0][0]
    assert lost > 0
    features.build(N1, s)  # nothing new landed: nothing comes back
    expected = _expected_activities(s)
    assert _differing(_export_activities(s, tmp_path / "a.parquet"), expected) == lost
    # What docs/data-engineering.md tells a data engineer to run.
    command = "features --as-of 2026-05-29 --rebuild-from 2026-03-01 --rebuild-to 2026-03-07"
    assert cli.main(command.split()) == 0
    assert _differing(_export_activities(s, tmp_path / "b.parquet"), expected) == 0
    assert loads(s, "stg_activities")[-1][2] == 1
