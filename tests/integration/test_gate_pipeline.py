"""The data quality gate inside the pipeline (issue 4).

One isolated home publishes a first partition through Airflow (retrain, then score_leads).
Then each bad input of the issue is built from that generated data and the pipeline is run:
it must stop at the gate naming the expectation and column, with a readable message, and
leave everything downstream as it was: the published partition byte for byte, no staging
folder, the warehouse and the feature files untouched (bad raw data never reaches dbt), and
the model registry unchanged. Two runs go through the Airflow DAGs themselves to show the
failing task, the tasks that never ran, and the summary in the task log.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mlsys import pipeline, registry, validation
from mlsys.settings import REPO_ROOT, Settings
from mlsys.validation import RAW_ACTIVITIES, RAW_CONVERSIONS, RAW_LEADS, DataValidationError
from mlsys_local.demo import run_dag
from tests.gates import assert_stopped_at_the_gate, rewrite

pytestmark = pytest.mark.slow
AS_OF = date(2026, 6, 1)


# ----------------------------------------------------------------------------- set-up


@pytest.fixture(scope="module")
def gate_home(tmp_path_factory: pytest.TempPathFactory, crm: Path, airflow_db: dict) -> Iterator[Settings]:
    """A home of its own with a champion and the published partition of AS_OF."""
    import mlflow

    root = tmp_path_factory.mktemp("gate-home")
    shutil.copytree(crm / "raw", root / "data" / "raw")
    shutil.copytree(crm / "raw", root / "pristine-raw")
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLSYS_HOME", str(root))
        for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        settings = Settings.from_env()
        run_dag("retrain", AS_OF, {"force": True})
        run_dag("score_leads", AS_OF)
        assert list(settings.partition_dir(AS_OF).glob("*.parquet")), "set-up published nothing"
        yield settings
    # The rest of the session uses its own store: both of MLflow's process-wide URIs go back.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)


@pytest.fixture
def home(gate_home: Settings) -> Iterator[Settings]:
    """The module's home; whatever a test breaks in the raw landing folder is restored after."""
    before = fingerprint(gate_home)
    yield gate_home
    raw = gate_home.raw_dir
    shutil.rmtree(raw)
    shutil.copytree(gate_home.home / "pristine-raw", raw)
    assert fingerprint(gate_home) == before  # what the test asserted, also for the next test


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def fingerprint(settings: Settings) -> dict[str, Any]:
    """Everything a run downstream of the gate would change."""
    partition = settings.partition_dir(AS_OF)
    staging = settings.staging_dir
    client = registry.client(settings)
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    return {
        "partition": {p.name: _sha256(p) for p in sorted(partition.iterdir())},
        "partitions": sorted(p.name for p in settings.scored_dir.glob("score_date=*")),
        "staging": sorted(p.name for p in staging.iterdir()) if staging.exists() else [],
        "bi_database": _sha256(settings.bi_database),
        "warehouse": _sha256(settings.warehouse),
        "lead_features": _sha256(settings.lead_features_path(AS_OF)),
        "training_snapshots": _sha256(settings.training_snapshots_path(AS_OF)),
        "model_versions": sorted((int(v.version), v.run_id) for v in versions),
        "aliases": dict(client.get_registered_model(settings.model_name).aliases),
    }


# ----------------------------------------------------------------------------- bad inputs


def _add_file(folder: Path, name: str, select: str) -> None:
    duckdb.sql(f"COPY ({select}) TO '{folder / name}' (FORMAT parquet)")


def null_lead_id(s: Settings) -> None:
    rewrite(
        s.raw_dir / "leads" / "leads.parquet",
        "SELECT * REPLACE (CASE WHEN lead_id % 500 = 7 THEN NULL ELSE lead_id END AS lead_id) FROM {src}",
    )


def duplicate_lead_id(s: Settings) -> None:
    # A second export file that repeats three leads: each file is fine on its own.
    leads = s.raw_dir / "leads"
    _add_file(leads, "zz-reexport.parquet", f"SELECT * FROM read_parquet('{leads}/leads.parquet') LIMIT 3")


def unknown_source(s: Settings) -> None:
    rewrite(
        s.raw_dir / "leads" / "leads.parquet",
        "SELECT * REPLACE (CASE WHEN lead_id % 100 = 1 THEN 'carrier_pigeon' ELSE source END AS source) "
        "FROM {src}",
    )


def negative_company_size(s: Settings) -> None:
    rewrite(
        s.raw_dir / "leads" / "leads.parquet",
        "SELECT * REPLACE (CASE WHEN lead_id = 42 THEN -12 ELSE company_size END AS company_size) FROM {src}",
    )


def future_activities(s: Settings) -> None:
    activities = s.raw_dir / "activities"
    first = sorted(activities.glob("*.parquet"))[0]
    _add_file(
        activities,
        "zz-late.parquet",
        f"SELECT lead_id, occurred_at + INTERVAL 6 YEAR AS occurred_at, activity_type "
        f"FROM read_parquet('{first}') LIMIT 30",
    )


def missing_column(s: Settings) -> None:
    rewrite(s.raw_dir / "leads" / "leads.parquet", "SELECT * EXCLUDE (source) FROM {src}")


def empty_leads(s: Settings) -> None:
    rewrite(s.raw_dir / "leads" / "leads.parquet", "SELECT * FROM {src} WHERE false")


def corrupt_file(s: Settings) -> None:
    (s.raw_dir / "activities" / "zz-export.parquet").write_text("lead_id,occurred_at\n1,2026-05-01\n")


BAD_INPUTS: list[tuple[Callable[[Settings], None], str, str, str | None, object]] = [
    # (build it, suite, expectation, column, a value the message must show)
    (null_lead_id, RAW_LEADS, "expect_column_values_to_not_be_null", "lead_id", "6 of 3,000 rows unexpected"),
    (
        duplicate_lead_id,
        RAW_LEADS,
        "expect_column_values_to_be_unique",
        "lead_id",
        # The new file alone passes the suite; its ids repeat those of the files that passed.
        "3 lead_id value(s) of the new file(s) already in earlier landing files",
    ),
    (unknown_source, RAW_LEADS, "expect_column_values_to_be_in_set", "source", "'carrier_pigeon'"),
    (negative_company_size, RAW_LEADS, "expect_column_values_to_be_between", "company_size", "[-12]"),
    (
        future_activities,
        RAW_ACTIVITIES,
        "expect_column_values_to_be_between:not_in_future",
        "occurred_at",
        "30 of ",
    ),
    (
        missing_column,
        RAW_LEADS,
        "expect_table_columns_to_match_set:required_columns",
        "source",
        "missing column source, required by the raw contract of source mlsys (suite raw_leads)",
    ),
    (empty_leads, RAW_LEADS, "expect_table_row_count_to_be_between:non_empty", None, "observed 0"),
    (corrupt_file, RAW_ACTIVITIES, "input_files_are_parquet", None, "zz-export.parquet"),
]


def run_scoring_pipeline(settings: Settings) -> None:
    """What the score_leads DAG runs, in its order, as plain function calls."""
    pipeline.gate_raw(AS_OF, settings)
    pipeline.build_scoring_features(AS_OF, settings)
    pipeline.gate_scoring(AS_OF, settings, raw=False)
    pipeline.score_and_publish(AS_OF, settings=settings)


# ----------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("make_bad", "suite", "expectation", "column", "shown"),
    [case for case in BAD_INPUTS if case[0] is not future_activities],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_bad_input_stops_the_run_at_the_gate_and_changes_nothing(
    home: Settings,
    make_bad: Callable[[Settings], None],
    suite: str,
    expectation: str,
    column: str | None,
    shown: object,
) -> None:
    before = fingerprint(home)
    make_bad(home)
    with pytest.raises(DataValidationError) as excinfo:
        run_scoring_pipeline(home)
    assert_stopped_at_the_gate(excinfo.value, suite, expectation, column, shown)
    assert fingerprint(home) == before


def test_features_that_fail_their_gate_never_replace_the_gated_ones(gate_home: Settings) -> None:
    """A re-run of a published night whose new lead_features fail the gate (here a build that
    wrote negative counts, as a bug in the SQL would): the gated file of that night stays in
    place, so on-demand lookups keep agreeing with the published partition; the rejected
    build waits in features/.staging/ for a look, and a good re-run moves in over it.
    (Not the `home` fixture: the rebuilds change the warehouse, which that fixture forbids.)"""
    home = gate_home
    before = fingerprint(home)
    final = home.lead_features_path(AS_OF)
    staged = home.mart_path("lead_features", AS_OF, staged=True)
    pipeline.gate_raw(AS_OF, home)
    pipeline.build_scoring_features(AS_OF, home)
    assert staged.is_file() and _sha256(final) == before["lead_features"], "built, not yet in place"
    rewrite(staged, "SELECT * REPLACE (-1 AS n_activities_total) FROM {src}")
    with pytest.raises(DataValidationError) as excinfo:
        pipeline.gate_scoring(AS_OF, home, raw=False)
    assert_stopped_at_the_gate(
        excinfo.value, "lead_features", "expect_column_values_to_be_between", "n_activities_total", "[-1]"
    )
    after = fingerprint(home)
    assert {**after, "warehouse": None} == {**before, "warehouse": None}  # dbt did rebuild its tables
    assert staged.is_file()
    pipeline.build_scoring_features(AS_OF, home)
    pipeline.gate_scoring(AS_OF, home, raw=False)
    assert not staged.exists() and final.is_file()
    assert duckdb.sql(f"select min(n_activities_total) from read_parquet('{final}')").fetchall()[0][0] >= 0


def _dag_run_states(dag_id: str, conf: dict[str, Any] | None = None) -> tuple[str, dict[str, str]]:
    """Run a DAG with dag.test() and return the run's state and each task's state."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags[dag_id]
    run = dag.test(logical_date=datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=UTC), run_conf=conf)
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        ).all()
        states = {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in tis}
    return str(run.state).rsplit(".", 1)[-1].lower(), states


def test_future_activities_fail_validate_raw_in_the_dag_and_nothing_downstream_runs(
    home: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(home)
    future_activities(home)
    state, tasks = _dag_run_states("score_leads")
    output = capfd.readouterr()
    log = output.out + output.err

    assert state == "failed"
    assert tasks.pop("validate_raw") == "failed"
    assert {"build_features", "validate_features", "score", "publish"} <= set(tasks)
    assert set(tasks.values()) == {"upstream_failed"}, tasks  # not one of them ran
    assert fingerprint(home) == before

    # The task log tells the whole story: the failed expectation with its column, observed
    # value and unexpected values, and where the Data Docs are.
    line = next(line for line in log.splitlines() if "ERROR   occurred_at:" in line)
    assert "expect_column_values_to_be_between:not_in_future observed 30 of" in line
    assert "unexpected e.g. [20" in line  # the timestamps themselves, six years ahead
    # (The leads' suite passed with no new file: "Data Docs: not built", GX did not run.)
    docs = {
        line.split("Data Docs: ", 1)[1].split()[0].rstrip("\"'")
        for line in log.splitlines()
        if "Data Docs: " in line and "Data Docs: not built" not in line
    }
    assert docs and all(Path(d).is_file() and Path(d).is_relative_to(home.data_dir / "gx") for d in docs)
    assert "AirflowFailException: GX suite 'raw_activities': FAILED" in log
    assert "DataValidationError" not in log  # the summary once as the reason, not a chain


def test_gate_summary_is_the_exception_message_the_task_shows(home: Settings) -> None:
    unknown_source(home)
    with pytest.raises(DataValidationError) as excinfo:
        pipeline.gate_raw(AS_OF, home)
    report = excinfo.value.report
    assert str(excinfo.value) == report.summary()
    assert report.data_docs is not None and Path(report.data_docs).is_file()


# ----------------------------------------------------------------------------- retrain


def test_bad_conversions_stop_retrain_before_training_and_leave_the_registry(home: Settings) -> None:
    before = fingerprint(home)
    assert before["aliases"].get(registry.CHAMPION), before
    conversions = home.raw_dir / "conversions"
    _add_file(
        conversions,
        "zz-reexport.parquet",
        f"SELECT lead_id, converted_at + INTERVAL 1 DAY AS converted_at "
        f"FROM read_parquet('{conversions}/conversions.parquet') LIMIT 5",
    )
    state, tasks = _dag_run_states("retrain", {"force": True})
    assert state == "failed"
    assert tasks.pop("validate_raw") == "failed"
    assert {"build_training_snapshots", "validate_snapshots", "check_drift", "train_and_promote"} <= set(
        tasks
    )
    assert set(tasks.values()) == {"upstream_failed"}, tasks
    assert fingerprint(home) == before  # no version registered, no alias moved

    with pytest.raises(DataValidationError) as excinfo:
        pipeline.gate_raw(AS_OF, home, training=True)
    assert_stopped_at_the_gate(
        excinfo.value, RAW_CONVERSIONS, "expect_column_values_to_be_unique", "lead_id", "unexpected e.g. ["
    )
    # Scoring reads no conversions, so the same landing folder does not stop the nightly run.
    assert set(pipeline.gate_raw(AS_OF, home)) == {RAW_LEADS, RAW_ACTIVITIES}


# ----------------------------------------------------------------------------- command line


def test_cli_validate_exits_1_with_the_same_summary(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlsys.cli import main

    assert main(["validate", "--as-of", AS_OF.isoformat()]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("GX suite")] == [
        "GX suite 'raw_leads'",
        "GX suite 'raw_activities'",
        "GX suite 'lead_features'",
    ]

    activities = home.raw_dir / "activities"
    first = sorted(activities.glob("*.parquet"))[0]
    rewrite(
        first,
        "SELECT * REPLACE (CASE WHEN activity_type = 'page_view' THEN 'web_visit' ELSE activity_type END "
        "AS activity_type) FROM {src}",
    )
    assert main(["validate", "--as-of", AS_OF.isoformat()]) == 1
    captured = capsys.readouterr()
    report = validation.validate_raw(RAW_ACTIVITIES, home, as_of=AS_OF)
    failed_line = next(line for line in report.summary().splitlines() if line.lstrip().startswith("ERROR"))
    assert failed_line in captured.out
    assert "activity_type: expect_column_values_to_be_in_set" in failed_line and "'web_visit'" in failed_line
    assert captured.err.strip().splitlines()[-1] == (
        "mlsys validate: 1 blocking expectation(s) failed, first in raw_activities: "
        "activity_type: expect_column_values_to_be_in_set"
    )
