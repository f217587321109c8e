"""
### score_on_demand: score a few leads now, through the REST API

Trigger with `conf = {"leads": [...], "as_of": "YYYY-MM-DD" (optional)}`, at most
`MLSYS_ON_DEMAND_MAX_LEADS` (100) leads. An item is `{"lead_id": 123}` (looked up in the
latest published features) or a full lead payload (attributes + `activities` in the raw
landing contract's fields; features from the nightly dbt SQL). See docs/on-demand.md.

The `score` task's XCom `return_value` is a list of
`{lead_id, score, score_band, top_reasons, model_name, model_version, as_of}` in request order.

Refused at trigger time (HTTP 400, no run): `leads` not a non-empty list of objects, `as_of`
not a date. Any other request that cannot be served fails the task at once (no retry) after
pushing XCom `error` = `{"error": "<code>", "message": "...", "details": {...}}` naming each
problem's path; read it at
`GET /api/v2/dags/score_on_demand/dagRuns/{run_id}/taskInstances/score/xcomEntries/error`.

Created unpaused (`is_paused_upon_creation=False`): it has no schedule, so it runs only when
triggered, and a trigger on a fresh install runs instead of queueing behind a pause.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from mlsys.airflow_support import DEFAULT_ARGS
from mlsys.on_demand.request import MAX_LEADS_PER_REQUEST

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
    is_paused_upon_creation=False,
    max_active_runs=8,
    default_args=ON_DEMAND_ARGS,
    tags=["mlsys", "scoring", "on-demand"],
    doc_md=__doc__,
    # The shape of a request, for the trigger form and a refusal at trigger time. The values
    # inside each lead are checked by the task, whose XCom error names every problem's path
    # (a schema error here would name only the first and hide the others).
    params={
        "leads": Param(
            type="array",
            minItems=1,
            items={"type": "object"},
            description=(
                f'Up to {MAX_LEADS_PER_REQUEST} leads (MLSYS_ON_DEMAND_MAX_LEADS): {{"lead_id": 42}} to look '
                "a lead up in the published features, or a full payload "
                '{"lead_id", "created_at", "source", ..., "activities": [...]}'
            ),
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Feature cut-off; default: the newest partition (lead ids), tomorrow UTC (payloads)",
        ),
    },
)
def score_on_demand() -> None:
    @task
    def score(**context: object) -> list:
        from mlsys.on_demand.serving import score_task
        from mlsys.settings import Settings

        return score_task(context, Settings.from_env())

    score()


score_on_demand()
