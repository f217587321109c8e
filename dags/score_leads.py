"""
### score_leads: score every lead, every night

Great Expectations gate on the raw landing tables -> features as of the logical date (dbt
on DuckDB) -> Great Expectations gate on the features -> score every lead known at that
date with the model holding the `champion` alias when the run starts -> publish the
partition `scored_leads/score_date=<date>/` atomically -> metrics.

* A failed gate stops the run before any model runs; the previous partition stays. The task
  log lists each failed expectation (column, observed value, unexpected values) and the
  path of the Data Docs. Bad raw data fails before dbt, so it never reaches the warehouse.
* Re-running a date replaces its partition atomically (stage, then swap).
* Backfill past dates with `airflow backfill create --dag-id score_leads --from-date ... --to-date ...`;
  `max_active_runs=1` and the 1-slot `warehouse` pool keep DuckDB writers apart.
* Override the cut-off with the `as_of` param (YYYY-MM-DD); any other conf key fails the run.
* No champion yet: `plan_scoring` fails at once, saying to run `retrain`.
* MLflow unreachable: `plan_scoring` and `score` retry with exponential backoff (4 tries); the
  last try scores with the locally cached champion, logged as an error and counted in
  `mlsys.score.champion_from_cache` (docs/reliability.md).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from mlsys.airflow_support import PIPELINE_ARGS, REGISTRY_RETRY_ARGS, WAREHOUSE_POOL, nightly_deadline

LEAD_FEATURES = Asset("mlsys://features/lead_features")
SCORED_LEADS = Asset("mlsys://scored_leads")


@dag(
    dag_id="score_leads",
    schedule="0 2 * * *",
    # Early on purpose: backfills may start here (no catch-up runs: catchup=False).
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    # No automatic catch-up when first unpaused: backfills are explicit (see doc).
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    deadline=nightly_deadline(),
    default_args=PIPELINE_ARGS,
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
    @task
    def validate_raw(**context: object) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import pipeline
        from mlsys.airflow_support import ConfError, as_of_from_context, check_conf_keys, quiet_logs
        from mlsys.validation import DataValidationError

        quiet_logs()
        try:
            check_conf_keys(context, {"as_of"})
            return pipeline.gate_raw(as_of_from_context(context))
        except ConfError as exc:
            raise AirflowFailException(str(exc)) from None
        except DataValidationError as exc:
            # Bad data does not get better on retry: fail now, with the readable summary. The
            # summary is the whole story; a chained traceback would only print it again.
            raise AirflowFailException(str(exc)) from None

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
            return pipeline.gate_scoring(date.fromisoformat(built["as_of"]), raw=False)
        except DataValidationError as exc:
            # Bad data does not get better on retry: fail now, with the readable summary. The
            # summary is the whole story; a chained traceback would only print it again.
            raise AirflowFailException(str(exc)) from None

    @task(**REGISTRY_RETRY_ARGS)
    def plan_scoring(built: dict, gate: dict, **context: object) -> list[dict]:
        """Pin the champion for the whole run; one item per scoring shard."""
        from datetime import date

        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import pipeline, registry
        from mlsys.airflow_support import is_last_try, run_id_from_context

        try:
            plan = pipeline.plan_scoring(
                date.fromisoformat(built["as_of"]),
                run_id=run_id_from_context(context),
                allow_cached_champion=is_last_try(context),
            )
        except registry.NoChampionError as exc:
            # Retrying will not register a model: say what to run, now.
            raise AirflowFailException(str(exc)) from None
        return pipeline.shards_of(plan)

    @task(**REGISTRY_RETRY_ARGS)
    def score(item: dict, **context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import is_last_try

        return pipeline.score_shard(item["plan"], item["shard"], allow_cached_champion=is_last_try(context))

    @task(outlets=[SCORED_LEADS])
    def publish(shards: list[dict], scored: list[dict]) -> dict:
        from mlsys import pipeline

        return pipeline.publish_scores(
            # Index by length: iterating the lazy XCom sequence probes one past its end, which
            # Airflow logs as an error.
            shards[0]["plan"],
            [scored[i] for i in range(len(scored))],
        )

    built = build_features()
    validate_raw() >> built
    gate = validate_features(built)
    shards = plan_scoring(built, gate)
    publish(shards, score.expand(item=shards))


score_leads()
