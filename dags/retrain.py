"""
### retrain: train, evaluate and maybe promote a challenger

Great Expectations gate on the raw landing tables -> training snapshots (dbt) -> Great
Expectations gate on the snapshots -> drift report against the champion -> train a
challenger (only on the weekly schedule, on drift, without a champion, or with `force`)
-> evaluate it against the champion on the same holdout -> register it in MLflow as
`lead_scoring` with alias `challenger`, and `champion` if it wins. A failed gate stops the
run before anything is trained or promoted; the task log lists each failed expectation.

Trigger by hand: `airflow dags trigger retrain --conf '{"force": true}'` (a conf key other
than the params below fails the run). A run that fails or is killed before its end leaves
the `champion` alias where it was: aliases move only after the new version is registered.
Roll back: point the `champion` alias at an older version in MLflow.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from mlsys.airflow_support import PIPELINE_ARGS, WAREHOUSE_POOL

TRAINING_SNAPSHOTS = Asset("mlsys://features/training_snapshots")
MODEL = Asset("mlsys://models/lead_scoring")


@dag(
    dag_id="retrain",
    schedule="0 0 * * 0",
    # Early on purpose: backfills may start here (no catch-up runs: catchup=False).
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
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
            os.environ.get("MLSYS_ESTIMATOR", "").strip() or "logreg",
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
    @task
    def validate_raw(**context: object) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import pipeline
        from mlsys.airflow_support import ConfError, as_of_from_context, check_conf_keys, quiet_logs
        from mlsys.validation import DataValidationError

        quiet_logs()
        try:
            check_conf_keys(context, {"force", "tune", "use_smote", "class_weights", "estimator", "as_of"})
            return pipeline.gate_raw(as_of_from_context(context), training=True)
        except ConfError as exc:
            raise AirflowFailException(str(exc)) from None
        except DataValidationError as exc:
            # Bad data does not get better on retry: fail now, with the readable summary. The
            # summary is the whole story; a chained traceback would only print it again.
            raise AirflowFailException(str(exc)) from None

    @task(pool=WAREHOUSE_POOL, outlets=[TRAINING_SNAPSHOTS])
    def build_training_snapshots(**context: object) -> dict:
        from mlsys import pipeline
        from mlsys.airflow_support import as_of_from_context

        return pipeline.build_training_features(as_of_from_context(context))

    @task
    def validate_snapshots(built: dict) -> dict:
        from datetime import date

        from airflow.sdk.exceptions import AirflowFailException

        from mlsys import pipeline
        from mlsys.airflow_support import quiet_logs
        from mlsys.validation import DataValidationError

        quiet_logs()
        try:
            return pipeline.gate_training(date.fromisoformat(built["as_of"]), raw=False)
        except DataValidationError as exc:
            # Bad data does not get better on retry: fail now, with the readable summary. The
            # summary is the whole story; a chained traceback would only print it again.
            raise AirflowFailException(str(exc)) from None

    @task
    def check_drift(built: dict, gate: dict, **context: object) -> dict:
        from datetime import date

        from mlsys import pipeline
        from mlsys.airflow_support import bool_param, is_scheduled

        params = context["params"]
        decision = pipeline.decide_retrain(
            date.fromisoformat(built["as_of"]),
            force=bool_param(params, "force", False),  # type: ignore[arg-type]
            scheduled=is_scheduled(context),
        )
        return decision.as_dict()

    @task(outlets=[MODEL])
    def train_and_promote(built: dict, decision: dict, **context: object) -> dict:
        from datetime import date

        from airflow.sdk.exceptions import AirflowSkipException

        from mlsys import pipeline
        from mlsys.airflow_support import bool_param

        if not decision["train"]:
            raise AirflowSkipException(decision["reason"])
        params = context["params"]
        return pipeline.train_challenger(
            date.fromisoformat(built["as_of"]),
            tune=bool_param(params, "tune", False),  # type: ignore[arg-type]
            use_smote=bool_param(params, "use_smote", True),  # type: ignore[arg-type]
            class_weights=bool_param(params, "class_weights", False),  # type: ignore[arg-type]
            estimator=str(params.get("estimator") or "") or None,  # type: ignore[attr-defined]
            trigger="schedule" if decision["reason"].startswith("weekly") else "manual",
        )

    built = build_training_snapshots()
    validate_raw() >> built
    gate = validate_snapshots(built)
    decision = check_drift(built, gate)
    train_and_promote(built, decision)


retrain()
