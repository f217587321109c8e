"""Training rules without Airflow or MLflow: SMOTE, calibration, promotion, drift, reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsys.drift import psi_categorical, psi_numeric
from mlsys.evaluate import classification_metrics, expected_calibration_error, score_band_cutoffs
from mlsys.model import (
    ModelConfig,
    ReasonSpec,
    TrainingDataError,
    build_pipeline,
    calibrate,
    choose_calibration,
    fit_cross_fitted,
    linear_contributions,
    member_pipelines,
    plan_smote,
    prepare_frame,
    reason_spec,
    top_reasons,
    uncalibrated_proba,
)
from mlsys.train import decide_promotion

NUMERIC = ["x1", "x2"]
CATEGORICAL = ["c"]


def frame(n: int, positive_rate: float, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(int)
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n) + 1.5 * y,
            "x2": rng.poisson(3, size=n).astype(float),
            "c": rng.choice(["a", "b", None], size=n),
        }
    )
    return df, y


def prep(df: pd.DataFrame) -> pd.DataFrame:
    return prepare_frame(df, NUMERIC, CATEGORICAL)


def test_smote_off_when_ratio_at_most_two() -> None:
    y = np.array([1] * 40 + [0] * 80)  # ratio exactly 2
    plan = plan_smote(y, use_smote=True)
    assert not plan.apply
    assert plan.imbalance_ratio == 2.0


def test_smote_on_above_two_and_switchable() -> None:
    y = np.array([1] * 10 + [0] * 90)
    assert plan_smote(y, use_smote=True).apply
    assert not plan_smote(y, use_smote=False).apply


def test_tiny_minority_adjusts_k_neighbors() -> None:
    y = np.array([1] * 3 + [0] * 100)
    plan = plan_smote(y, use_smote=True)
    assert plan.apply and plan.k_neighbors == 2


def test_one_positive_is_a_clear_error() -> None:
    with pytest.raises(TrainingDataError, match="too few"):
        plan_smote(np.array([1] + [0] * 50), use_smote=True)


def test_smote_resamples_in_fit_only() -> None:
    x, y = frame(600, 0.08)
    x = prepare_frame(x, NUMERIC, CATEGORICAL)
    plan = plan_smote(y, use_smote=True)
    pipeline = build_pipeline(NUMERIC, CATEGORICAL, ModelConfig(), plan)
    seen: list[int] = []
    model = pipeline.named_steps["model"]
    original_fit = model.fit

    def recording_fit(xs, ys, *args, **kwargs):
        seen.append(len(ys))
        return original_fit(xs, ys, *args, **kwargs)

    model.fit = recording_fit
    pipeline.fit(x, y)
    assert seen and seen[0] > len(y), "SMOTE did not add synthetic rows during fit"
    proba = pipeline.predict_proba(x)
    assert proba.shape == (len(x), 2), "predict must see exactly the rows it was given"


def test_calibration_fixes_smote_distortion() -> None:
    x, y = frame(4000, 0.06, seed=1)
    xc, yc = frame(4000, 0.06, seed=2)
    xh, yh = frame(4000, 0.06, seed=3)
    pipeline = build_pipeline(NUMERIC, CATEGORICAL, ModelConfig(), plan_smote(y, True))
    pipeline.fit(prep(x), y)
    raw = pipeline.predict_proba(prep(xh))[:, 1]
    calibrated = calibrate(pipeline, prep(xc), yc, "isotonic").predict_proba(prep(xh))[:, 1]
    assert expected_calibration_error(yh, calibrated) < expected_calibration_error(yh, raw) / 3


def test_auto_calibration_picks_the_lower_held_out_log_loss() -> None:
    from sklearn.metrics import roc_auc_score

    x, y = frame(4000, 0.06, seed=1)
    xc, yc = frame(3000, 0.06, seed=2)
    xh, yh = frame(4000, 0.06, seed=3)
    pipeline = build_pipeline(NUMERIC, CATEGORICAL, ModelConfig(), plan_smote(y, True))
    pipeline.fit(prep(x), y)
    method, losses = choose_calibration(pipeline, prep(xc), yc)
    assert set(losses) == {"isotonic", "sigmoid"}
    assert method == min(losses, key=lambda m: (losses[m], m != "isotonic"))
    # Logistic truth, logistic model: SMOTE shifts its log-odds, which a sigmoid undoes exactly.
    assert method == "sigmoid"
    model = calibrate(pipeline, prep(xc), yc, "auto")
    assert model.method == method
    raw = pipeline.predict_proba(prep(xh))[:, 1]
    calibrated = model.predict_proba(prep(xh))[:, 1]
    assert roc_auc_score(yh, calibrated) == pytest.approx(roc_auc_score(yh, raw), abs=1e-12)
    assert expected_calibration_error(yh, calibrated) < expected_calibration_error(yh, raw) / 3
    assert ModelConfig(calibration="auto").calibration == "auto"
    with pytest.raises(ValueError, match="calibration"):
        ModelConfig(calibration="beta")


def test_cross_fitted_calibration_uses_every_row_and_averages_its_members() -> None:
    from sklearn.metrics import roc_auc_score

    x, y = frame(4000, 0.06, seed=1)
    xh, yh = frame(4000, 0.06, seed=3)
    config = ModelConfig(calibration="auto", calibration_folds=4)
    model = fit_cross_fitted(NUMERIC, CATEGORICAL, config, plan_smote(y, True), prep(x), y)
    members = member_pipelines(model)
    assert len(members) == 4 and model.method == "sigmoid"  # logistic truth: see the test above
    # One preprocessing, fitted on all the rows (it learns no labels), shared by the members.
    assert all(m.named_steps["preprocess"] is members[0].named_steps["preprocess"] for m in members)
    scaler = members[0].named_steps["preprocess"].named_transformers_["num"][-1]
    alone = build_pipeline(NUMERIC, CATEGORICAL, config, plan_smote(y, False)).named_steps["preprocess"]
    np.testing.assert_allclose(scaler.mean_, alone.fit(prep(x)).named_transformers_["num"][-1].mean_)
    # Each member's classifier saw a different 3/4 of the rows.
    coefs = [m.named_steps["model"].coef_.ravel() for m in members]
    assert all(not np.allclose(coefs[0], c) for c in coefs[1:])
    p = model.predict_proba(prep(xh))[:, 1]
    raw = uncalibrated_proba(model, prep(xh))
    np.testing.assert_allclose(raw, np.mean([m.predict_proba(prep(xh))[:, 1] for m in members], axis=0))
    assert expected_calibration_error(yh, p) < expected_calibration_error(yh, raw) / 3
    assert roc_auc_score(yh, p) > 0.8


def test_cross_fitted_linear_reasons_decompose_the_members_mean_logit() -> None:
    x, y = frame(3000, 0.1, seed=4)
    xp = prepare_frame(x, NUMERIC, CATEGORICAL)
    config = ModelConfig(use_smote=False, calibration="sigmoid", calibration_folds=3)
    model = fit_cross_fitted(NUMERIC, CATEGORICAL, config, plan_smote(y, False), xp, y)
    members = member_pipelines(model)
    spec = reason_spec(members[0], xp, NUMERIC + CATEGORICAL)
    contributions, names = linear_contributions(model, xp.head(50), spec)
    assert sorted(names) == sorted(NUMERIC + CATEGORICAL)
    mean_logit = np.mean([m.decision_function(xp.head(50)) for m in members], axis=0)
    residual = mean_logit - contributions.sum(axis=1)
    assert np.ptp(residual) < 1e-9, "contributions must sum to the mean logit up to a constant"


def test_cross_fitted_folds_keep_a_lead_together_and_need_enough_rows() -> None:
    from mlsys.model import _folds

    y = np.array([0, 1] * 60)
    leads = np.repeat(np.arange(40), 3)  # each lead in three weekly snapshots
    held_out = np.concatenate([rows for _, rows in _folds(y, leads, 4, 42)])
    assert np.array_equal(np.sort(held_out), np.arange(len(y))), "each row held out exactly once"
    for fit_rows, rows in _folds(y, leads, 4, 42):
        assert not set(leads[fit_rows]) & set(leads[rows])
    with pytest.raises(TrainingDataError, match="MLSYS_CALIBRATION_FOLDS"):
        _folds(np.array([1, 1, 0, 0, 0, 0]), None, 3, 42)
    with pytest.raises(ValueError, match="calibration_folds"):
        ModelConfig(calibration_folds=1)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        ({"roc_auc": 0.80, "ece": 0.01}, {"roc_auc": 0.78}, True),  # better
        ({"roc_auc": 0.76, "ece": 0.01}, {"roc_auc": 0.78}, False),  # worse
        ({"roc_auc": 0.782, "ece": 0.01}, {"roc_auc": 0.78}, False),  # within margin
        ({"roc_auc": 0.90, "ece": 0.20}, {"roc_auc": 0.78}, False),  # badly calibrated
        ({"roc_auc": 0.70, "ece": 0.01}, None, True),  # first model
        ({"roc_auc": 0.70, "ece": 0.20}, None, False),  # first model, uncalibrated
    ],
)
def test_promotion_rules(challenger: dict, champion: dict | None, promote: bool) -> None:
    decision = decide_promotion(challenger, champion, margin=0.005, max_ece=0.05)
    assert decision.promote is promote
    assert decision.reasons and all(isinstance(r, str) for r in decision.reasons)


def test_psi_identical_is_zero_and_shift_is_flagged() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20_000)
    assert psi_numeric(ref, ref.copy()) == pytest.approx(0.0, abs=1e-9)
    assert psi_numeric(ref, rng.normal(size=20_000)) < 0.02
    assert psi_numeric(ref, rng.normal(loc=1.0, size=20_000)) > 0.2
    cats = pd.Series(rng.choice(["a", "b", "c"], size=5000, p=[0.6, 0.3, 0.1]))
    assert psi_categorical(cats, cats.copy()) == pytest.approx(0.0, abs=1e-9)
    shifted = pd.Series(rng.choice(["a", "b", "c"], size=5000, p=[0.1, 0.3, 0.6]))
    assert psi_categorical(cats, shifted) > 0.2


def test_psi_counts_missing_values_as_their_own_bin() -> None:
    ref = np.arange(1000, dtype=float)
    cur = ref.copy()
    cur[:500] = np.nan
    assert psi_numeric(ref, cur) > 0.2


def test_metrics_on_a_known_case() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["precision_at_10pct"] == 1.0  # the top lead converted
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_band_cutoffs_are_ordered() -> None:
    cut = score_band_cutoffs(np.linspace(0, 1, 101))
    assert cut["A"] > cut["B"] > cut["C"]


def test_linear_reasons_are_exact_logit_decomposition() -> None:
    x, y = frame(3000, 0.1, seed=4)
    xp = prepare_frame(x, NUMERIC, CATEGORICAL)
    pipeline = build_pipeline(NUMERIC, CATEGORICAL, ModelConfig(use_smote=False), plan_smote(y, False))
    pipeline.fit(xp, y)
    spec = reason_spec(pipeline, xp, NUMERIC + CATEGORICAL)
    contributions, names = linear_contributions(pipeline, xp.head(50), spec)
    assert sorted(names) == sorted(NUMERIC + CATEGORICAL)
    logit = pipeline.decision_function(xp.head(50))
    estimator = pipeline.named_steps["model"]
    baseline = float(estimator.intercept_[0] + np.dot(estimator.coef_.ravel(), spec.reference))
    # contributions + the logit of the average lead == the model's logit, row by row
    np.testing.assert_allclose(contributions.sum(axis=1) + baseline, logit, rtol=1e-6, atol=1e-6)
    reasons = top_reasons(contributions, names)
    for row, rs in enumerate(reasons):
        assert len(rs) <= 3
        assert all(r["contribution"] > 0 for r in rs)
        values = [r["contribution"] for r in rs]
        assert values == sorted(values, reverse=True)
        if rs:
            assert rs[0]["contribution"] == pytest.approx(contributions[row].max())


def test_non_linear_model_has_no_linear_reasons() -> None:
    x, y = frame(500, 0.2)
    xp = prepare_frame(x, NUMERIC, CATEGORICAL)
    pipeline = build_pipeline(
        NUMERIC, CATEGORICAL, ModelConfig(estimator="hgb", hgb_max_iter=10), plan_smote(y, False)
    )
    pipeline.fit(xp, y)
    contributions, names = linear_contributions(pipeline, xp, ReasonSpec([], []))
    assert names == [] and contributions.shape == (len(xp), 0)
    assert top_reasons(contributions, names) == [[] for _ in range(len(xp))]


def test_prepare_frame_names_missing_columns() -> None:
    with pytest.raises(KeyError, match="x2"):
        prepare_frame(pd.DataFrame({"x1": [1.0], "c": ["a"]}), NUMERIC, CATEGORICAL)


def test_model_config_rejects_unknown_estimator() -> None:
    with pytest.raises(ValueError, match="estimator"):
        ModelConfig(estimator="svm")


def test_arrow_reasons_match_the_python_ones() -> None:
    from mlsys.model import top_reasons_arrow

    rng = np.random.default_rng(5)
    contributions = rng.normal(size=(500, 6))
    contributions[:10] = -1.0  # rows with nothing that raised the score
    names = [f"f{i}" for i in range(6)]
    arrow = top_reasons_arrow(contributions, names).to_pylist()
    assert arrow == top_reasons(contributions, names)
    assert arrow[:10] == [[] for _ in range(10)]
    assert top_reasons_arrow(np.empty((4, 0)), []).to_pylist() == [[], [], [], []]
