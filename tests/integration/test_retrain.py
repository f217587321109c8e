"""The retrain DAG against a real MLflow store: skip without drift, versions and aliases,
the drift evidence, realized performance of past nights."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
from sklearn.metrics import roc_auc_score

from mlsys import drift, pipeline, registry
from mlsys.settings import Settings
from mlsys_local.demo import run_dag

pytestmark = pytest.mark.slow
AS_OF = date(2026, 6, 1)


def _versions(settings: Settings) -> list[str]:
    found = registry.client(settings).search_model_versions(f"name = '{settings.model_name}'")
    return sorted(str(v.version) for v in found)


def test_manual_retrain_without_drift_is_skipped(published: Path, settings: Settings) -> None:
    before = _versions(settings)
    champion = registry.alias_version(settings, registry.CHAMPION)
    run = run_dag("retrain", AS_OF, {"force": False})
    tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert tis["train_and_promote"].endswith("skipped"), tis
    assert tis["check_drift"].endswith("success")
    assert _versions(settings) == before
    assert registry.alias_version(settings, registry.CHAMPION).version == champion.version
    # the evidence of the skipped week is in MLflow
    client = registry.client(settings)
    runs = client.search_runs(
        [client.get_experiment_by_name(settings.experiment_name).experiment_id],
        filter_string="tags.`mlsys.kind` = 'drift'",
    )
    assert runs and "psi.n_activities_7d" in runs[0].data.metrics
    assert any(a.path == "drift" for a in client.list_artifacts(runs[0].info.run_id))


def test_forced_tuned_retrain_registers_a_challenger(published: Path, settings: Settings) -> None:
    before = _versions(settings)
    old_champion = str(registry.alias_version(settings, registry.CHAMPION).version)
    conf = {"force": True, "tune": True, "estimator": "logreg", "use_smote": False, "class_weights": True}
    run_dag("retrain", AS_OF, conf)
    after = _versions(settings)
    assert len(after) == len(before) + 1
    new = max(after, key=int)
    assert str(registry.alias_version(settings, registry.CHALLENGER).version) == new
    mv = registry.client(settings).get_model_version(settings.model_name, new)
    decision = mv.tags["promotion.decision"]
    champion = str(registry.alias_version(settings, registry.CHAMPION).version)
    assert champion == (new if decision == "promote" else old_champion)
    run = registry.client(settings).get_run(mv.run_id)
    assert float(run.data.params["model.logreg_c"]) in {0.01, 0.03, 0.1, 0.3, 1.0, 3.0}
    assert run.data.params["model.class_weight"] == "balanced"  # the class_weights param
    assert run.data.params["smote_applied"] == "False"
    assert "champion_roc_auc" in run.data.metrics  # compared on the same holdout
    assert {"ece", "ece_before_calibration", "lift_at_10pct", "log_loss"} <= set(run.data.metrics)
    artifacts = {a.path for a in registry.client(settings).list_artifacts(mv.run_id)}
    assert {"plots", "classification_report.txt", "feature_importances.csv", "reference"} <= artifacts


def test_bad_conf_is_refused_at_trigger_time(published: Path, settings: Settings) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    before = _versions(settings)
    with pytest.raises(ParamValidationError, match="force"):
        run_dag("retrain", AS_OF, {"force": "yes"})
    with pytest.raises(ParamValidationError, match="estimator"):
        run_dag("retrain", AS_OF, {"estimator": "svm"})
    assert _versions(settings) == before


def test_realized_performance_of_a_past_night(published: Path, settings: Settings) -> None:
    past = date(2026, 4, 1)
    pipeline.build_scoring_features(past, settings)
    pipeline.gate_scoring(past, settings, raw=False)  # moves the staged features into place
    pipeline.score_and_publish(past, run_id="past-night", settings=settings)
    realized = drift.realized_performance(AS_OF, settings)
    assert realized is not None and realized.score_date == past
    frame = duckdb.sql(
        f"""
        select s.score, coalesce(c.converted_at < date '{past}' + interval 30 day, false)::int as label
        from read_parquet('{settings.partition_dir(past)}/*.parquet') s
        left join read_parquet('{settings.raw_dir}/conversions/*.parquet') c using (lead_id)
        where c.converted_at is null or c.converted_at >= date '{past}'
        """
    ).df()
    assert realized.rows == len(frame)
    assert realized.roc_auc == pytest.approx(roc_auc_score(frame["label"], frame["score"]))
    assert realized.holdout_roc_auc is not None
    assert drift.realized_performance(date(2026, 4, 15), settings) is None  # nothing old enough


def test_the_training_summary_names_the_registered_model() -> None:
    from mlsys.model import SmotePlan
    from mlsys.train import PromotionDecision, TrainResult

    result = TrainResult(
        "run-1",
        "3",
        {"roc_auc": 0.8, "pr_auc": 0.4, "ece": 0.01},
        PromotionDecision(True, ["first model"]),
        SmotePlan(True, 5, 7.5, 10, 75),
        model_name="bank_marketing",
    )
    assert result.summary().startswith("bank_marketing version 3 (run run-1): ROC AUC 0.800")
    assert "promoted to champion: first model" in result.summary()


def test_cross_fitted_retrain_on_the_weekly_split(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLSYS_CALIBRATION_FOLDS on the synthetic source's weekly split, where a lead is in
    several snapshots: the pipeline trains, logs the scheme and registers k members that
    share one preprocessing (folds grouped by lead: tests/unit/test_model.py)."""
    from mlsys.model import member_pipelines

    monkeypatch.setenv("MLSYS_CALIBRATION_FOLDS", "3")
    settings = Settings.from_env()
    assert settings.calibration_folds == 3
    pipeline.gate_raw(AS_OF, settings, training=True)
    pipeline.build_training_features(AS_OF, settings)
    pipeline.gate_training(AS_OF, settings, raw=False)
    out = pipeline.train_challenger(AS_OF, settings=settings)
    assert out["promoted"] and 0.5 < out["roc_auc"] <= 1.0
    run = registry.client(settings).get_run(out["run_id"])
    params = run.data.params
    assert params["model.calibration_folds"] == "3"
    assert params["calibration_date"] == "cross-fitted: 3 folds of the training rows"
    assert params["rows_calibration"] == params["rows_train"]
    model = registry.load_version(settings, out["version"]).model
    members = member_pipelines(model)
    assert len(members) == 3
    assert len({id(m.named_steps["preprocess"]) for m in members}) == 1
    monkeypatch.setenv("MLSYS_CALIBRATION_FOLDS", "1")
    with pytest.raises(ValueError, match="calibration_folds"):
        pipeline.train_challenger(AS_OF, settings=Settings.from_env())
