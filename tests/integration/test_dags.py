"""Every DAG imports, carries its metadata, and parses fast (parse time is scheduler time)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from mlsys.settings import REPO_ROOT

DAG_FILES = sorted((REPO_ROOT / "dags").glob("*.py"))
EXPECTED = {"score_leads", "retrain", "score_on_demand", "export_top_leads"}


@pytest.fixture(scope="module")
def dagbag(airflow_db: dict[str, str]):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_every_dag_file_imports(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_metadata(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, f"{dag_id} has no doc_md"
    # No start_date: an active scheduled DAG never runs a past tick by itself (see below).
    assert dag.start_date is None or dag.start_date.tzinfo is not None
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has retries={task.retries}"


def test_schedules(dagbag) -> None:
    assert dagbag.dags["retrain"].timetable.expression == "0 0 * * 0"
    assert dagbag.dags["score_leads"].timetable.expression == "0 2 * * *"
    assert dagbag.dags["score_on_demand"].schedule is None
    assert dagbag.dags["score_leads"].max_active_runs == 1


def test_the_mlsys_dags_are_active_when_created_and_never_run_a_past_tick(dagbag) -> None:
    """docs/operating.md, "Paused or not": a trigger or backfill runs at once, and activation
    schedules the next tick, not the latest past one (which a start_date would run at once)."""
    from datetime import UTC, datetime

    for dag_id in ("score_leads", "retrain", "export_top_leads"):
        dag = dagbag.dags[dag_id]
        assert dag.is_paused_upon_creation is False, dag_id
        assert dag.start_date is None and dag.catchup is False, dag_id
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id in ("score_leads", "retrain"):
        # What the scheduler computes when it first sees the DAG (no run yet): a future tick.
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[dag_id]))
        first = serialized.next_dagrun_info(last_automated_run_info=None)
        assert first is not None and first.run_after > datetime.now(UTC), (dag_id, first)
    condition = dagbag.dags["export_top_leads"].timetable.asset_condition
    assert [asset.uri.rstrip("/") for asset in condition.objects] == ["mlsys://scored_leads"]


def test_retrain_params_are_typed(dagbag) -> None:
    params = dagbag.dags["retrain"].params
    for name in ("force", "tune", "use_smote", "class_weights", "estimator"):
        assert name in params, name
    assert params.get_param("force").schema["type"] == "boolean"
    assert params.get_param("estimator").schema["enum"] == ["logreg", "hgb"]


@pytest.mark.parametrize(
    ("dag_id", "stages"),
    [("score_leads", "SCORING_STAGES"), ("retrain", "TRAINING_STAGES")],
)
def test_each_dag_is_its_pipelines_stages_in_order(dagbag, dag_id: str, stages: str) -> None:
    """mlsys.pipeline writes the order once; the CLI runs it and each DAG is one task per stage.
    Every stage is a task, and each one runs after the one before it (directly or not)."""
    from mlsys import pipeline

    dag = dagbag.dags[dag_id]
    order = getattr(pipeline, stages)
    assert set(order) <= set(dag.task_ids)
    for earlier, later in itertools.pairwise(order):
        assert earlier in dag.get_task(later).get_flat_relative_ids(upstream=True), (earlier, later)


def test_warehouse_writers_share_one_pool(dagbag) -> None:
    assert dagbag.dags["score_leads"].get_task("build_features").pool == "warehouse"
    assert dagbag.dags["retrain"].get_task("build_training_snapshots").pool == "warehouse"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: Path(p).name)
def test_dag_file_parses_under_two_seconds(dagbag, path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    bag = DagBag(dag_folder=str(path))
    elapsed = time.perf_counter() - start
    assert bag.import_errors == {}
    assert elapsed < 2.0, f"{path.name} took {elapsed:.2f}s to parse"
