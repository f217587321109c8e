"""`make demo`: a fresh clone to scored leads, through Airflow itself (`dag.test()`).

Generates a synthetic CRM (once), runs `retrain` (forced) then `score_leads` as of the
generator's end date, and prints what a new user needs to look at the result.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, date, datetime
from typing import Any

from mlsys.settings import Settings

DEMO_END_DATE = date(2026, 6, 1)


def run_dag(
    dag_id: str, logical_date: date, conf: dict[str, Any] | None = None, *, check: bool = True
) -> Any:
    """Run one DAG in this process with `dag.test()`; raises when the run does not succeed
    (`check=False`: returns the run whatever its state)."""
    from airflow.configuration import conf as airflow_conf
    from airflow.dag_processing.dagbag import DagBag

    # The folder airflow.cfg names (mlsys_local.airflow_env): the same DAGs `make airflow` runs.
    bag = DagBag(dag_folder=airflow_conf.get("core", "dags_folder"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags[dag_id]
    # No scheduler watches deadlines here, and Airflow 3.3's dag.test() cannot finish a
    # successful run of a DAG that has a Deadline Alert (DagRun.update_state looks the alerts up
    # by the ids only the dag-processor gives them: "'dict' object has no attribute 'hex'").
    dag.deadline = None
    run = dag.test(
        logical_date=datetime(logical_date.year, logical_date.month, logical_date.day, tzinfo=UTC),
        run_conf=conf,
    )
    state = str(getattr(run, "state", "")).lower()
    if not check:
        return run
    if not state.endswith("success"):
        raise RuntimeError(f"{dag_id} run {getattr(run, 'run_id', '?')} ended {state}")
    if not any(str(ti.state).endswith("success") for ti in run.get_task_instances()):
        # A logical date before the DAG's start_date makes a "successful" run of no task.
        raise RuntimeError(f"{dag_id} run {run.run_id} succeeded without running any task")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsys_local.demo")
    parser.add_argument("--leads", type=int, default=int(os.environ.get("MLSYS_DEMO_LEADS", "50000")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # The task logs of a dag.test() run are long; a newcomer wants the summary at the end.
    # MLSYS_DEMO_VERBOSE=1 shows them.
    if os.environ.get("MLSYS_DEMO_VERBOSE") != "1":
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("DBT_QUIET", "true")
    settings = Settings.from_env()
    from mlsys_local.airflow_env import init_airflow

    init_airflow(settings)
    if not (settings.raw_dir / "leads").exists():
        from mlsys_local.generate import generate

        print(f"generating {args.leads:,} synthetic leads into {settings.raw_dir} ...", flush=True)
        print(generate(settings.data_dir, n_leads=args.leads, end_date=DEMO_END_DATE).summary())

    print("running DAG retrain (force) through Airflow ...", flush=True)
    run_dag("retrain", DEMO_END_DATE, {"force": True})
    print("running DAG score_leads through Airflow ...", flush=True)
    run_dag("score_leads", DEMO_END_DATE)

    from mlsys import bi, registry

    champion = registry.alias_version(settings, registry.CHAMPION)
    if champion is None:
        raise RuntimeError("retrain finished but no model holds the champion alias")
    run = registry.client(settings).get_run(champion.run_id)
    partition = settings.partition_dir(DEMO_END_DATE)
    with bi.connect(settings) as con:
        rows, mean = con.execute(
            "select count(*), avg(score) from scored_leads where score_date = ?", [DEMO_END_DATE]
        ).fetchone() or (0, 0.0)
    print()
    print(f"scored {rows:,} leads as of {DEMO_END_DATE} (mean score {mean:.4f})")
    print(f"partition:  {partition}")
    print(
        f"model:      {settings.model_name} version {champion.version} (champion), "
        f"holdout ROC AUC {run.data.metrics['roc_auc']:.3f}, ECE {run.data.metrics['ece']:.3f}"
    )
    print(f"MLflow:     {settings.mlflow_tracking_uri}")
    print("query it (docs/bi.md):")
    print(
        f'  .venv/bin/python -c "import duckdb; duckdb.sql(\\"select lead_id, score, score_band, '  # noqa: S608 - printed for the user, never executed
        f"top_reasons from read_parquet('{partition}/*.parquet') order by score desc limit 10\\\").show()\""
    )
    views = "select * from scored_leads_latest"
    print(f"  or open {settings.bi_database} with file_search_path = {settings.data_dir}: {views}")
    airflow_home = settings.home / "airflow"
    print(f"the airflow CLI on this instance (docs/operating.md): export AIRFLOW_HOME={airflow_home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
