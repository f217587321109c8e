"""
### score_on_demand: score a few leads now, through the REST API

Trigger with `conf = {"leads": [...], "as_of": "YYYY-MM-DD" (optional)}`, at most
`MLSYS_ON_DEMAND_MAX_LEADS` (100) leads. An item is `{"lead_id": 123}` (looked up in the
latest published features) or a full lead payload (attributes + `activities` in the raw
landing contract's fields; features from the nightly dbt SQL). See `mlsys/on_demand.py`.

The `score` task's XCom `return_value` is a list of
`{lead_id, score, score_band, top_reasons, model_name, model_version, as_of}` in request order.

A request that cannot be served fails the task at once (no retry) after pushing XCom `error` =
`{"error": "<code>", "message": "...", "details": {...}}`; read it at
`GET /api/v2/dags/score_on_demand/dagRuns/{run_id}/taskInstances/score/xcomEntries/error`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from mlsys.airflow_support import DEFAULT_ARGS

# A client is waiting: an unexpected failure retries once, quickly, not after minutes.
ON_DEMAND_ARGS = {
    **DEFAULT_ARGS,
    "retry_delay": timedelta(seconds=5),
    "retry_exponential_backoff": False,
    "execution_timeout": timedelta(minutes=5),
}


@dag(
    dag_id="score_on_demand",
    schedule=None,
    start_date=pendulum.datetime(2026, 6, 1, tz="UTC"),
    catchup=False,
    max_active_runs=8,
    default_args=ON_DEMAND_ARGS,
    tags=["mlsys", "scoring", "on-demand"],
    doc_md=__doc__,
)
def score_on_demand() -> None:
    @task
    def score(**context: object) -> list:
        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import on_demand

        conf = getattr(context["dag_run"], "conf", None)
        try:
            # One request per task process: read only the requested feature rows.
            return on_demand.score_leads(conf, cache_features=False)
        except on_demand.ScoringError as exc:
            # XCom first, so a client reads a structured error instead of parsing the log;
            # a bad request will not get better by retrying.
            context["ti"].xcom_push(key="error", value=exc.to_dict())  # type: ignore[attr-defined]
            raise AirflowFailException(str(exc)) from exc

    score()


score_on_demand()
