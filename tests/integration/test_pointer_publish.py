"""The pointer publish mode (MLSYS_PUBLISH_MODE=pointer, mlsys.scored_table): no visible file
is renamed or overwritten; a night becomes visible by its commit marker, created last.

The session's published night is published again, into a table of its own, with the real
`mlsys.score.publish`; every reader (read_partition, the BI view file, the export, the
drift's list of nights, the on-demand scorer's) follows the markers: a run killed before its
marker is invisible, a reader holding the previous version keeps reading it, and no night
is ever seen twice.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlsys import bi, exports, metrics, score, scored_table
from mlsys.settings import Settings

AS_OF = date(2026, 6, 1)


def _stage(source: Path, settings: Settings, name: str, day: date = AS_OF) -> Path:
    """A staging folder as `combine` leaves it: the night's file, outside the table."""
    staging = settings.staging_dir / f"score_date={day.isoformat()}.{name}"
    staging.mkdir(parents=True)
    shutil.copyfile(source, staging / scored_table.PART_FILE)
    return staging


def _bi_rows(settings: Settings) -> tuple[int, int]:
    """(rows, nights) of the view file's scored_leads; scored_leads_latest is one night's."""
    con = bi.connect(settings)
    try:
        counts = "select count(*), count(distinct score_date) from "
        row = con.execute(counts + "scored_leads").fetchone()
        latest = con.execute(counts + "scored_leads_latest").fetchone()
    finally:
        con.close()
    assert row is not None and latest is not None and latest[1] == 1
    assert latest[0] * row[1] == row[0], "every night holds the same leads here"
    return int(row[0]), int(row[1])


@pytest.fixture
def pointer_settings(published: Path, settings: Settings, tmp_path: Path) -> Settings:
    return Settings(**{**settings.__dict__, "data_dir": tmp_path / "data", "publish_mode": "pointer"})


def test_a_night_is_visible_by_its_commit_marker_only(
    published: Path, settings: Settings, pointer_settings: Settings
) -> None:
    source = published / scored_table.PART_FILE
    leads = pq.read_metadata(source).num_rows
    s = pointer_settings

    first = score.publish(AS_OF, _stage(source, s, "run1"), s)
    night = s.partition_dir(AS_OF)
    assert first == night / "v=1", "publish returns what readers now read"
    assert scored_table.current_files(s, AS_OF) == [night / "v=1" / scored_table.PART_FILE]
    assert score.read_partition(s, AS_OF).equals(pq.read_table(source))
    assert _bi_rows(s) == (leads, 1)
    assert scored_table.published_dates(s) == [AS_OF]
    assert metrics.scored_table_freshness(s) == AS_OF

    # The next run publishes version 2; version 1 stays for the readers that opened it.
    assert score.publish(AS_OF, _stage(source, s, "run2"), s) == night / "v=2"
    assert scored_table.current_files(s, AS_OF) == [night / "v=2" / scored_table.PART_FILE]
    assert (night / "v=1" / scored_table.PART_FILE).is_file()
    assert _bi_rows(s) == (leads, 1), "one version of a night, never two"

    # A run killed after its upload, before its marker, and a later night committed at a
    # higher version: the half-written file lies between committed versions, and no reader
    # (the BI views included) opens it.
    killed = night / "v=3"
    killed.mkdir()
    (killed / scored_table.PART_FILE).write_bytes(source.read_bytes()[:1000])
    later = date(2026, 6, 2)
    for run in range(4):
        score.publish(later, _stage(source, s, f"later{run}", day=later), s)
    assert scored_table.committed_versions(s, later) == [3, 4]
    assert scored_table.current_files(s, AS_OF) == [night / "v=2" / scored_table.PART_FILE]
    assert _bi_rows(s) == (2 * leads, 2)
    assert exports.export_top_leads(AS_OF, s, n=5)["rows"] == 5

    # The next publish of the first night commits version 4, then removes version 1 (two
    # are kept) and the killed upload once it is stale.
    os.utime(killed, (0, 0))
    assert score.publish(AS_OF, _stage(source, s, "run4"), s) == night / "v=4"
    assert scored_table.committed_versions(s, AS_OF) == [2, 4]
    assert sorted(p.name for p in night.iterdir()) == ["_committed", "v=2", "v=4"]
    assert _bi_rows(s) == (2 * leads, 2)
    assert not any(s.staging_dir.iterdir()), "the staging folders are gone"


def test_an_upload_in_flight_is_not_removed(published: Path, pointer_settings: Settings) -> None:
    """Another publisher's version, uploaded but not yet committed (younger than
    STALE_UPLOAD_SECONDS), survives a publish's housekeeping."""
    s = pointer_settings
    source = published / scored_table.PART_FILE
    night = s.partition_dir(AS_OF)
    (night / "v=1").mkdir(parents=True)
    (night / "v=1" / scored_table.PART_FILE).write_bytes(b"in flight")
    for run in range(3):
        score.publish(AS_OF, _stage(source, s, f"run{run}"), s)
    assert scored_table.committed_versions(s, AS_OF) == [3, 4]
    assert (night / "v=1" / scored_table.PART_FILE).read_bytes() == b"in flight"
    assert not (night / "v=2").exists()


def test_the_on_demand_scorer_and_drift_list_the_pointer_nights(
    published: Path, pointer_settings: Settings
) -> None:
    from mlsys.on_demand import published_dates

    s = pointer_settings
    score.publish(AS_OF, _stage(published / scored_table.PART_FILE, s, "run1"), s)
    (s.partition_dir(date(2026, 6, 2)) / "v=1").mkdir(parents=True)  # uploaded, not committed
    assert published_dates(s) == [AS_OF]


def test_a_table_keeps_its_publish_mode(published: Path, settings: Settings, tmp_path: Path) -> None:
    """Switching modes on a table with nights would drop them from the other mode's views."""
    source = published / scored_table.PART_FILE
    swap = Settings(**{**settings.__dict__, "data_dir": tmp_path / "swap", "publish_mode": "swap"})
    score.publish(AS_OF, _stage(source, swap, "run1"), swap)
    pointer = Settings(**{**swap.__dict__, "publish_mode": "pointer"})
    with pytest.raises(scored_table.PublishModeMismatch, match="1 night\\(s\\) published by the swap mode"):
        score.publish(AS_OF, _stage(source, pointer, "run2"), pointer)
    assert score.read_partition(swap, AS_OF).num_rows == pq.read_metadata(source).num_rows

    other = Settings(**{**settings.__dict__, "data_dir": tmp_path / "pointer", "publish_mode": "pointer"})
    score.publish(AS_OF, _stage(source, other, "run1"), other)
    back = Settings(**{**other.__dict__, "publish_mode": "swap"})
    with pytest.raises(scored_table.PublishModeMismatch, match="published by the pointer mode"):
        score.publish(AS_OF, _stage(source, back, "run2"), back)
    # The swap mode's view file would see nothing of the pointer table: it was not rewritten.
    assert _bi_rows(other) == (pq.read_metadata(source).num_rows, 1)
