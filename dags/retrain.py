"""
### retrain: train, evaluate and maybe promote a challenger

Great Expectations gate on the raw landing tables -> training snapshots (dbt) -> Great
Expectations gate on the snapshots -> drift report against the champion -> train a
challenger (only on the weekly schedule, on drift, without a champion, or with `force`)
-> evaluate it against the champion on the same holdout -> register it in MLflow as
`lead_scoring` with alias `challenger`, and `champion` if it wins. A failed gate stops the
run before anything is trained or promoted; the task log lists each failed expectation.

Trigger by hand: `airflow dags trigger retrain --conf '{"force": true}'` (a conf key other
than the params below fails the run; with no `as_of`, as of today or the landing's
`complete_as_of` if earlier). Active when created, no start date: the first scheduled run is
the next Sunday 00:00 UTC, never a past week; a date after the landing's `raw/landing.json`
`complete_as_of` is skipped (docs/operating.md).

Every registered challenger updates `mlsys://models/lead_scoring` (`extra`: model_name,
version, promoted, champion_version, as_of); a promotion also updates
`mlsys://models/lead_scoring/champion` (task `announce_champion`, same `extra`; skipped
without a promotion), so consumers can key on a new champion.

A run that fails or is killed before its end leaves the `champion` alias where it was:
aliases move only after the new version is registered. Roll back: point the `champion` alias
at an older version in MLflow.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, task

from mlsys.airflow_support import (
    CHAMPION_URI,
    MODEL_URI,
    PIPELINE_ARGS,
    TRAINING_SNAPSHOTS_URI,
    WAREHOUSE_POOL,
    cron_schedule,
)
from mlsys.settings import Settings

TRAINING_SNAPSHOTS = Asset(TRAINING_SNAPSHOTS_URI)
MODEL = Asset(MODEL_URI)
# Updated by `announce_champion` only when the run promoted (skipped otherwise: no event).
CHAMPION = Asset(CHAMPION_URI)


@dag(
    dag_id="retrain",
    schedule=cron_schedule("0 0 * * 0"),
    # No start_date: activating the DAG never runs a past week by itself (see doc).
    catchup=False,
    # Active when created: `airflow dags trigger retrain` runs at once (docs/operating.md).
    is_paused_upon_creation=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    default_args=PIPELINE_ARGS,
    tags=["mlsys", "training"],
    doc_md=__doc__,
    params={
        "force": Param(False, type="boolean", description="Train even without drift"),
        "tune": Param(False, type="boolean", description="Randomized hyper-parameter search"),
        "use_smote": Param(True, type="boolean", description="SMOTE when negatives/positives > 2"),
        "class_weights": Param(
            False,
            type="boolean",
            description="Weight classes by inverse frequency (usually with use_smote off)",
        ),
        # The deployment's default classifier (MLSYS_ESTIMATOR, e.g. in a source's env file).
        "estimator": Param(
            Settings.from_env().estimator,
            enum=["logreg", "hgb"],
            description="Classifier",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Cut-off; default: the logical date",
        ),
    },
)
def retrain() -> None:
    # One task per stage of mlsys.pipeline.TRAINING_STAGES, in that order, then the champion's
    # announcement. Each task builds the settings from its environment (the edge).
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
            check_conf_keys(context, {"force", "tune", "use_smote", "class_weights", "estimator", "as_of"})
            as_of = as_of_from_context(context, settings)
            if reason := not_landed(as_of, settings):
                raise AirflowSkipException(reason)
            return pipeline.gate_raw(as_of, settings, training=True)

    @task(pool=WAREHOUSE_POOL, outlets=[TRAINING_SNAPSHOTS])
    def build_training_snapshots(**context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import as_of_from_context
        from mlsys.settings import Settings

        settings = Settings.from_env()
        return pipeline.build_training_features(as_of_from_context(context, settings), settings)

    @task
    def validate_snapshots(built: dict) -> dict:
        from datetime import date

        from mlsys import pipeline
        from mlsys.airflow_support import fail_now, quiet_logs
        from mlsys.settings import Settings

        quiet_logs()
        with fail_now():
            return pipeline.gate_training(date.fromisoformat(built["as_of"]), Settings.from_env(), raw=False)

    @task
    def check_drift(built: dict, gate: dict, **context: object) -> dict:
        from datetime import date

        from mlsys import pipeline
        from mlsys.airflow_support import bool_param, is_scheduled
        from mlsys.settings import Settings

        decision = pipeline.decide_retrain(
            date.fromisoformat(built["as_of"]),
            force=bool_param(context["params"], "force", False),  # type: ignore[arg-type]
            scheduled=is_scheduled(context),
            settings=Settings.from_env(),
        )
        return decision.as_dict()

    @task(outlets=[MODEL])
    def train_and_promote(built: dict, decision: dict, **context: object) -> dict:
        from datetime import date

        from airflow.sdk.exceptions import AirflowSkipException

        from mlsys import pipeline
        from mlsys.airflow_support import bool_param, model_event
        from mlsys.settings import Settings

        if not decision["train"]:
            raise AirflowSkipException(decision["reason"])
        params = context["params"]
        trained = pipeline.train_challenger(
            date.fromisoformat(built["as_of"]),
            settings=Settings.from_env(),
            tune=bool_param(params, "tune", False),  # type: ignore[arg-type]
            use_smote=bool_param(params, "use_smote", True),  # type: ignore[arg-type]
            class_weights=bool_param(params, "class_weights", False),  # type: ignore[arg-type]
            estimator=str(params.get("estimator") or "") or None,  # type: ignore[attr-defined]
            trigger=decision["trigger"],
        )
        context["outlet_events"][MODEL].extra = model_event(trained)  # type: ignore[index]
        return trained

    @task(outlets=[CHAMPION])
    def announce_champion(trained: dict, **context: object) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlsys.airflow_support import model_event

        extra = model_event(trained)
        if not extra["promoted"]:
            raise AirflowSkipException(f"version {extra['version']} was not promoted")
        context["outlet_events"][CHAMPION].extra = extra  # type: ignore[index]
        return str(extra["champion_version"])

    built = build_training_snapshots()
    validate_raw() >> built
    gate = validate_snapshots(built)
    decision = check_drift(built, gate)
    announce_champion(train_and_promote(built, decision))


retrain()
