"""The lead-scoring estimator: preprocessing -> (SMOTE) -> classifier, then calibration.

SMOTE lives inside an ``imblearn`` pipeline, so it resamples only in ``fit``; predictions
go straight through preprocessing and the classifier. The published score is a probability,
so the SMOTE-distorted output is calibrated afterwards on a later snapshot SMOTE never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ESTIMATORS = ("logreg", "hgb")
SMOTE_MIN_RATIO = 2.0


class TrainingDataError(ValueError):
    """The training data cannot give a model (too few positives, one class only, ...)."""


@dataclass(frozen=True)
class ModelConfig:
    estimator: str = "logreg"
    use_smote: bool = True
    class_weight: str | None = None
    random_state: int = 42
    calibration: str = "isotonic"
    # Estimator hyper-parameters (overridden by `--tune`).
    logreg_c: float = 1.0
    hgb_learning_rate: float = 0.1
    hgb_max_leaf_nodes: int = 31
    hgb_max_iter: int = 200

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.calibration not in ("isotonic", "sigmoid"):
            raise ValueError(f"calibration must be isotonic or sigmoid, got {self.calibration!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")


@dataclass(frozen=True)
class SmotePlan:
    """Whether SMOTE runs, and with how many neighbours, for a given label vector."""

    apply: bool
    k_neighbors: int
    imbalance_ratio: float
    positives: int
    negatives: int


def plan_smote(y: np.ndarray | pd.Series, use_smote: bool) -> SmotePlan:
    y_arr = np.asarray(y)
    positives = int((y_arr == 1).sum())
    negatives = int((y_arr == 0).sum())
    if positives < 2 or negatives < 2:
        raise TrainingDataError(
            f"too few examples to train: {positives} positive and {negatives} negative rows "
            "(need at least 2 of each); widen the snapshot look-back or check the labels"
        )
    ratio = negatives / positives
    apply = use_smote and ratio > SMOTE_MIN_RATIO
    return SmotePlan(apply, min(5, positives - 1), ratio, positives, negatives)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def build_pipeline(numeric: list[str], categorical: list[str], config: ModelConfig, smote: SmotePlan) -> Any:
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric_steps = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        # Counts are heavy-tailed; a log keeps a linear model from chasing outliers.
        FunctionTransformer(_signed_log1p, feature_names_out="one-to-one"),
        StandardScaler(),
    )
    categorical_steps = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="__missing__", keep_empty_features=True),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False),
    )
    preprocess = ColumnTransformer(
        [("num", numeric_steps, numeric), ("cat", categorical_steps, categorical)],
        verbose_feature_names_out=True,
    )
    estimator: Any
    if config.estimator == "logreg":
        estimator = LogisticRegression(C=config.logreg_c, max_iter=2000, class_weight=config.class_weight)
    else:
        estimator = HistGradientBoostingClassifier(
            learning_rate=config.hgb_learning_rate,
            max_leaf_nodes=config.hgb_max_leaf_nodes,
            max_iter=config.hgb_max_iter,
            early_stopping=True,
            class_weight=config.class_weight,
            random_state=config.random_state,
        )
    steps: list[tuple[str, Any]] = [("preprocess", preprocess)]
    if smote.apply:
        steps.append(("smote", SMOTE(k_neighbors=smote.k_neighbors, random_state=config.random_state)))
    steps.append(("model", estimator))
    return Pipeline(steps)


def calibrate(fitted_pipeline: Any, x_calib: pd.DataFrame, y_calib: np.ndarray, method: str) -> Any:
    """Calibrate a fitted pipeline on data it was not fitted on (prefit, via FrozenEstimator)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted_pipeline), method=method)
    calibrated.fit(x_calib, y_calib)
    return calibrated


def base_pipeline(model: Any) -> Any:
    """The uncalibrated imblearn pipeline inside a calibrated model (or the model itself)."""
    inner = getattr(model, "estimator", None)
    if inner is not None and hasattr(inner, "estimator"):  # CalibratedClassifierCV(FrozenEstimator)
        return inner.estimator
    return model


@dataclass(frozen=True)
class ReasonSpec:
    """What `top_reasons` needs, kept in the model version's metadata.

    For a linear model the logit is sum_j coef_j * z_j, so coef_j * (z_j - mean_j) is the
    exact contribution of transformed column j relative to the average training lead;
    columns are summed back to the raw feature they came from (one-hot levels, missing
    indicators). Calibration is monotone, so what raises the logit raises the score.
    """

    groups: list[str]
    reference: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"groups": self.groups, "reference": self.reference}


def reason_spec(pipeline: Any, x_train: pd.DataFrame, features: list[str]) -> ReasonSpec:
    preprocess = pipeline.named_steps["preprocess"]
    names = list(preprocess.get_feature_names_out())
    groups = [_owner(name, features) for name in names]
    reference = np.asarray(preprocess.transform(x_train), dtype=float).mean(axis=0)
    return ReasonSpec(groups, [float(v) for v in reference])


def _owner(transformed_name: str, features: list[str]) -> str:
    """Map a ColumnTransformer output name back to the raw feature it encodes."""
    bare = transformed_name.split("__", 1)[-1]
    bare = bare.removeprefix("missingindicator_")
    # Longest match first: `n_email_open_7d` must not be claimed by a shorter prefix.
    for feature in sorted(features, key=len, reverse=True):
        if bare == feature or bare.startswith(feature + "_"):
            return feature
    return bare


def linear_contributions(model: Any, x: pd.DataFrame, spec: ReasonSpec) -> tuple[np.ndarray, list[str]]:
    """Per-raw-feature logit contributions, shape (rows, features), or empty for non-linear."""
    pipeline = base_pipeline(model)
    estimator = pipeline.named_steps["model"]
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        return np.empty((len(x), 0)), []
    z = np.asarray(pipeline.named_steps["preprocess"].transform(x), dtype=float)
    per_column = (z - np.asarray(spec.reference)) * np.asarray(coef).ravel()
    owners = sorted(set(spec.groups))
    index = {name: i for i, name in enumerate(owners)}
    membership = np.zeros((len(spec.groups), len(owners)))
    for col, owner in enumerate(spec.groups):
        membership[col, index[owner]] = 1.0
    return per_column @ membership, owners


def top_reasons(contributions: np.ndarray, names: list[str], k: int = 3) -> list[list[dict[str, Any]]]:
    """Up to k features that raised each row's score most (positive contributions only)."""
    if contributions.size == 0:
        return [[] for _ in range(contributions.shape[0])]
    k = min(k, contributions.shape[1])
    order = np.argsort(-contributions, axis=1)[:, :k]
    out: list[list[dict[str, Any]]] = []
    for row, idx in enumerate(order):
        out.append(
            [
                {"feature": names[j], "contribution": float(contributions[row, j])}
                for j in idx
                if contributions[row, j] > 0
            ]
        )
    return out


def prepare_frame(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input frame: floats for numeric features, objects with NaN for missing
    categories (one representation at training and at scoring time)."""
    missing = [c for c in [*numeric, *categorical] if c not in df.columns]
    if missing:
        raise KeyError(f"feature columns missing from the data: {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    for column in numeric:
        out[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    for column in categorical:
        values = df[column].astype(object)
        out[column] = values.where(values.notna(), np.nan)
    return out
