"""The synthetic CRM honours the raw landing contract and its oracle is worth trusting.

Everything downstream (dbt staging, GX gate, model evaluation against the oracle) assumes
these properties, so they are checked here on a small run rather than discovered later.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from mlsys_local.generate import (
    ACTIVITY_TYPES,
    COUNTRIES,
    INDUSTRIES,
    JOB_LEVELS,
    SOURCES,
    GenerateResult,
    generate,
)

N_LEADS = 5_000
END = date(2026, 6, 1)
HORIZON = 30
EVAL = END - timedelta(days=HORIZON)

EXPECTED_SCHEMAS: dict[str, pa.Schema] = {
    "raw/leads": pa.schema(
        [
            ("lead_id", pa.int64()),
            ("created_at", pa.timestamp("us")),
            ("source", pa.string()),
            ("industry", pa.string()),
            ("country", pa.string()),
            ("company_size", pa.int64()),
            ("job_level", pa.string()),
        ]
    ),
    "raw/activities": pa.schema(
        [
            ("lead_id", pa.int64()),
            ("occurred_at", pa.timestamp("us")),
            ("activity_type", pa.string()),
        ]
    ),
    "raw/conversions": pa.schema([("lead_id", pa.int64()), ("converted_at", pa.timestamp("us"))]),
    "ground_truth": pa.schema(
        [
            ("lead_id", pa.int64()),
            ("as_of", pa.date32()),
            ("true_probability", pa.float64()),
        ]
    ),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    return generate(tmp_path_factory.mktemp("crm"), n_leads=N_LEADS, seed=7)


@pytest.fixture(scope="module")
def con(run: GenerateResult) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    for name in ("leads", "activities", "conversions"):
        connection.execute(
            f"create view {name} as select * from read_parquet('{run.out_dir}/raw/{name}/*.parquet')"
        )
    connection.execute(f"create view truth as select * from read_parquet('{run.truth_path}')")
    yield connection
    connection.close()


def _row(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    return _row(con, sql, params)[0]


def _distinct(con: duckdb.DuckDBPyConnection, table: str, column: str) -> set[Any]:
    return {r[0] for r in con.execute(f"select distinct {column} from {table}").fetchall()}


def _table(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(path) for path in sorted(folder.glob("*.parquet")))


def _labelled(con: duckdb.DuckDBPyConnection, as_of: date) -> tuple[np.ndarray, np.ndarray]:
    """Oracle probability and realised label of the ground-truth population at ``as_of``."""
    rows = con.execute(
        """
        select t.true_probability,
               coalesce(c.converted_at < ?::timestamp + interval (?) day, false)
        from truth t left join conversions c using (lead_id)
        where t.as_of = ?
        """,
        [as_of, HORIZON, as_of],
    ).fetchall()
    prob = np.array([r[0] for r in rows], dtype=np.float64)
    label = np.array([r[1] for r in rows], dtype=bool)
    return prob, label


def test_files_follow_the_contract_schemas(run: GenerateResult) -> None:
    for folder, expected in EXPECTED_SCHEMAS.items():
        files = sorted((run.out_dir / folder).glob("*.parquet"))
        assert files, folder
        for path in files:
            assert pq.read_schema(path).remove_metadata() == expected, path


def test_leads_rules(con: duckdb.DuckDBPyConnection) -> None:
    n, distinct, nulls = _row(
        con,
        "select count(*), count(distinct lead_id), count(*) - count(lead_id) from leads",
    )
    assert n == distinct == N_LEADS
    assert nulls == 0
    assert _one(con, "select count(*) from leads where created_at is null or source is null") == 0
    assert _distinct(con, "leads", "source") == set(SOURCES)
    for column, allowed in (
        ("industry", INDUSTRIES),
        ("country", COUNTRIES),
        ("job_level", JOB_LEVELS),
    ):
        values = _distinct(con, "leads", column)
        assert values - {None} <= set(allowed), column
        assert None in values, f"{column} should have some missing values"
    assert _one(con, "select count(*) from leads where company_size <= 0") == 0
    assert _one(con, "select count(*) - count(company_size) from leads") > 0


def test_activities_and_conversions_reference_leads(
    con: duckdb.DuckDBPyConnection,
) -> None:
    for table in ("activities", "conversions"):
        orphans = _one(con, f"select count(*) from {table} anti join leads using (lead_id)")
        assert orphans == 0, table
    assert _one(con, "select count(*) - count(distinct lead_id) from conversions") == 0
    assert _distinct(con, "activities", "activity_type") == set(ACTIVITY_TYPES)


def test_timestamps_are_before_end_date_and_after_creation(
    con: duckdb.DuckDBPyConnection,
) -> None:
    end = datetime.combine(END, datetime.min.time())
    for table, column in (
        ("leads", "created_at"),
        ("activities", "occurred_at"),
        ("conversions", "converted_at"),
    ):
        latest = _one(con, f"select max({column}) from {table}")
        assert latest < end, table
        assert _one(con, f"select count(*) - count({column}) from {table}") == 0, table
    assert end - timedelta(days=365) <= _one(con, "select min(created_at) from leads")
    for table, column in (
        ("activities", "occurred_at"),
        ("conversions", "converted_at"),
    ):
        early = _one(
            con,
            f"select count(*) from {table} x join leads l using (lead_id) where x.{column} < l.created_at",
        )
        assert early == 0, table


def test_activities_are_sorted_within_each_part(run: GenerateResult) -> None:
    for path in sorted((run.out_dir / "raw" / "activities").glob("*.parquet")):
        table = pq.read_table(path, columns=["lead_id", "occurred_at"])
        lead = table["lead_id"].to_numpy()
        at = table["occurred_at"].to_numpy().astype(np.int64)
        assert np.all((np.diff(lead) > 0) | ((np.diff(lead) == 0) & (np.diff(at) >= 0)))


def test_result_counts_match_files(run: GenerateResult, con: duckdb.DuckDBPyConnection) -> None:
    assert run.n_leads == N_LEADS
    assert run.n_activities == _one(con, "select count(*) from activities")
    assert run.n_conversions == _one(con, "select count(*) from conversions")
    assert 0.8 * 30 * N_LEADS <= run.n_activities <= 1.2 * 30 * N_LEADS
    assert f"{N_LEADS:,} leads" in run.summary()


def test_ground_truth_population(con: duckdb.DuckDBPyConnection) -> None:
    assert _distinct(con, "truth", "as_of") == {EVAL, END}
    assert _one(con, "select count(*) - count(distinct (lead_id, as_of)) from truth") == 0
    for as_of in (EVAL, END):
        # Exactly the leads created before as_of and not converted before it.
        mismatched = _one(
            con,
            """
            with population as (
                select lead_id from leads l left join conversions c using (lead_id)
                where l.created_at < ?::timestamp
                  and (c.converted_at is null or c.converted_at >= ?::timestamp)
            ),
            oracle as (select lead_id from truth where as_of = ?)
            select count(*) from (
                (select * from population except select * from oracle)
                union all
                (select * from oracle except select * from population)
            )
            """,
            [as_of, as_of, as_of],
        )
        assert mismatched == 0, as_of
    lo, hi = _row(con, "select min(true_probability), max(true_probability) from truth")
    assert 0.0 <= lo <= hi <= 1.0


def test_positive_rate_and_oracle_quality(run: GenerateResult, con: duckdb.DuckDBPyConnection) -> None:
    prob, label = _labelled(con, EVAL)
    assert len(prob) > 1_000
    assert 0.05 <= label.mean() <= 0.15
    assert run.positive_rate == pytest.approx(label.mean())
    # Informative: the oracle ranks realised conversions well above the rest.
    assert roc_auc_score(label, prob) > 0.75
    # Calibrated: expected and realised number of conversions agree.
    assert abs(prob.mean() - label.mean()) < 0.025


def test_engagement_drives_activity(con: duckdb.DuckDBPyConnection) -> None:
    converted, not_converted = _row(
        con,
        """
        select avg(coalesce(a.n, 0)) filter (where c.lead_id is not null),
               avg(coalesce(a.n, 0)) filter (where c.lead_id is null)
        from leads l
        left join (select lead_id, count(*) as n from activities group by 1) a using (lead_id)
        left join conversions c using (lead_id)
        """,
    )
    assert converted > not_converted
    # The type mix shifts with engagement: hot types are more common among converters.
    hot_converted, hot_not_converted = _row(
        con,
        """
        select avg(hot::int) filter (where c.lead_id is not null),
               avg(hot::int) filter (where c.lead_id is null)
        from (select *, activity_type in ('demo_requested', 'pricing_page_view') as hot
              from activities) a
        left join conversions c using (lead_id)
        """,
    )
    assert hot_converted > hot_not_converted


def test_same_seed_same_data_other_seed_other_data(run: GenerateResult, tmp_path: Path) -> None:
    again = generate(tmp_path / "same", n_leads=N_LEADS, seed=7)
    other = generate(tmp_path / "other", n_leads=N_LEADS, seed=8)
    for folder in ("raw/leads", "raw/activities", "raw/conversions", "ground_truth"):
        reference = _table(run.out_dir / folder)
        assert _table(again.out_dir / folder).equals(reference), folder
        assert not _table(other.out_dir / folder).equals(reference), folder
    assert again == GenerateResult(
        out_dir=tmp_path / "same",
        n_leads=run.n_leads,
        n_activities=run.n_activities,
        n_conversions=run.n_conversions,
        positive_rate=run.positive_rate,
        truth_path=tmp_path / "same" / "ground_truth" / "ground_truth.parquet",
    )


def test_rerun_replaces_stale_activity_parts(tmp_path: Path) -> None:
    stale = tmp_path / "raw" / "activities" / "part-00042.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not parquet")
    result = generate(tmp_path, n_leads=50, history_days=60, horizon_days=7)
    assert not stale.exists()
    assert sum(pq.read_metadata(p).num_rows for p in stale.parent.glob("*.parquet")) == result.n_activities


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_leads": 0},
        {"n_leads": -5},
        {"horizon_days": 0},
        {"history_days": 30, "horizon_days": 30},
        {"history_days": 10, "horizon_days": 30},
        {"activities_per_lead": 0.0},
        {"activities_per_lead": float("nan")},
        {"seed": -1},
    ],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        generate(tmp_path, **kwargs)
    assert not (tmp_path / "raw").exists()


def test_daily_files_and_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """--daily-files N: the last N days land as one file per day, the same activities in all;
    the generator reports its progress."""
    import logging

    with caplog.at_level(logging.INFO, logger="mlsys.progress"):
        daily = generate(tmp_path / "daily", n_leads=400, seed=3, end_date=date(2026, 6, 1), daily_files=2)
    assert "generate: activities: 100% (400/400 leads)" in caplog.text
    whole = generate(tmp_path / "whole", n_leads=400, seed=3, end_date=date(2026, 6, 1))
    folder = daily.out_dir / "raw" / "activities"
    assert sorted(p.name for p in folder.glob("day-*.parquet")) == [
        "day-2026-05-30.parquet",
        "day-2026-05-31.parquet",
    ]
    ranges = duckdb.sql(
        "select min(occurred_at)::date, max(occurred_at)::date "
        f"from read_parquet('{folder}/day-2026-05-31.parquet')"
    ).fetchall()[0]
    assert ranges == (date(2026, 5, 31), date(2026, 5, 31))
    differing = duckdb.sql(
        f"""select count(*) from (
            (select * from read_parquet('{folder}/*.parquet') except all
             select * from read_parquet('{whole.out_dir}/raw/activities/*.parquet'))
            union all
            (select * from read_parquet('{whole.out_dir}/raw/activities/*.parquet') except all
             select * from read_parquet('{folder}/*.parquet')))"""
    ).fetchall()[0][0]
    assert differing == 0 and daily.n_activities == whole.n_activities
