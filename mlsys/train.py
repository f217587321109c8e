"""Train a challenger on the training snapshots, evaluate it honestly, register it in MLflow
and promote it to champion when it beats the current one.

Split by time by default (MLSYS_SPLIT=time), never at random across snapshot dates: the most
recent snapshot is the holdout, the one before it calibrates, the older ones train. The same
lead appears in many snapshots, so a random split would leak its future into training.
MLSYS_SPLIT=random is for sources whose snapshots hold each lead once (a contact with a
one-off outcome): a stratified random split, refused when a lead appears twice.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsys import metrics, registry
from mlsys.catalog import FeatureCatalog, load_catalog
from mlsys.evaluate import classification_metrics, save_plots, score_band_cutoffs
from mlsys.model import (
    Explainer,
    ModelConfig,
    SmotePlan,
    TrainingDataError,
    base_pipeline,
    build_pipeline,
    fit_calibrated,
    fit_weights,
    plan_smote,
    prepare_frame,
    reason_spec,
    uncalibrated_proba,
)
from mlsys.progress import Progress
from mlsys.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

MAX_TRAIN_ROWS = 400_000
MAX_HOLDOUT_ROWS = 200_000
REFERENCE_ROWS = 20_000


@dataclass(frozen=True)
class TrainSampling:
    """How the training rows were read: every row, or (more than ``max_train_rows``) a sample
    that keeps up to half of them positive, the negatives at a lower rate. ``negative_weight``
    (the positives' rate over the negatives') makes the sampled negatives count for the ones
    left out, so a fit that does not rebalance the classes itself learns the true base rate."""

    available: int = 0
    positives: int = 0
    positive_rate: float = 1.0
    negative_rate: float = 1.0

    @property
    def negative_weight(self) -> float:
        return self.positive_rate / self.negative_rate if self.negative_rate else 1.0

    @property
    def sampled(self) -> bool:
        return self.positive_rate < 1.0 or self.negative_rate < 1.0

    def describe(self) -> str:
        if not self.sampled:
            return f"all {self.available:,} rows"
        return (
            f"{self.positive_rate:.1%} of {self.positives:,} positives and {self.negative_rate:.1%} of "
            f"{self.available - self.positives:,} negatives (negatives weighted {self.negative_weight:.2f})"
        )


@dataclass
class Splits:
    train: pd.DataFrame
    calibration: pd.DataFrame
    holdout: pd.DataFrame
    train_dates: list[str]
    calibration_date: str
    holdout_date: str
    sampling: TrainSampling = field(default_factory=TrainSampling)

    def train_weights(self) -> np.ndarray | None:
        """Per-row weights that undo the negative sampling (None when nothing was sampled)."""
        if not self.sampling.sampled:
            return None
        labels = self.train["label"].to_numpy()
        return np.where(labels == 1, 1.0, self.sampling.negative_weight)


@dataclass
class PromotionDecision:
    promote: bool
    reasons: list[str]


@dataclass
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float]
    decision: PromotionDecision
    smote: SmotePlan
    champion_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    model_name: str = "lead_scoring"

    def summary(self) -> str:
        verdict = "promoted to champion" if self.decision.promote else "kept as challenger"
        return (
            f"{self.model_name} version {self.version} (run {self.run_id}): ROC AUC "
            f"{self.metrics['roc_auc']:.3f}, PR AUC {self.metrics['pr_auc']:.3f}, ECE "
            f"{self.metrics['ece']:.3f}; {verdict}: {'; '.join(self.decision.reasons)}"
        )


SPLITS = ("time", "random")
RANDOM_HOLDOUT_SHARE = 0.2  # of all rows; the calibration set is this share of the rest


# What the DuckDB that reads the snapshots may hold: its top-N samples spill beyond this, so the
# training process stays inside its memory budget however many snapshot rows there are.
READ_MEMORY_LIMIT = "1GB"


def load_splits(
    path: Path,
    catalog: FeatureCatalog,
    seed: int,
    split: str = "time",
    max_train_rows: int = MAX_TRAIN_ROWS,
) -> Splits:
    """Read the snapshots with DuckDB, sampling each split to a bounded size.

    The calibration and holdout snapshots are uniform samples (their class rates are the
    population's, so calibration and its check stay honest). The training rows, when there are
    more than ``max_train_rows``, keep up to half positives and sample the negatives at a lower
    rate (`TrainSampling`; `Splits.train_weights` weights them back)."""
    import duckdb

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not path.exists():
        raise FileNotFoundError(f"training snapshots not found at {path}: build them first")
    con = duckdb.connect(config={"memory_limit": READ_MEMORY_LIMIT})
    source = f"read_parquet('{_sql_path(path)}')"
    if split == "random":
        return _random_splits(con, source, catalog, seed, path)
    dates = [str(d) for (d,) in con.execute(f"select distinct as_of from {source} order by 1").fetchall()]  # noqa: S608 - our path, quotes escaped by _sql_path
    if len(dates) < 3:
        raise TrainingDataError(
            f"need at least 3 weekly snapshots (train, calibration, holdout), found {len(dates)} "
            f"in {path}; raise MLSYS_SNAPSHOT_WEEKS or land more history"
        )
    cols = ", ".join(["lead_id", "as_of", *catalog.columns, "label"])

    def read(where: str, params: list[Any], limit: int) -> pd.DataFrame:
        # A deterministic pseudo-random sample (hash order) bounds memory on big CRMs.
        order = f"hash(lead_id, as_of, {int(seed)})"
        query = f"select {cols} from {source} where {where} order by {order} limit {int(limit)}"  # noqa: S608 - catalogue columns, bound values, ints
        return con.execute(query, params).df()

    holdout = read("as_of = ?", [dates[-1]], MAX_HOLDOUT_ROWS)
    calibration = read("as_of = ?", [dates[-2]], MAX_HOLDOUT_ROWS)
    by_label = f"select label, count(*) from {source} where as_of < ? group by label"  # noqa: S608 - our path, quotes escaped by _sql_path
    counts = dict(con.execute(by_label, [dates[-2]]).fetchall())
    sampling = plan_sampling(int(counts.get(1, 0)), int(counts.get(0, 0)), max_train_rows)
    if sampling.sampled:
        kept_negatives = round(sampling.negative_rate * (sampling.available - sampling.positives))
        train = pd.concat(
            [
                read(
                    "as_of < ? and label = 1", [dates[-2]], round(sampling.positive_rate * sampling.positives)
                ),
                read("as_of < ? and label = 0", [dates[-2]], kept_negatives),
            ],
            ignore_index=True,
        )
    else:
        train = read("as_of < ?", [dates[-2]], max_train_rows)
    if sampling.sampled:
        log.info("training rows: %s", sampling.describe())
    return Splits(train, calibration, holdout, dates[:-2], dates[-2], dates[-1], sampling)


def plan_sampling(positives: int, negatives: int, max_rows: int) -> TrainSampling:
    """Every row when they fit in ``max_rows``; otherwise positives up to half of ``max_rows``
    and the negatives filling the rest (so the negatives' rate is never above the positives')."""
    available = positives + negatives
    if available <= max_rows:
        return TrainSampling(available, positives)
    positive_rate = min(1.0, (max_rows / 2) / positives) if positives else 1.0
    negative_rate = min(1.0, (max_rows - positive_rate * positives) / negatives) if negatives else 1.0
    return TrainSampling(available, positives, positive_rate, negative_rate)


def _random_splits(con: Any, source: str, catalog: FeatureCatalog, seed: int, path: Path) -> Splits:
    """Stratified random holdout (RANDOM_HOLDOUT_SHARE of the rows), then a stratified
    calibration set of the same share of the rest, both with ``seed``: valid only when every
    lead is in the snapshots once, which is checked."""
    from sklearn.model_selection import train_test_split

    cols = ", ".join(["lead_id", "as_of", *catalog.columns, "label"])
    limit = MAX_TRAIN_ROWS + 2 * MAX_HOLDOUT_ROWS
    query = f"select {cols} from {source} order by hash(lead_id, as_of, ?) limit ?"  # noqa: S608 - catalogue columns, our path
    frame = con.execute(query, [int(seed), int(limit)]).df()
    frame = frame.sort_values(["lead_id", "as_of"], kind="stable").reset_index(drop=True)
    if frame["lead_id"].duplicated().any():
        raise TrainingDataError(
            f"MLSYS_SPLIT=random needs each lead once in the training snapshots, but {path} holds "
            "some leads in several snapshots (a random split would leak their future): use "
            "MLSYS_SPLIT=time"
        )
    if frame["label"].value_counts().min() < 5 or frame["label"].nunique() < 2:
        raise TrainingDataError(f"too few rows of a class in {path} for a stratified random split")
    rest, holdout = train_test_split(
        frame, test_size=RANDOM_HOLDOUT_SHARE, stratify=frame["label"], random_state=seed
    )
    train, calibration = train_test_split(
        rest, test_size=RANDOM_HOLDOUT_SHARE, stratify=rest["label"], random_state=seed
    )
    dates = sorted(str(d) for d in frame["as_of"].unique())
    share = f"{RANDOM_HOLDOUT_SHARE:.0%}"
    return Splits(
        train.reset_index(drop=True),
        calibration.reset_index(drop=True),
        holdout.reset_index(drop=True),
        [dates[0], dates[-1]],
        f"stratified random {share} of the rest (seed {seed})",
        f"stratified random {share} of {dates[0]}..{dates[-1]} (seed {seed})",
    )


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def decide_promotion(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    margin: float,
    max_ece: float,
) -> PromotionDecision:
    """Promote when the challenger is calibrated and beats the champion's ROC AUC on the
    same holdout by at least `margin`; the first model is always promoted if calibrated."""
    if challenger["ece"] > max_ece:
        return PromotionDecision(
            False, [f"calibration error {challenger['ece']:.4f} above the bound {max_ece:.4f}"]
        )
    if champion is None:
        return PromotionDecision(True, ["no champion yet: the first calibrated model becomes champion"])
    gain = challenger["roc_auc"] - champion["roc_auc"]
    detail = (
        f"ROC AUC {challenger['roc_auc']:.4f} vs champion {champion['roc_auc']:.4f} on the same "
        f"holdout (gain {gain:+.4f}, margin {margin:.4f})"
    )
    if gain >= margin:
        return PromotionDecision(True, [detail])
    return PromotionDecision(False, [detail])


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, fixed arguments
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tune(
    splits: Splits, catalog: FeatureCatalog, config: ModelConfig, smote: SmotePlan, n_iter: int = 6
) -> ModelConfig:
    """Randomized search with SMOTE inside each fold (it is a pipeline step), folds grouped
    by lead so a lead's snapshots never sit on both sides."""
    from dataclasses import replace

    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, ParameterSampler, cross_val_score

    train = splits.train
    if len(train) > 60_000:
        train = train.sample(60_000, random_state=config.random_state)
    x = prepare_frame(train, list(catalog.numeric), list(catalog.categorical))
    y = train["label"].to_numpy()
    fold_smote = plan_smote(y, config.use_smote)
    pipeline = build_pipeline(list(catalog.numeric), list(catalog.categorical), config, fold_smote)
    if config.estimator == "logreg":
        space: dict[str, list[Any]] = {"model__C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}
    else:
        space = {
            "model__learning_rate": [0.03, 0.05, 0.1, 0.2],
            "model__max_leaf_nodes": [15, 31, 63],
            "model__max_iter": [100, 200, 400],
        }
    candidates = list(
        ParameterSampler(
            space,
            n_iter=min(n_iter, int(np.prod([len(v) for v in space.values()]))),
            random_state=config.random_state,
        )
    )
    groups = train["lead_id"].to_numpy()
    best: dict[str, Any] = {}
    best_score = -np.inf
    # RandomizedSearchCV's search, one candidate at a time so each one's result is reported.
    what = f"tuning {config.estimator} (3 folds each)"
    with Progress(what, len(candidates), unit="candidates").start_heartbeat() as progress:
        for params in candidates:
            scores = cross_val_score(
                clone(pipeline).set_params(**params),
                x,
                y,
                groups=groups,
                cv=GroupKFold(n_splits=3),
                scoring="roc_auc",
                n_jobs=1,
            )
            score = float(np.mean(scores))
            log.info("tuning: %s CV ROC AUC %.4f", params, score)
            if score > best_score:
                best, best_score = params, score
            progress.advance(1, detail=f"best CV ROC AUC {best_score:.4f}")
    log.info("tuning: best %s (CV ROC AUC %.4f)", best, best_score)
    if config.estimator == "logreg":
        return replace(config, logreg_c=float(best["model__C"]))
    return replace(
        config,
        hgb_learning_rate=float(best["model__learning_rate"]),
        hgb_max_leaf_nodes=int(best["model__max_leaf_nodes"]),
        hgb_max_iter=int(best["model__max_iter"]),
    )


def train(
    as_of: date,
    settings: Settings,
    config: ModelConfig | None = None,
    *,
    do_tune: bool = False,
    trigger: str = "manual",
) -> TrainResult:
    """Fit, calibrate, evaluate, log, register and (maybe) promote a challenger."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    config = config or ModelConfig()
    catalog = load_catalog("training_snapshots", settings)
    numeric, categorical = list(catalog.numeric), list(catalog.categorical)
    splits = load_splits(
        settings.training_snapshots_path(as_of),
        catalog,
        config.random_state,
        settings.training_split,
        settings.max_train_rows,
    )
    if do_tune:
        config = tune(splits, catalog, config, plan_smote(splits.train["label"], config.use_smote))

    x_hold = prepare_frame(splits.holdout, numeric, categorical)
    y_hold = splits.holdout["label"].to_numpy()
    if splits.calibration["label"].nunique() < 2 or len(np.unique(y_hold)) < 2:
        raise TrainingDataError(
            "the calibration or holdout snapshot has a single class; need more leads or history"
        )

    fitted = fit_calibrated(
        numeric, categorical, config, splits.train, splits.calibration, splits.train_weights()
    )
    model, smote, x_train = fitted.model, fitted.smote, fitted.x_fitted
    pipeline = base_pipeline(model)
    raw_hold = uncalibrated_proba(model, x_hold)
    p_hold = model.predict_proba(x_hold)[:, 1]

    scores = classification_metrics(y_hold, p_hold)
    uncalibrated = classification_metrics(y_hold, raw_hold)
    scores["ece_before_calibration"] = uncalibrated["ece"]
    scores["brier_before_calibration"] = uncalibrated["brier"]
    bands = score_band_cutoffs(p_hold)
    reasons = reason_spec(pipeline, x_train, numeric + categorical)

    champion = registry.alias_version(settings, registry.CHAMPION)
    champion_scores = None
    if champion is not None:
        champion_scores = _champion_metrics(settings, str(champion.version), splits.holdout)
    decision = decide_promotion(
        scores,
        champion_scores,
        margin=settings.promotion_margin,
        max_ece=settings.max_calibration_error,
    )

    registry.configure(settings)
    params: dict[str, Any] = {
        **{f"model.{k}": v for k, v in asdict(config).items()},
        "trigger": trigger,
        "as_of": as_of.isoformat(),
        "horizon_days": settings.horizon_days,
        "snapshot_weeks": settings.snapshot_weeks,
        "split": settings.training_split,
        "train_dates": f"{splits.train_dates[0]}..{splits.train_dates[-1]}",
        "calibration_date": (
            f"cross-fitted: {config.calibration_folds} folds of the training rows"
            if config.calibration_folds
            else splits.calibration_date
        ),
        "holdout_date": splits.holdout_date,
        "rows_train": len(x_train),
        # Cross-fitted: every training row also calibrates (the members that did not fit it).
        "rows_calibration": len(x_train) if config.calibration_folds else len(splits.calibration),
        "rows_holdout": len(splits.holdout),
        "rows_train_available": splits.sampling.available,
        "train_sampling": splits.sampling.describe(),
        "train_negative_weight": round(splits.sampling.negative_weight, 6),
        "train_weights_in_fit": fit_weights(config, smote, splits.train_weights()) is not None,
        "features_numeric": ",".join(numeric),
        "features_categorical": ",".join(categorical),
        "n_features": len(numeric) + len(categorical),
        "dbt_manifest_sha256": catalog.manifest_sha256,
        "git_commit": _git_commit(),
        "smote_applied": smote.apply,
        "smote_k_neighbors": smote.k_neighbors if smote.apply else 0,
        "imbalance_ratio": round(smote.imbalance_ratio, 4),
        "calibration_method": model.method,  # what "auto" chose
    }
    metadata = {
        "features": {"numeric": numeric, "categorical": categorical},
        "score_bands": bands,
        "reasons": reasons.to_dict(),
        "holdout_date": splits.holdout_date,
        "horizon_days": settings.horizon_days,
    }
    with mlflow.start_run(run_name=f"retrain-{as_of.isoformat()}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(scores)
        if champion_scores is not None:
            mlflow.log_metrics({f"champion_{k}": v for k, v in champion_scores.items()})
        mlflow.set_tags(
            {
                "promotion.decision": "promote" if decision.promote else "keep_challenger",
                "promotion.reasons": "; ".join(decision.reasons),
                "champion_version_before": str(champion.version) if champion else "none",
            }
        )
        _log_artifacts(model, pipeline, x_train, x_hold, y_hold, p_hold, raw_hold, reasons, decision, splits)
        example = x_hold.head(5)
        signature = infer_signature(example, model.predict_proba(example))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=settings.model_name,
            pyfunc_predict_fn="predict_proba",
            serialization_format="cloudpickle",
            pip_requirements=_pip_requirements(),
            metadata=metadata,
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id

    registry.set_alias(settings, registry.CHALLENGER, version)
    if decision.promote:
        registry.set_alias(settings, registry.CHAMPION, version)
    client = registry.client(settings)
    client.set_model_version_tag(
        settings.model_name,
        version,
        "promotion.decision",
        "promote" if decision.promote else "keep_challenger",
    )
    client.set_model_version_tag(
        settings.model_name, version, "promotion.reasons", "; ".join(decision.reasons)
    )
    for name in ("roc_auc", "pr_auc", "brier"):
        metrics.gauge(f"train.{name}", scores[name], settings)
    metrics.gauge("train.promoted", int(decision.promote), settings)
    result = TrainResult(
        run_id,
        version,
        scores,
        decision,
        smote,
        str(champion.version) if champion else None,
        model_name=settings.model_name,
    )
    log.info(result.summary())
    return result


def _champion_metrics(settings: Settings, version: str, holdout: pd.DataFrame) -> dict[str, float] | None:
    """The champion's metrics on the challenger's holdout; None when it cannot score it
    (e.g. a feature it needs was removed), in which case the challenger is compared to nothing."""
    try:
        champion = registry.load_version(settings, version)
        x = prepare_frame(holdout, champion.numeric, champion.categorical)
    except (KeyError, OSError) as exc:
        log.warning("champion version %s cannot score this holdout: %s", version, exc)
        return None
    p = champion.model.predict_proba(x)[:, 1]
    return classification_metrics(holdout["label"].to_numpy(), p)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"scikit-learn=={version('scikit-learn')}",
        f"imbalanced-learn=={version('imbalanced-learn')}",
        f"pandas=={version('pandas')}",
        f"numpy=={version('numpy')}",
        f"cloudpickle=={version('cloudpickle')}",
    ]


def _log_artifacts(
    model: Any,
    pipeline: Any,
    x_train: pd.DataFrame,
    x_hold: pd.DataFrame,
    y_hold: np.ndarray,
    p_hold: np.ndarray,
    raw_hold: np.ndarray,
    reasons: Any,
    decision: PromotionDecision,
    splits: Splits,
) -> None:
    import mlflow
    from sklearn.metrics import classification_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        save_plots(y_hold, p_hold, raw_hold, out / "plots")
        threshold = float(np.quantile(p_hold, 0.9))
        report = classification_report(
            y_hold,
            (p_hold >= threshold).astype(int),
            target_names=["no", "converted"],
            zero_division=0,
        )
        (out / "classification_report.txt").write_text(
            f"Holdout {splits.holdout_date}, positive = top 10% of scores (p >= {threshold:.4f})\n\n"
            + str(report)
        )
        # The same contributions as the published top_reasons (exact for logistic regression,
        # Saabas path attributions for gradient-boosted trees), averaged in absolute value.
        contributions, names = Explainer(model, reasons).contributions(x_train.head(20_000))
        importance = pd.DataFrame(
            {"feature": names, "mean_abs_logit_contribution": np.abs(contributions).mean(axis=0)}
        )
        importance.sort_values("mean_abs_logit_contribution", ascending=False).to_csv(
            out / "feature_importances.csv", index=False
        )
        (out / "promotion.json").write_text(json.dumps(asdict(decision), indent=2))
        # A sample of the training inputs: the reference distribution for drift checks.
        (out / "reference").mkdir()
        reference = x_train.sample(min(REFERENCE_ROWS, len(x_train)), random_state=0)
        reference.to_parquet(out / "reference" / "training_reference.parquet")
        mlflow.log_artifacts(str(out))
