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
* Backfill past nights with `airflow backfill create --dag-id score_leads --from-date A --to-date B`
  (runs are at 02:00 UTC: a bare `--to-date B` ends with the night before B); nights that
  already have a run are skipped unless `--reprocess-behavior completed` (docs/operating.md).
  `max_active_runs=1` and the 1-slot `warehouse` pool keep DuckDB writers apart.
* Active when created, and no start date: the first scheduled run is the next 02:00, never
  a run for a past night (docs/operating.md, "Paused or not"). A night after the landing's
  `raw/landing.json` `complete_as_of` is skipped (nothing landed for it).
* `publish` updates the asset `mlsys://scored_leads` with `extra` = score_date, model_name,
  model_version, rows, partition: DAGs scheduled on it (`export_top_leads`) follow each night.
* Override the cut-off with the `as_of` param (YYYY-MM-DD); `full_refresh: true` rebuilds the
  de-duplicated leads and activities from every landing file instead of reading only the new ones
  (docs/data-engineering.md); any other conf key fails the run.
* No champion yet: `plan_scoring` fails at once, saying to run `retrain`.
* MLflow unreachable: `plan_scoring` and `score` retry with exponential backoff (4 tries); the
  last try scores with the locally cached champion, logged as an error and counted in
  `mlsys.score.champion_from_cache` (docs/reliability.md).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, task

from mlsys.airflow_support import (
    LEAD_FEATURES_URI,
    PIPELINE_ARGS,
    REGISTRY_RETRY_ARGS,
    SCORED_LEADS_URI,
    WAREHOUSE_POOL,
    cron_schedule,
    nightly_deadline,
)

LEAD_FEATURES = Asset(LEAD_FEATURES_URI)
SCORED_LEADS = Asset(SCORED_LEADS_URI)


@dag(
    dag_id="score_leads",
    schedule=cron_schedule("0 2 * * *"),
    # No start_date: activating the DAG never runs a past night by itself (with one, the
    # latest 02:00 would run at once); backfills name their dates. No catch-up (see doc).
    catchup=False,
    # Active when created: a trigger or backfill runs at once (docs/operating.md).
    is_paused_upon_creation=False,
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
        "full_refresh": Param(
            False,
            type="boolean",
            description="Rebuild the leads and activities from every landing file (dbt --full-refresh)",
        ),
    },
)
def score_leads() -> None:
    # One task per stage of mlsys.pipeline.SCORING_STAGES, in that order. Each task builds the
    # settings from its environment (the edge) and passes them down.
    @task
    def validate_raw(**context: object) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlsys import pipeline
        from mlsys.airflow_support import (
            as_of_from_context,
            check_conf_keys,
            fail_now,
            not_landed,
            quiet_logs,
        )
        from mlsys.settings import Settings

        quiet_logs()
        settings = Settings.from_env()
        with fail_now():
            check_conf_keys(context, {"as_of", "full_refresh"})
            as_of = as_of_from_context(context, settings)
            if reason := not_landed(as_of, settings):
                raise AirflowSkipException(reason)
            return pipeline.gate_raw(as_of, settings)

    @task(pool=WAREHOUSE_POOL, outlets=[LEAD_FEATURES])
    def build_features(**context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import as_of_from_context
        from mlsys.settings import Settings

        settings = Settings.from_env()
        params = context.get("params") or {}
        full_refresh = bool(params.get("full_refresh", False)) if isinstance(params, dict) else False
        return pipeline.build_scoring_features(
            as_of_from_context(context, settings), settings, full_refresh=full_refresh
        )

    @task
    def validate_features(built: dict) -> dict:
        from datetime import date

        from mlsys import pipeline
        from mlsys.airflow_support import fail_now, quiet_logs
        from mlsys.settings import Settings

        quiet_logs()
        with fail_now():
            return pipeline.gate_scoring(date.fromisoformat(built["as_of"]), Settings.from_env(), raw=False)

    @task(**REGISTRY_RETRY_ARGS)
    def plan_scoring(built: dict, gate: dict, **context: object) -> list[dict]:
        """Pin the champion for the whole run; one item per scoring shard."""
        from datetime import date

        from mlsys import pipeline
        from mlsys.airflow_support import fail_now, is_last_try, run_id_from_context
        from mlsys.settings import Settings

        with fail_now():  # no champion: retrying will not register one
            plan = pipeline.plan_scoring(
                date.fromisoformat(built["as_of"]),
                run_id=run_id_from_context(context),
                settings=Settings.from_env(),
                allow_cached_champion=is_last_try(context),
            )
        return pipeline.shards_of(plan)

    @task(**REGISTRY_RETRY_ARGS)
    def score(item: dict, **context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import is_last_try
        from mlsys.settings import Settings

        return pipeline.score_shard(
            item["plan"], item["shard"], Settings.from_env(), allow_cached_champion=is_last_try(context)
        )

    @task(outlets=[SCORED_LEADS])
    def publish(shards: list[dict], scored: list[dict], **context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import scored_leads_event
        from mlsys.settings import Settings

        published = pipeline.publish_scores(
            # Index by length: iterating the lazy XCom sequence probes one past its end, which
            # Airflow logs as an error.
            shards[0]["plan"],
            [scored[i] for i in range(len(scored))],
            Settings.from_env(),
        )
        context["outlet_events"][SCORED_LEADS].extra = scored_leads_event(published)  # type: ignore[index]
        return published

    built = build_features()
    validate_raw() >> built
    gate = validate_features(built)
    shards = plan_scoring(built, gate)
    publish(shards, score.expand(item=shards))


score_leads()
