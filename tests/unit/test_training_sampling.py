"""Training at scale: beyond MLSYS_MAX_TRAIN_ROWS the negatives are sampled and weighted back,
the calibration and holdout rows stay uniform, and the calibrated score stays honest; the fit,
the calibration and each tuning candidate report progress."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys.catalog import FeatureCatalog
from mlsys.evaluate import classification_metrics
from mlsys.model import (
    ModelConfig,
    fit_calibrated,
    fit_weights,
    plan_smote,
    prepare_frame,
    uncalibrated_proba,
)
from mlsys.train import TrainSampling, load_splits, plan_sampling, tune

CATALOG = FeatureCatalog("training_snapshots", ("x", "z"), ("c",), "sha")
DATES = pd.to_datetime(["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-02"]).date


def _snapshots(tmp_path: Path, per_date: int = 12_000) -> Path:
    """Five weekly snapshots whose true P(label) is a logistic function of x (about 8% positive)."""
    rng = np.random.default_rng(3)
    n = per_date * len(DATES)
    x, z = rng.normal(size=n), rng.normal(size=n)
    truth = 1 / (1 + np.exp(-(-3.0 + 1.5 * x + 0.5 * z)))
    frame = pd.DataFrame(
        {
            "lead_id": np.tile(np.arange(per_date), len(DATES)),
            "as_of": np.repeat(DATES, per_date),
            "x": x,
            "z": z,
            "c": rng.choice(["a", "b", "c"], size=n),
            "label": (rng.random(n) < truth).astype("int32"),
        }
    )
    path = tmp_path / "snapshots.parquet"
    frame.to_parquet(path)
    return path


def test_sampling_plan_keeps_every_row_that_fits() -> None:
    assert not plan_sampling(100, 900, 1000).sampled
    plan = plan_sampling(1_000, 99_000, 10_000)
    assert plan.positive_rate == 1.0  # 1,000 positives fit in half of 10,000
    assert plan.negative_rate == pytest.approx(9_000 / 99_000)
    assert plan.negative_weight == pytest.approx(99_000 / 9_000)
    many = plan_sampling(40_000, 60_000, 10_000)  # positives beyond half: both sampled
    assert many.positive_rate == pytest.approx(5_000 / 40_000)
    assert many.negative_rate == pytest.approx(5_000 / 60_000)
    assert TrainSampling(10, 2).describe() == "all 10 rows"


def test_weights_reach_the_fit_only_when_nothing_else_balances_the_classes() -> None:
    y = np.array([1] * 10 + [0] * 90)
    weights = np.where(y == 1, 1.0, 4.0)
    plain = ModelConfig(use_smote=False)
    assert fit_weights(plain, plan_smote(y, False), weights) is not None
    assert fit_weights(ModelConfig(), plan_smote(y, True), weights) is None  # SMOTE equalises
    balanced = ModelConfig(use_smote=False, class_weight="balanced")
    assert fit_weights(balanced, plan_smote(y, False), weights) is None
    assert fit_weights(plain, plan_smote(y, False), None) is None


def test_sampled_negatives_weighted_back_keep_calibration_honest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _snapshots(tmp_path)
    full = load_splits(path, CATALOG, seed=42, max_train_rows=10**9)
    sampled = load_splits(path, CATALOG, seed=42, max_train_rows=10_000)
    assert not full.sampling.sampled and len(full.train) == 3 * 12_000
    assert sampled.sampling.sampled and len(sampled.train) == pytest.approx(10_000, abs=2)
    positives = int(full.train["label"].sum())
    assert int(sampled.train["label"].sum()) == positives  # all positives kept (< half the cap)
    weights = sampled.train_weights()
    assert weights is not None
    assert weights[sampled.train["label"].to_numpy() == 0].sum() == pytest.approx(
        len(full.train) - positives, rel=1e-6
    )
    # Calibration and holdout are the same uniform samples either way.
    pd.testing.assert_frame_equal(full.calibration, sampled.calibration)
    pd.testing.assert_frame_equal(full.holdout, sampled.holdout)

    config = ModelConfig(use_smote=False)
    numeric, categorical = list(CATALOG.numeric), list(CATALOG.categorical)
    x_hold = prepare_frame(full.holdout, numeric, categorical)
    y_hold = full.holdout["label"].to_numpy()

    def ece(splits: object, weights: np.ndarray | None) -> tuple[float, float, float]:
        with caplog.at_level(logging.INFO, logger="mlsys.progress"):
            fitted = fit_calibrated(numeric, categorical, config, splits.train, splits.calibration, weights)  # type: ignore[attr-defined]
        raw = classification_metrics(y_hold, uncalibrated_proba(fitted.model, x_hold))
        calibrated = classification_metrics(y_hold, fitted.model.predict_proba(x_hold)[:, 1])
        return raw["ece"], calibrated["ece"], calibrated["roc_auc"]

    raw_full, ece_full, auc_full = ece(full, None)
    raw_weighted, ece_weighted, auc_weighted = ece(sampled, weights)
    raw_unweighted, ece_unweighted, _ = ece(sampled, None)
    # Unweighted, the fit learns the sample's inflated positive rate; weighted, the population's.
    assert raw_unweighted > 0.05
    assert raw_weighted < 0.02 and raw_full < 0.02
    # Calibrated on uniform rows, the published score is honest whichever way it was fitted.
    assert max(ece_full, ece_weighted, ece_unweighted) < 0.02
    assert abs(auc_weighted - auc_full) < 0.01
    messages = [r.getMessage() for r in caplog.records if r.name == "mlsys.progress"]
    assert any(m.startswith("fitting logreg on 10,00") and m.endswith("(done)") for m in messages)
    assert any(m.startswith("calibrating (isotonic) on ") and m.endswith("(done)") for m in messages)


def test_tuning_reports_each_candidate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    splits = load_splits(_snapshots(tmp_path, per_date=3_000), CATALOG, seed=42)
    config = ModelConfig(use_smote=False)
    with caplog.at_level(logging.INFO):
        tuned = tune(splits, CATALOG, config, plan_smote(splits.train["label"], False))
    assert tuned.logreg_c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    candidates = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tuning: {")]
    assert len(candidates) == 6 and all("CV ROC AUC 0." in m for m in candidates)
    progress = [r.getMessage() for r in caplog.records if r.name == "mlsys.progress"]
    assert progress[-1].startswith("tuning logreg (3 folds each): 100% (6/6 candidates)")
