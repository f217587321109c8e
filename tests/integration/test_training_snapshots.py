"""Training snapshots built once: each weekly date's features are computed once and kept in the
warehouse, a retrain adds the new week and joins the labels from every conversion landed so
far; the result equals a build from scratch. A build out of memory says what to set."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from mlsys import features
from mlsys.settings import Settings

AS_OF = date(2026, 6, 1)
TRAINING = features.TRAINING_SELECTOR


def _differences(a: Path, b: Path) -> tuple[int, int]:
    """Rows of `a` not in `b` and of `b` not in `a`, duplicates counted (EXCEPT ALL both ways)."""
    one = f"read_parquet('{a}')"
    other = f"read_parquet('{b}')"
    return (
        duckdb.sql(f"select count(*) from (from {one} except all from {other})").fetchall()[0][0],
        duckdb.sql(f"select count(*) from (from {other} except all from {one})").fetchall()[0][0],
    )


def _fresh_home(tmp_path: Path, raw: Path, name: str) -> Settings:
    home = tmp_path / name
    shutil.copytree(raw, home / "data" / "raw")
    return replace(
        Settings.from_env(), home=home, data_dir=home / "data", warehouse=home / "warehouse.duckdb"
    )


def _label(path: Path, lead_id: int, as_of: date) -> int | None:
    rows = duckdb.sql(
        f"select label from read_parquet('{path}') where lead_id = {lead_id} and as_of = date '{as_of}'"
    ).fetchall()
    return rows[0][0] if rows else None


def _unconverted_lead(s: Settings, snapshot: date, other_than: int = -1) -> int:
    """A lead in the snapshot at `snapshot` that never converts."""
    return duckdb.sql(
        f"""
        select min(lead_id) from read_parquet('{s.training_snapshots_path(AS_OF - timedelta(days=7))}')
        where as_of = date '{snapshot}' and label = 0
          and lead_id != {other_than}
          and lead_id not in (select lead_id from read_parquet('{s.raw_dir}/conversions/*.parquet'))
        """
    ).fetchall()[0][0]


def _land_conversions(s: Settings, rows: list[tuple[int, str]]) -> None:
    values = ", ".join(f"({lead}, timestamp '{at}')" for lead, at in rows)
    duckdb.sql(
        f"copy (select * from (values {values}) as t(lead_id, converted_at)) "
        f"to '{s.raw_dir}/conversions/late.parquet' (format parquet)"
    )


def test_snapshots_built_once_equal_a_full_build_across_retrains(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    s = isolated_settings
    dates = features.snapshot_dates(AS_OF, s)
    # First retrain two weeks back, its 12 dates added 5 per dbt run (a big CRM's path).
    features.build(AS_OF - timedelta(days=14), replace(s, snapshots_per_build=5), selector=TRAINING)
    features.build(AS_OF - timedelta(days=7), s, selector=TRAINING)
    assert features.kept_snapshot_dates(s) == set(features.snapshot_dates(AS_OF - timedelta(days=7), s))
    before = s.training_snapshots_path(AS_OF - timedelta(days=7))

    # Conversions land late, after the weeks they fall in were kept: one within the horizon of
    # a kept snapshot (its label turns 1), one before a kept snapshot (the lead leaves it).
    labelled = _unconverted_lead(s, dates[3])
    leaving = _unconverted_lead(s, dates[6], other_than=labelled)
    assert _label(before, labelled, dates[3]) == 0
    _land_conversions(
        s,
        [
            (labelled, f"{dates[3] + timedelta(days=3)} 10:00:00"),
            (leaving, f"{dates[6] - timedelta(days=1)} 12:00:00"),
        ],
    )
    features.build(AS_OF, s, selector=TRAINING)
    after = s.training_snapshots_path(AS_OF)
    assert features.kept_snapshot_dates(s) == set(dates)  # the weeks out of the window dropped
    assert _label(after, labelled, dates[3]) == 1
    assert _label(after, leaving, dates[6]) is None and _label(after, leaving, dates[5]) == 1

    full = _fresh_home(tmp_path, s.raw_dir, "full")
    features.build(AS_OF, full, selector=TRAINING)
    assert _differences(after, full.training_snapshots_path(AS_OF)) == (0, 0)
    kept = duckdb.sql(f"select count(distinct as_of), count(*) from read_parquet('{after}')").fetchall()[0]
    assert kept[0] == s.snapshot_weeks and kept[1] > 1000


def test_kept_weeks_are_not_computed_again(isolated_settings: Settings, tmp_path: Path) -> None:
    """An activity that lands late, dated before the kept weeks, is not added to them: their
    features were computed once (what scoring saw then); a build from scratch counts it."""
    s = isolated_settings
    features.build(AS_OF, s, selector=TRAINING)
    path = s.training_snapshots_path(AS_OF)
    first = features.snapshot_dates(AS_OF, s)[0]
    lead = duckdb.sql(
        f"select min(lead_id) from read_parquet('{path}') where as_of = date '{first}'"
    ).fetchall()[0][0]
    duckdb.sql(
        f"copy (select {lead}::bigint as lead_id, timestamp '{first - timedelta(days=2)}' as occurred_at, "
        f"'demo_requested' as activity_type) to '{s.raw_dir}/activities/late.parquet' (format parquet)"
    )
    kept_copy = tmp_path / "kept.parquet"
    shutil.copyfile(path, kept_copy)
    features.build(AS_OF, s, selector=TRAINING)
    assert _differences(path, kept_copy) == (0, 0)

    full = _fresh_home(tmp_path, s.raw_dir, "full")
    features.build(AS_OF, full, selector=TRAINING)
    where = f"lead_id = {lead} and as_of = date '{first}'"
    counted = f"select n_demo_requested_7d from read_parquet('{{}}') where {where}"
    assert duckdb.sql(counted.format(full.training_snapshots_path(AS_OF))).fetchall()[0][0] == (
        duckdb.sql(counted.format(path)).fetchall()[0][0] + 1
    )


def test_out_of_memory_says_what_to_set(isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSYS_DUCKDB_TRAINING_MEMORY_LIMIT", "2MB")
    with pytest.raises(features.FeatureBuildError) as excinfo:
        features.build(AS_OF, isolated_settings, selector=TRAINING)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("DuckDB ran out of memory in model int_training_snapshot_features: set ")
    assert "MLSYS_SNAPSHOTS_PER_BUILD=1" in message and "MLSYS_DUCKDB_TRAINING_MEMORY_LIMIT" in message
