"""
### score_leads: score every lead, every night

Features as of the logical date (dbt on DuckDB) -> Great Expectations gate -> score every
lead known at that date with the model holding the `champion` alias when the run starts
-> publish the partition `scored_leads/score_date=<date>/` atomically -> metrics.

* A failed gate stops the run before any model runs; the previous partition stays.
* Re-running a date replaces its partition atomically (stage, then swap).
* Backfill past dates with `airflow dags backfill create --dag-id score_leads --from-date ... --to-date ...`;
  `max_active_runs=1` and the 1-slot `warehouse` pool keep DuckDB writers apart.
* Override the cut-off with the `as_of` param (YYYY-MM-DD).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from mlsys.airflow_support import DEFAULT_ARGS, WAREHOUSE_POOL

LEAD_FEATURES = Asset("mlsys://features/lead_features")
SCORED_LEADS = Asset("mlsys://scored_leads")


@dag(
    dag_id="score_leads",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 6, 1, tz="UTC"),
    # No automatic catch-up when first unpaused: backfills are explicit (see doc).
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    tags=["mlsys", "scoring", "nightly"],
    doc_md=__doc__,
    params={
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Feature cut-off; default: the logical date",
        ),
    },
)
def score_leads() -> None:
    @task(pool=WAREHOUSE_POOL, outlets=[LEAD_FEATURES])
    def build_features(**context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import as_of_from_context

        return pipeline.build_scoring_features(as_of_from_context(context))

    @task
    def validate_features(built: dict) -> dict:
        from datetime import date

        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import pipeline
        from mlsys.airflow_support import quiet_logs
        from mlsys.validation import DataValidationError

        quiet_logs()
        try:
            return pipeline.gate_scoring(date.fromisoformat(built["as_of"]))
        except DataValidationError as exc:
            # Bad data does not get better on retry: fail now, with the readable summary.
            raise AirflowFailException(str(exc)) from exc

    @task
    def score(built: dict, gate: dict, **context: object) -> dict:
        from datetime import date

        from mlsys import pipeline
        from mlsys.airflow_support import run_id_from_context

        return pipeline.score_partition(
            date.fromisoformat(built["as_of"]), run_id=run_id_from_context(context)
        )

    @task(outlets=[SCORED_LEADS])
    def publish(scored: dict) -> dict:
        from mlsys import pipeline

        return pipeline.publish_partition(scored)

    built = build_features()
    gate = validate_features(built)
    publish(score(built, gate))


score_leads()
