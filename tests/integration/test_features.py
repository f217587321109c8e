"""The dbt project on a real DuckDB file: marts, point-in-time correctness, the catalogue."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from mlsys import dbt, features
from mlsys.catalog import CatalogError, load_catalog
from mlsys.dbt import manifest_path
from mlsys.settings import REPO_ROOT, Settings

AS_OF = date(2026, 6, 1)
PROJECT = REPO_ROOT / "sql"


def _read_sorted(path: Path) -> list[tuple]:
    return duckdb.sql(f"select * from read_parquet('{path}') order by all").fetchall()


@pytest.fixture(scope="module")
def statsd() -> Iterator[socket.socket]:
    """A real UDP socket standing in for StatsD (the kernel buffers what the build sends)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def _received(sock: socket.socket) -> list[str]:
    lines: list[str] = []
    while True:
        try:
            lines.extend(sock.recv(65535).decode().splitlines())
        except TimeoutError:
            return lines


@pytest.fixture(scope="module")
def built(crm: Path, settings: Settings, statsd: socket.socket) -> features.FeatureBuildResult:
    listening = replace(settings, statsd_port=statsd.getsockname()[1])
    return features.build(AS_OF, listening, selector=features.SCORING_SELECTOR)


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


def test_model_rows_and_timings_go_to_statsd(
    built: features.FeatureBuildResult, settings: Settings, statsd: socket.socket
) -> None:
    known = duckdb.sql(
        f"select count(distinct lead_id) from read_parquet('{settings.raw_dir}/leads/*.parquet')"
    ).fetchall()[0][0]
    # stg_leads, stg_activities and the activity windows are tables (counts from the
    # warehouse), lead_features a Parquet export (count from its footer).
    assert built.model_rows["stg_leads"] == known
    assert built.model_rows["lead_features"] == built.rows["lead_features"]
    assert (
        0
        < built.model_rows["stg_activities"]
        <= duckdb.sql(
            f"select count(*) from read_parquet('{settings.raw_dir}/activities/*.parquet')"
        ).fetchall()[0][0]
    )
    # One row per lead with an activity before as_of.
    assert (
        built.model_rows["int_scoring_activity_windows"]
        == duckdb.sql(
            f"select count(distinct lead_id) from read_parquet('{settings.raw_dir}/activities/*.parquet') "
            f"where occurred_at < date '{AS_OF}'"
        ).fetchall()[0][0]
    )
    packets = [line.replace("|", ":").split(":") for line in _received(statsd)]
    gauges = {name: float(value) for name, value, kind in packets if kind == "g"}
    assert gauges["mlsys.features.model_rows.stg_leads"] == known
    assert gauges["mlsys.features.model_rows.lead_features"] == built.rows["lead_features"]
    timed = {name for name, _, kind in packets if kind == "ms"}
    models = ("stg_leads", "stg_activities", "lead_features")
    assert {f"mlsys.features.model_seconds.{m}" for m in models} <= timed


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
    # A home's first build reads every landing file, as a full refresh does, and splits the
    # de-duplication as asked (a first build at 10M leads ran out of memory in one part).
    features.build(AS_OF, replace(s, activity_partitions=3), selector=features.SCORING_SELECTOR)
    compiled = next(s.dbt_target_dir.glob("compiled/**/staging/stg_activities.sql")).read_text()
    assert "hash(cast(lead_id as bigint)) % 3 = 2" in compiled
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


def test_duplicates_count_once_and_other_types_still_count(
    isolated_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Exact duplicates change nothing; a type outside var('activity_types') counts in the
    totals (once, after normalisation) and in no per-type column, and the build warns."""
    s = isolated_settings
    features.build(AS_OF, s, selector=features.SCORING_SELECTOR)
    before = s.lead_features_path(AS_OF).with_name("before.parquet")
    shutil.copyfile(s.lead_features_path(AS_OF), before)
    raw = s.raw_dir / "activities"
    duckdb.sql(
        f"""
        copy (
            select lead_id, occurred_at, activity_type from read_parquet('{raw}/*.parquet')
            where lead_id % 10 = 0
            union all
            select lead_id, timestamp '{AS_OF}' - interval 1 day, unnest([' Chat_Message', 'chat_message'])
            from read_parquet('{s.raw_dir}/leads/*.parquet') where lead_id % 7 = 0
            union all  -- an activity of a lead the CRM never exported
            select -1, timestamp '{AS_OF}' - interval 1 day, 'email_open'
        ) to '{raw}/redelivered.parquet' (format parquet)
        """
    )
    warned = ("accepted_values_stg_activities_activity_type", "relationships_stg_activities_lead_id")
    with caplog.at_level("WARNING", logger="mlsys.features"):
        features.build(AS_OF, s, selector=features.SCORING_SELECTOR)
    assert all(test in caplog.text for test in warned), caplog.text
    # The staging tests read the night's load (`where: __last_load__`): the next build, with
    # nothing new landed, does not report the rows again (the full refresh below does).
    caplog.clear()
    with caplog.at_level("WARNING", logger="mlsys.features"):
        features.build(AS_OF, s, selector=features.SCORING_SELECTOR)
    assert not any(test in caplog.text for test in warned), caplog.text

    per_type = [
        c for c in pq.read_schema(before).names if c.startswith("n_") and not c.startswith("n_activities")
    ]
    changed = duckdb.sql(
        f"""
        select
            count(*) filter (where b.lead_id % 7 != 0 and (a.n_activities_total != b.n_activities_total
                or a.n_activities_7d != b.n_activities_7d)),
            count(*) filter (where b.lead_id % 7 = 0 and (a.n_activities_total != b.n_activities_total + 1
                or a.n_activities_7d != b.n_activities_7d + 1)),
            count(*) filter (where {" or ".join(f"a.{c} != b.{c}" for c in per_type)}),
            count(*) filter (where b.lead_id % 7 = 0)
        from read_parquet('{s.lead_features_path(AS_OF)}') a join read_parquet('{before}') b using (lead_id)
        """
    ).fetchall()[0]
    assert changed[:3] == (0, 0, 0) and changed[3] > 0
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        other = con.sql(
            "select count(*), count(activity_type_id) from stg_activities "
            "where activity_type = 'chat_message'"
        ).fetchall()[0]
    leads_7 = duckdb.sql(
        f"select count(*) from read_parquet('{s.raw_dir}/leads/*.parquet') where lead_id % 7 = 0"
    ).fetchall()[0][0]
    assert other == (leads_7, 0)

    # The same build after a full refresh with the leads split into 3 parts for the
    # de-duplication (what a CRM of over 60M activities gets): the same rows, duplicates and
    # other types included.
    whole = s.lead_features_path(AS_OF).with_name("whole.parquet")
    shutil.copyfile(s.lead_features_path(AS_OF), whole)
    assert features.activity_partitions(s) == 1  # 90k activities: one part
    with caplog.at_level("WARNING", logger="mlsys.features"):
        features.build(
            AS_OF, replace(s, activity_partitions=3), selector=features.SCORING_SELECTOR, full_refresh=True
        )
    assert all(test in caplog.text for test in warned), caplog.text
    compiled = next(s.dbt_target_dir.glob("compiled/**/staging/stg_activities.sql")).read_text()
    assert "hash(cast(lead_id as bigint)) % 3 = 2" in compiled
    split = s.lead_features_path(AS_OF)
    differing = duckdb.sql(
        f"""
        select count(*) from (
            (select * from read_parquet('{whole}') except all select * from read_parquet('{split}'))
            union all
            (select * from read_parquet('{split}') except all select * from read_parquet('{whole}'))
        )
        """
    ).fetchall()[0][0]
    assert differing == 0 and pq.read_metadata(split).num_rows == pq.read_metadata(whole).num_rows


def test_activity_partitions_follow_the_landed_row_count(tmp_path: Path) -> None:
    settings = replace(Settings.from_env(), data_dir=tmp_path)
    assert features.activity_partitions(settings) == 1  # nothing landed
    activities = tmp_path / "raw" / "activities"
    activities.mkdir(parents=True)
    duckdb.sql(
        f"copy (select range as lead_id from range(1000)) to '{activities}/a.parquet' (format parquet)"
    )
    assert features.activity_partitions(settings) == 1
    assert features.activity_partitions(replace(settings, activity_partitions=5)) == 5
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "ACTIVITIES_PER_PARTITION", 300)
        assert features.activity_partitions(settings) == 3  # 1000 rows // 300
        mp.setattr(features, "ACTIVITIES_PER_PARTITION", 10)
        assert features.activity_partitions(settings) == features.MAX_ACTIVITY_PARTITIONS


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
    result = dbt.run(
        dbt.args(
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


@pytest.fixture(scope="module")
def docs(built: features.FeatureBuildResult, settings: Settings) -> dict:
    """`dbt docs generate` after a build: compiles every model (the manifest then has the SQL
    of all of them) and reads the relations the build left in the warehouse. The training
    models are built first when no earlier test of the session built them (this file alone):
    their incremental SQL reads their own tables."""
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        tables = {row[0] for row in con.sql("select table_name from duckdb_tables()").fetchall()}
    if features.SNAPSHOT_FEATURES_MODEL not in tables:
        features.build(AS_OF, settings, selector=features.TRAINING_SELECTOR)
    result = dbt.run(dbt.args(settings, "docs", "generate"), settings)
    assert result.success, result.exception
    return json.loads(manifest_path(settings).read_text())


def test_docs_generate_writes_the_site(docs: dict, settings: Settings) -> None:
    target = settings.dbt_target_dir
    assert (target / "index.html").stat().st_size > 0
    catalog = json.loads((target / "catalog.json").read_text())
    assert not catalog.get("errors")
    assert {"model.mlsys.stg_leads", "model.mlsys.lead_features"} <= set(catalog["nodes"])
    assert "model.mlsys.int_scoring_activity_windows" in catalog["nodes"]
    assert "model.mlsys.int_scoring_activity_windows" in docs["nodes"]


def _output_columns(docs: dict, warehouse: Path) -> dict[str, list[str]]:
    """The columns each model's compiled SQL really returns, bound (not run) by DuckDB on a
    copy of the built warehouse (the incremental models read their own tables), with the
    staging relations the build did not make created from their own compiled SQL."""
    models = {n["name"]: n for n in docs["nodes"].values() if n["resource_type"] == "model"}
    con = duckdb.connect()
    con.execute(f"attach '{warehouse}' as warehouse")
    present = {
        row[0]
        for row in con.sql(
            "select table_name from duckdb_tables() where database_name = 'warehouse'"
        ).fetchall()
    }
    for name, node in models.items():
        if name.startswith("stg_") and name not in present:
            con.execute(f"create or replace view warehouse.main.{name} as {node['compiled_code']}")
        changes = f"{name}__changes"
        if changes in node["compiled_code"] and changes not in present and name in present:
            # The windows' changes are made by the model's pre-hook, which a compile (docs
            # generate) does not run: an empty one, with the columns the model adds up.
            empty = f"select * from warehouse.main.{name} limit 0"
            con.execute(f"create table warehouse.main.{changes} as {empty}")
    columns = {}
    for name, node in models.items():
        described = con.sql(f"describe select * from ({node['compiled_code']})").fetchall()
        columns[name] = [row[0] for row in described]
    con.close()
    return columns


def test_every_model_and_column_is_documented_and_tested(
    docs: dict, settings: Settings, tmp_path: Path
) -> None:
    models = {n["unique_id"]: n for n in docs["nodes"].values() if n["resource_type"] == "model"}
    assert len(models) >= 7
    tested = {
        parent
        for n in docs["nodes"].values()
        if n["resource_type"] == "test"
        for parent in n["depends_on"]["nodes"]
    }
    shutil.copyfile(settings.warehouse, tmp_path / "warehouse.duckdb")
    actual = _output_columns(docs, tmp_path / "warehouse.duckdb")
    for unique_id, node in models.items():
        name = node["name"]
        assert node["description"].strip(), f"{name} has no description"
        assert unique_id in tested, f"{name} has no data test"
        documented = {c: col["description"].strip() for c, col in node["columns"].items()}
        assert set(documented) == set(actual[name]), (
            f"{name}: YAML and SQL columns differ: only in YAML {set(documented) - set(actual[name])}, "
            f"only in SQL {set(actual[name]) - set(documented)}"
        )
        assert all(documented.values()), f"{name}: columns without description: " + ", ".join(
            c for c, d in documented.items() if not d
        )
    for source in docs["sources"].values():
        assert source["description"].strip() and all(c["description"] for c in source["columns"].values())


def test_dbt_runs_leave_the_environment_as_they_found_it(isolated_settings: Settings) -> None:
    import os

    before = {k: os.environ.get(k) for k in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE")}
    dbt.run(dbt.args(isolated_settings, "parse"), isolated_settings)
    assert {k: os.environ.get(k) for k in before} == before


def test_a_mart_with_no_rows_is_an_empty_file_with_its_columns(isolated_settings: Settings) -> None:
    """The marts' materialization (sql/macros/engines/duckdb_external.sql) writes the model's
    query straight to Parquet: a date before any lead gives a file of zero rows that still has
    every column, and the mart's relation in the warehouse reads it."""
    s = isolated_settings
    before_any_lead = date(2020, 1, 1)
    features.build(before_any_lead, s, selector=features.SCORING_SELECTOR)
    path = s.lead_features_path(before_any_lead)
    assert pq.read_metadata(path).num_rows == 0
    assert set(load_catalog("lead_features", s).columns) <= set(pq.read_schema(path).names)
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        assert con.sql("select count(*) from lead_features").fetchall() == [(0,)]
        assert con.sql(
            "select table_type from information_schema.tables where table_name = 'lead_features'"
        ).fetchall() == [("VIEW",)]
