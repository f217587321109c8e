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

from mlsys.progress import Progress

ESTIMATORS = ("logreg", "hgb")
SMOTE_MIN_RATIO = 2.0
# "auto" picks isotonic or sigmoid per model by cross-validated log-loss on the calibration
# data (`choose_calibration`).
CALIBRATIONS = ("isotonic", "sigmoid", "auto")
# Folds of `choose_calibration`'s log-loss comparison.
CALIBRATION_FOLDS = 5


class TrainingDataError(ValueError):
    """The training data cannot give a model (too few positives, one class only, ...)."""


@dataclass(frozen=True)
class ModelConfig:
    estimator: str = "logreg"
    use_smote: bool = True
    class_weight: str | None = None
    random_state: int = 42
    calibration: str = "isotonic"
    # 0: fit on the training rows, calibrate on the separate calibration rows (`calibrate`).
    # k >= 2: cross-fitted calibration on the training and calibration rows pooled
    # (`fit_cross_fitted`): k models, each calibrated on the fold it did not see, averaged.
    calibration_folds: int = 0
    # Estimator hyper-parameters (overridden by `--tune`).
    logreg_c: float = 1.0
    hgb_learning_rate: float = 0.1
    hgb_max_leaf_nodes: int = 31
    hgb_max_iter: int = 200

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if self.calibration_folds == 1 or self.calibration_folds < 0:
            raise ValueError(
                "calibration_folds (MLSYS_CALIBRATION_FOLDS) must be 0 (a separate calibration "
                f"set) or at least 2, got {self.calibration_folds}"
            )


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


def calibrate(
    fitted_pipeline: Any,
    x_calib: pd.DataFrame,
    y_calib: np.ndarray,
    method: str,
    random_state: int = 42,
    sample_weight: np.ndarray | None = None,
) -> Any:
    """Calibrate a fitted pipeline on data it was not fitted on (prefit, via FrozenEstimator).
    ``method="auto"``: the one `choose_calibration` picks, fitted on all of the calibration
    data (the result's ``method`` says which)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    if method == "auto":
        method, _ = choose_calibration(fitted_pipeline, x_calib, y_calib, random_state)
    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted_pipeline), method=method)
    calibrated.fit(x_calib, y_calib, sample_weight=sample_weight)
    return calibrated


def choose_calibration(
    fitted_pipeline: Any, x_calib: pd.DataFrame, y_calib: np.ndarray, random_state: int = 42
) -> tuple[str, dict[str, float]]:
    """Isotonic or sigmoid, whichever has the lower log-loss on held-out calibration rows.

    Stratified k-fold over the calibration data: each method is fitted on k-1 folds (the
    model frozen, as in `calibrate`) and scored on the remaining one. Isotonic regression is
    the more flexible map, but on a few thousand rows its steps tie scores the model ranked
    apart, which costs ranking; a sigmoid is strictly monotone and keeps the model's order.
    Returns the method (isotonic on a tie) and the mean held-out log-loss of each.
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y_calib)
    folds = min(CALIBRATION_FOLDS, int(np.bincount(y.astype(int), minlength=2).min()))
    if folds < 2:
        return "isotonic", {}
    split = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    losses: dict[str, list[float]] = {"isotonic": [], "sigmoid": []}
    for fit_rows, held_out in split.split(np.zeros(len(y)), y):
        for method, values in losses.items():
            part = calibrate(fitted_pipeline, x_calib.iloc[fit_rows], y[fit_rows], method)
            p = np.clip(part.predict_proba(x_calib.iloc[held_out])[:, 1], 1e-7, 1 - 1e-7)
            values.append(float(log_loss(y[held_out], p, labels=[0, 1])))
    mean = {method: float(np.mean(values)) for method, values in losses.items()}
    return ("sigmoid" if mean["sigmoid"] < mean["isotonic"] else "isotonic"), mean


@dataclass(frozen=True)
class FittedModel:
    """What `fit_calibrated` returns: the published model, the SMOTE plan of its fit, and the
    model-input rows its pipeline(s) were fitted on (the reasons' reference)."""

    model: Any
    smote: SmotePlan
    x_fitted: pd.DataFrame


def fit_weights(config: ModelConfig, smote: SmotePlan, weights: np.ndarray | None) -> np.ndarray | None:
    """The row weights the classifier gets: ``weights`` (which undo a sampling of the negatives,
    `mlsys.train.TrainSampling`) only when nothing else sets the class balance. SMOTE makes the
    classes equal whatever share of negatives was read, and class weights make their totals
    equal: weighting the sampled negatives back would then undo that, not the sampling."""
    if weights is None or smote.apply or config.class_weight is not None:
        return None
    return np.asarray(weights, dtype=float)


def _fit_params(weights: np.ndarray | None) -> dict[str, Any]:
    return {} if weights is None else {"model__sample_weight": weights}


def _fitting(config: ModelConfig, smote: SmotePlan, rows: int) -> Progress:
    what = config.estimator + (" + SMOTE" if smote.apply else "")
    return Progress(f"fitting {what} on {rows:,} rows").start_heartbeat()


def fit_calibrated(
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    train: pd.DataFrame,
    calibration: pd.DataFrame,
    train_weights: np.ndarray | None = None,
) -> FittedModel:
    """The published model from a training and a calibration frame (``label``, ``lead_id`` and
    the features): fitted on ``train`` and calibrated on ``calibration`` (`calibrate`), or with
    ``config.calibration_folds`` cross-fitted on both pooled (`fit_cross_fitted`, a lead's
    rows in one fold). `mlsys.train.train` and the benchmarks fit through this one path.
    ``train_weights``: per training row, from a sampling of the negatives (`fit_weights` says
    when they are used); the calibration rows are a uniform sample and weigh 1."""
    if config.calibration_folds:
        pooled = pd.concat([train, calibration], ignore_index=True)
        x, y = prepare_frame(pooled, numeric, categorical), pooled["label"].to_numpy()
        smote = plan_smote(y, config.use_smote)
        weights = None
        if train_weights is not None:
            weights = np.concatenate([np.asarray(train_weights, dtype=float), np.ones(len(calibration))])
        with _fitting(config, smote, len(x)):
            model = fit_cross_fitted(
                numeric, categorical, config, smote, x, y, pooled["lead_id"].to_numpy(), weights
            )
        return FittedModel(model, smote, x)
    x, y = prepare_frame(train, numeric, categorical), train["label"].to_numpy()
    smote = plan_smote(y, config.use_smote)
    pipeline = build_pipeline(numeric, categorical, config, smote)
    with _fitting(config, smote, len(x)):
        pipeline.fit(x, y, **_fit_params(fit_weights(config, smote, train_weights)))
    x_calib, y_calib = prepare_frame(calibration, numeric, categorical), calibration["label"].to_numpy()
    with Progress(f"calibrating ({config.calibration}) on {len(x_calib):,} rows").start_heartbeat():
        model = calibrate(pipeline, x_calib, y_calib, config.calibration, config.random_state)
    return FittedModel(model, smote, x)


def fit_cross_fitted(
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    smote: SmotePlan,
    x: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Any:
    """Cross-fitted calibration: k pipelines, each fitted (SMOTE and classifier) on k-1 folds
    and calibrated on the fold it did not see; the published score is their mean.

    Against `calibrate` on a separate calibration set this uses every labelled row for both
    fitting and calibrating, and the average of k models smooths the noise SMOTE's random
    synthetic rows put into each one (scikit-learn's ``CalibratedClassifierCV(ensemble=True)``,
    done by hand so that "auto" can choose the method and the members share one
    preprocessing). Preprocessing learns no labels (medians, scales, category lists), so it
    is fitted once on all the rows and shared: the nightly path transforms a batch once and
    the explainer sees one column space. Folds keep each ``groups`` value (a lead seen in
    several snapshots) on one side. Returns a ``CalibratedClassifierCV`` whose
    ``calibrated_classifiers_`` hold the k members; its ``method`` is the one used.
    """
    from sklearn.base import clone

    folds = config.calibration_folds
    y = np.asarray(y)
    template = build_pipeline(numeric, categorical, config, smote)
    preprocess = template.named_steps["preprocess"].fit(x)
    z = preprocess.transform(x)
    members: list[tuple[Any, np.ndarray]] = []
    fit_weight = fit_weights(config, smote, weights)
    for fit_rows, held_out in _folds(y, groups, folds, config.random_state):
        params = _fit_params(None if fit_weight is None else fit_weight[fit_rows])
        rest = clone(template)[1:].fit(z[fit_rows], y[fit_rows], **params)
        members.append((type(template)([("preprocess", preprocess), *rest.steps]), held_out))
    method = config.calibration
    if method == "auto":
        chosen = [choose_calibration(m, x.iloc[rows], y[rows], config.random_state)[1] for m, rows in members]
        losses = {k: float(np.mean([c[k] for c in chosen if c])) for k in ("isotonic", "sigmoid")}
        method = "sigmoid" if losses["sigmoid"] < losses["isotonic"] else "isotonic"
    # A held-out fold mixes sampled training rows with calibration rows: weighted back, it
    # calibrates to the population's rate (weights None: every row counts once).
    parts = [
        calibrate(
            m, x.iloc[rows], y[rows], method, config.random_state, None if weights is None else weights[rows]
        )
        for m, rows in members
    ]
    model = parts[0]
    model.calibrated_classifiers_ = [c for part in parts for c in part.calibrated_classifiers_]
    return model


def _folds(y: np.ndarray, groups: np.ndarray | None, folds: int, random_state: int) -> list[Any]:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    smallest = int(np.bincount(y.astype(int), minlength=2).min())
    if smallest < folds:
        raise TrainingDataError(
            f"cross-fitted calibration with {folds} folds needs at least {folds} rows of each "
            f"class, found {smallest}; lower MLSYS_CALIBRATION_FOLDS or use 0"
        )
    rows = np.zeros(len(y))
    if groups is None or len(np.unique(groups)) == len(groups):
        # One row per lead (MLSYS_SPLIT=random): plain stratified folds, much faster.
        return list(StratifiedKFold(folds, shuffle=True, random_state=random_state).split(rows, y))
    return list(StratifiedGroupKFold(folds, shuffle=True, random_state=random_state).split(rows, y, groups))


def member_pipelines(model: Any) -> list[Any]:
    """The uncalibrated imblearn pipelines inside a calibrated model: one for `calibrate`,
    k for `fit_cross_fitted`; ``[model]`` for anything else."""
    parts = getattr(model, "calibrated_classifiers_", None)
    if not parts:
        return [model]
    pipelines = []
    for part in parts:
        inner = part.estimator
        pipelines.append(getattr(inner, "estimator", inner))  # FrozenEstimator -> the pipeline
    return pipelines


def base_pipeline(model: Any) -> Any:
    """The (first) uncalibrated imblearn pipeline inside a calibrated model."""
    return member_pipelines(model)[0]


def uncalibrated_proba(model: Any, x: pd.DataFrame) -> np.ndarray:
    """P(converted) before calibration: the mean of the members' raw outputs."""
    members = member_pipelines(model)
    return np.mean([m.predict_proba(x)[:, 1] for m in members], axis=0)


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
    """Per-raw-feature logit contributions, shape (rows, features), or empty for non-linear.
    Several members (`fit_cross_fitted`): the mean of theirs."""
    members = model if isinstance(model, list) else member_pipelines(model)
    coefs = [getattr(m.named_steps["model"], "coef_", None) for m in members]
    if any(coef is None for coef in coefs):
        return np.empty((len(x), 0)), []
    owners = sorted(set(spec.groups))
    group = np.array([owners.index(g) for g in spec.groups])
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(len(owners)))
    total = np.zeros((len(x), len(owners)), dtype=np.float64)
    for preprocess, coef in _by_preprocess(members, [np.asarray(c, dtype=float).ravel() for c in coefs]):
        z = np.asarray(preprocess.transform(x), dtype=float)
        # One permuted copy, then in-place arithmetic: batches are 100k rows x ~100 columns.
        # Each feature's columns are summed with reduceat rather than a matrix product: BLAS
        # blocking depends on the batch size, and a lead's reasons must not depend on its batch.
        per_column = z[:, order]
        per_column -= np.asarray(spec.reference, dtype=float)[order]
        per_column *= coef[order]
        total += np.add.reduceat(per_column, starts, axis=1)
    return total / len(members), owners


def _by_preprocess(members: list[Any], coefs: list[np.ndarray]) -> list[tuple[Any, np.ndarray]]:
    """(preprocess, summed coefficients) per distinct preprocessing object: members that share
    one (`fit_cross_fitted`) see the same columns, so their contributions add up in one pass."""
    shared: dict[int, tuple[Any, np.ndarray]] = {}
    for member, coef in zip(members, coefs, strict=True):
        preprocess = member.named_steps["preprocess"]
        seen = shared.get(id(preprocess))
        shared[id(preprocess)] = (preprocess, coef if seen is None else seen[1] + coef)
    return list(shared.values())


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


def top_reasons_arrow(contributions: np.ndarray, names: list[str], k: int = 3) -> Any:
    """`top_reasons` as an Arrow list<struct<feature, contribution>> array, vectorised: the
    nightly path writes millions of rows, and a Python dict per reason costs more than the
    model itself. Same content as `top_reasons` (ties aside)."""
    import pyarrow as pa

    reason_type = pa.list_(pa.struct([("feature", pa.string()), ("contribution", pa.float64())]))
    n = contributions.shape[0]
    if contributions.size == 0:
        empty = pa.StructArray.from_arrays(
            [pa.array([], pa.string()), pa.array([], pa.float64())], names=["feature", "contribution"]
        )
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), empty, type=reason_type)
    k = min(k, contributions.shape[1])
    idx = np.argpartition(-contributions, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(contributions, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    keep = vals > 0  # sorted descending, so the kept reasons are a prefix of each row
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    features = pa.DictionaryArray.from_arrays(
        pa.array(idx[keep].astype(np.int32)), pa.array(names, pa.string())
    ).cast(pa.string())
    struct = pa.StructArray.from_arrays(
        [features, pa.array(vals[keep], pa.float64())], names=["feature", "contribution"]
    )
    return pa.ListArray.from_arrays(pa.array(offsets), struct, type=reason_type)


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


class Explainer:
    """Per-lead feature contributions to the model's logit, for `top_reasons`.

    Linear models: exact, coef_j * (z_j - mean_j). Gradient-boosted trees: Saabas path
    attribution (the treeinterpreter method): each tree's output is the change in expected
    value along the decision path, credited to the feature split on at each step, so the
    contributions of a row sum exactly to its raw score minus the trees' expected value.
    A tree's contribution vector depends only on the leaf a row lands in, so it is
    precomputed per leaf once and scoring adds one table lookup per tree.
    """

    def __init__(self, model: Any, spec: ReasonSpec) -> None:
        self.spec = spec
        # A list: the member pipelines themselves (the champion's split scoring passes them).
        self.members = model if isinstance(model, list) else member_pipelines(model)
        self.names = sorted(set(spec.groups))
        index = {name: i for i, name in enumerate(self.names)}
        self.group_of_column = np.array([index[g] for g in spec.groups], dtype=np.int64)
        estimators = [m.named_steps["model"] for m in self.members]
        self.kind = "linear" if all(hasattr(e, "coef_") for e in estimators) else "none"
        # (preprocess, tree leaf finder, per-leaf contributions, bitsets) of every member's trees
        self._trees: list[tuple[Any, Any, np.ndarray, Any, Any]] = []
        if all(hasattr(e, "_predictors") for e in estimators):
            self.kind = "trees"
            for member in self.members:
                self._prepare_trees(member, weight=1.0 / len(self.members))

    def _prepare_trees(self, member: Any, weight: float) -> None:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        est = member.named_steps["model"]
        known_cats, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
        n_groups = len(self.names)
        for per_class in est._predictors:
            predictor = per_class[0]  # binary classification: one tree per iteration
            nodes = predictor.nodes
            expected = nodes["value"].astype(float).copy()
            # Children always come after their parent in the node array: fill bottom-up.
            for i in range(len(nodes) - 1, -1, -1):
                if not nodes["is_leaf"][i]:
                    left, right = nodes["left"][i], nodes["right"][i]
                    cl, cr = nodes["count"][left], nodes["count"][right]
                    expected[i] = (cl * expected[left] + cr * expected[right]) / max(1, cl + cr)
            table = np.zeros((len(nodes), n_groups), dtype=np.float64)
            for i in range(len(nodes)):
                if nodes["is_leaf"][i]:
                    continue
                group = self.group_of_column[nodes["feature_idx"][i]]
                for child in (nodes["left"][i], nodes["right"][i]):
                    table[child] = table[i]
                    table[child, group] += expected[child] - expected[i]
            if weight != 1.0:
                table *= weight  # the ensemble's mean of the members' raw scores
            leaf_ids = nodes.copy()
            leaf_ids["value"] = np.arange(len(nodes), dtype=float)
            finder = TreePredictor(
                leaf_ids, predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets
            )
            self._trees.append((member.named_steps["preprocess"], finder, table, known_cats, f_idx_map))

    def contributions(self, x: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        if self.kind == "linear":
            return linear_contributions(self.members, x, self.spec)
        if self.kind == "none":
            return np.empty((len(x), 0)), []
        transformed: dict[int, np.ndarray] = {}  # members sharing a preprocess transform once
        total = np.zeros((len(x), len(self.names)), dtype=np.float64)
        for preprocess, finder, table, known_cats, f_idx_map in self._trees:
            z = transformed.get(id(preprocess))
            if z is None:
                z = np.ascontiguousarray(preprocess.transform(x), dtype=np.float64)
                transformed[id(preprocess)] = z
            leaves = finder.predict(z, known_cats, f_idx_map, 1).astype(np.int64)
            total += table[leaves]
        return total, self.names

    def top_reasons(self, x: pd.DataFrame, k: int = 3) -> list[list[dict[str, Any]]]:
        contributions, names = self.contributions(x)
        return top_reasons(contributions, names, k)

    def top_reasons_arrow(self, x: pd.DataFrame, k: int = 3) -> Any:
        contributions, names = self.contributions(x)
        return top_reasons_arrow(contributions, names, k)
