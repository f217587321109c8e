"""
### score_on_demand: score a few leads now, through the REST API

Trigger with `conf = {"leads": [{"lead_id": 123}, ...]}` (at most 100 leads). The `score`
task's XCom `return_value` is a list of
`{lead_id, score, score_band, top_reasons, model_name, model_version}`.
A bad request fails the task at once (no retry) with a JSON error in its log:
`{"error": "...", "message": "...", "details": {...}}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from mlsys.airflow_support import DEFAULT_ARGS


@dag(
    dag_id="score_on_demand",
    schedule=None,
    start_date=pendulum.datetime(2026, 6, 1, tz="UTC"),
    catchup=False,
    max_active_runs=8,
    default_args=DEFAULT_ARGS,
    tags=["mlsys", "scoring", "on-demand"],
    doc_md=__doc__,
)
def score_on_demand() -> None:
    @task
    def score(**context: object) -> list:
        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import on_demand

        dag_run = context["dag_run"]
        try:
            return on_demand.score_leads(getattr(dag_run, "conf", None))
        except on_demand.RequestError as exc:
            # A bad request will not get better by retrying.
            raise AirflowFailException(str(exc)) from exc

    score()


score_on_demand()
