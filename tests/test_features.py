"""The dbt project on a real DuckDB file: marts, point-in-time correctness, the catalogue."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from mlsys import features
from mlsys.catalog import CatalogError, load_catalog
from mlsys.settings import Settings

AS_OF = date(2026, 6, 1)


def _read_sorted(path: Path) -> list[tuple]:
    return duckdb.sql(f"select * from read_parquet('{path}') order by all").fetchall()


@pytest.fixture(scope="module")
def built(crm: Path, settings: Settings) -> features.FeatureBuildResult:
    return features.build(AS_OF, settings, selector=features.SCORING_SELECTOR)


def test_lead_features_one_row_per_known_lead(built: features.FeatureBuildResult, settings: Settings) -> None:
    path = settings.lead_features_path(AS_OF)
    known = duckdb.sql(
        f"select count(*) from read_parquet('{settings.raw_dir}/leads/*.parquet') "
        f"where created_at < date '{AS_OF}'"
    ).fetchall()[0][0]
    rows, distinct = duckdb.sql(
        f"select count(*), count(distinct lead_id) from read_parquet('{path}')"
    ).fetchall()[0]
    assert rows == distinct == known == built.rows["lead_features"]
    assert (settings.dbt_target_dir / "run_results.json").exists()
    assert built.run_results is not None and built.run_results.exists()


def test_feature_values_match_a_direct_count(built: features.FeatureBuildResult, settings: Settings) -> None:
    """n_activities_7d recomputed straight from the raw activities for a few leads."""
    path = settings.lead_features_path(AS_OF)
    mismatches = duckdb.sql(
        f"""
        with direct as (
            select lead_id, count(distinct (occurred_at, activity_type)) as n
            from read_parquet('{settings.raw_dir}/activities/*.parquet')
            where occurred_at >= date '{AS_OF}' - interval 7 day and occurred_at < date '{AS_OF}'
            group by lead_id
        )
        select count(*) from read_parquet('{path}') f left join direct d using (lead_id)
        where f.n_activities_7d != coalesce(d.n, 0)
        """
    ).fetchall()[0][0]
    assert mismatches == 0


def test_catalogue_comes_from_the_manifest(built: features.FeatureBuildResult, settings: Settings) -> None:
    catalog = load_catalog("lead_features", settings)
    assert {"source", "industry", "country", "job_level"} <= set(catalog.categorical)
    assert {"n_activities_7d", "days_since_last_activity", "n_demo_requested_30d"} <= set(catalog.numeric)
    assert "lead_id" not in catalog.columns and "as_of" not in catalog.columns
    schema = pq.read_schema(settings.lead_features_path(AS_OF))
    assert set(catalog.columns) <= set(schema.names)
    with pytest.raises(CatalogError, match="not in the dbt manifest"):
        load_catalog("no_such_mart", settings)


def test_point_in_time_features_ignore_later_data(isolated_settings: Settings) -> None:
    """Activities and conversions at or after D must not change any feature at D."""
    s = isolated_settings
    features.build(AS_OF, s, selector=features.SCORING_SELECTOR)
    features.build(AS_OF, s, selector=features.TRAINING_SELECTOR)
    before_scoring = _read_sorted(s.lead_features_path(AS_OF))
    before_training = _read_sorted(s.training_snapshots_path(AS_OF))

    future = s.raw_dir / "activities" / "future.parquet"
    duckdb.sql(
        f"""
        copy (
            select lead_id, timestamp '{AS_OF}' + to_hours(cast(lead_id % 48 as integer)) as occurred_at,
                   'demo_requested' as activity_type
            from read_parquet('{s.raw_dir}/leads/*.parquet')
        ) to '{future}' (format parquet)
        """
    )
    features.build(AS_OF, s, selector=features.SCORING_SELECTOR)
    features.build(AS_OF, s, selector=features.TRAINING_SELECTOR)
    assert _read_sorted(s.lead_features_path(AS_OF)) == before_scoring
    assert _read_sorted(s.training_snapshots_path(AS_OF)) == before_training

    # ...while the same activities a day earlier do change them (the test can fail).
    later = AS_OF + timedelta(days=1)
    features.build(later, s, selector=features.SCORING_SELECTOR)
    changed = duckdb.sql(
        f"""
        select count(*) from read_parquet('{s.lead_features_path(later)}') b
        join read_parquet('{s.lead_features_path(AS_OF)}') a using (lead_id)
        where b.n_demo_requested_7d > a.n_demo_requested_7d
        """
    ).fetchall()[0][0]
    assert changed > 0


def test_training_snapshots_follow_the_label_rules(isolated_settings: Settings) -> None:
    s = isolated_settings
    features.build(AS_OF, s, selector=features.TRAINING_SELECTOR)
    path = s.training_snapshots_path(AS_OF)
    dates = [
        d for (d,) in duckdb.sql(f"select distinct as_of from read_parquet('{path}') order by 1").fetchall()
    ]
    assert len(dates) == s.snapshot_weeks
    assert dates[-1] == AS_OF - timedelta(days=s.horizon_days)
    assert all((b - a).days == 7 for a, b in pairwise(dates))
    wrong = duckdb.sql(
        f"""
        select count(*) from read_parquet('{path}') t
        left join read_parquet('{s.raw_dir}/conversions/*.parquet') c using (lead_id)
        where c.converted_at < t.as_of                                   -- converted before: must be absent
           or t.label != coalesce(c.converted_at < t.as_of + interval {s.horizon_days} day, false)::int
        """
    ).fetchall()[0][0]
    assert wrong == 0
    rate = duckdb.sql(f"select avg(label) from read_parquet('{path}')").fetchall()[0][0]
    assert 0.02 < rate < 0.25


def test_a_failing_model_names_itself(isolated_settings: Settings) -> None:
    s = isolated_settings
    shutil.rmtree(s.raw_dir / "conversions")
    (s.raw_dir / "conversions").mkdir()
    (s.raw_dir / "conversions" / "broken.parquet").write_text("this is not parquet")
    with pytest.raises(features.FeatureBuildError) as excinfo:
        features.build(AS_OF, s, selector=features.TRAINING_SELECTOR)
    message = str(excinfo.value)
    assert "stg_conversions" in message or "training_snapshots" in message


def test_missing_raw_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path))
    monkeypatch.delenv("MLSYS_DATA_DIR", raising=False)
    with pytest.raises(features.FeatureBuildError, match="no raw landing data"):
        features.build(AS_OF, Settings.from_env())


def test_bad_as_of_is_rejected_by_the_project(isolated_settings: Settings) -> None:
    result = features.run_dbt(
        features.dbt_args(
            isolated_settings,
            "compile",
            "--select",
            "lead_features",
            "--vars",
            '{"as_of": "1 OR 1=1"}',
        ),
        isolated_settings,
    )
    assert not result.success
