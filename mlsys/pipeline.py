"""The stages of both pipelines as plain functions: Airflow tasks and the CLI call these.

Each returns something small and JSON-friendly (it becomes an XCom) and raises with a
one-line reason on failure. The order of the stages is written here once, in
`SCORING_STAGES` and `TRAINING_STAGES`: the `mlsys` commands run them in that order
(`build_features_gated`, `score_and_publish`, `retrain`), the DAGs are one task per stage
with the same names, and `tests/integration/test_dags.py` holds the DAGs to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mlsys import features, registry
from mlsys.settings import Settings

log = logging.getLogger(__name__)

# The nightly `score_leads` DAG and `mlsys features` + `mlsys score`, in order.
SCORING_STAGES = ("validate_raw", "build_features", "validate_features", "plan_scoring", "score", "publish")
# The weekly `retrain` DAG and `mlsys train`, in order (the DAG then announces a promotion).
TRAINING_STAGES = (
    "validate_raw",
    "build_training_snapshots",
    "validate_snapshots",
    "check_drift",
    "train_and_promote",
)


def build_scoring_features(
    as_of: date,
    settings: Settings,
    *,
    full_refresh: bool = False,
    rebuild_window: tuple[date, date] | None = None,
) -> dict[str, Any]:
    """lead_features of ``as_of``, staged: `gate_scoring` moves it into place if it passes.
    ``full_refresh``: rebuild the incremental activities from every landing file first;
    ``rebuild_window`` (first, last day): re-read those days' activities from every file."""
    result = features.build(
        as_of,
        settings,
        selector=features.SCORING_SELECTOR,
        staged=True,
        full_refresh=full_refresh,
        extra_vars=features.rebuild_vars(rebuild_window),
    )
    return {"as_of": as_of.isoformat(), "rows": result.rows, "seconds": round(result.seconds, 2)}


def build_training_features(
    as_of: date,
    settings: Settings,
    *,
    full_refresh: bool = False,
    rebuild_window: tuple[date, date] | None = None,
) -> dict[str, Any]:
    """training_snapshots of ``as_of``, staged: `gate_training` moves it into place if it passes."""
    result = features.build(
        as_of,
        settings,
        selector=features.TRAINING_SELECTOR,
        staged=True,
        full_refresh=full_refresh,
        extra_vars=features.rebuild_vars(rebuild_window),
    )
    return {"as_of": as_of.isoformat(), "rows": result.rows, "seconds": round(result.seconds, 2)}


def gate_raw(as_of: date, settings: Settings, *, training: bool = False) -> dict[str, Any]:
    """The raw landing tables through Great Expectations, before dbt reads them.

    Scoring reads leads and activities; training also reads conversions (the built-in gate;
    a GX context with an ``mlsys_gate.yml`` names its own raw suites per stage). Every suite
    runs, then one DataValidationError names every failed expectation of every suite.
    """
    from mlsys import validation

    suites = validation.raw_suites(settings, training=training)
    return validation.gate_all([validation.validate_raw(s, settings, as_of=as_of) for s in suites])


def gate_scoring(as_of: date, settings: Settings, *, raw: bool = True) -> dict[str, Any]:
    """lead_features (and, unless ``raw=False``, the raw tables) through Great Expectations.

    The DAG passes ``raw=False``: its validate_raw task already gated the raw tables before
    dbt, and scanning hundreds of millions of activities twice buys nothing.
    """
    from mlsys import validation

    out = gate_raw(as_of, settings) if raw else {}
    return {**out, **_gate_mart(validation.LEAD_FEATURES, as_of, settings)}


def gate_training(as_of: date, settings: Settings, *, raw: bool = True) -> dict[str, Any]:
    """training_snapshots (and, unless ``raw=False``, the raw tables) through Great Expectations."""
    from mlsys import validation

    out = gate_raw(as_of, settings, training=True) if raw else {}
    return {**out, **_gate_mart(validation.TRAINING_SNAPSHOTS, as_of, settings)}


def _gate_mart(mart: str, as_of: date, settings: Settings) -> dict[str, Any]:
    """Validate the mart (a staged build if there is one) and move a staged file that passes
    into place. One that fails stays staged, for a look; the file in place, the one the last
    passing build made and a published night may have been scored from, is untouched.

    A file in place that already passed this suite (`validation.passes`: same bytes, same
    suite) is not validated again: `mlsys score` after `mlsys features` pays the gate once."""
    from mlsys import validation
    from mlsys.validation import passes

    in_place = settings.mart_path(mart, as_of)
    if not settings.mart_path(mart, as_of, staged=True).exists():
        recorded = passes.passed_before(mart, in_place, settings)
        if recorded is not None:
            log.info("%s of %s already passed its gate (%s): not validated again", mart, as_of, in_place)
            return {mart: {**recorded, "already_passed": True}}
    try:
        out = validation.gate_all([validation.validate_mart(mart, as_of, settings)])
    except validation.DataValidationError:
        staged = settings.mart_path(mart, as_of, staged=True)
        if staged.exists():
            log.error(
                "%s of %s failed the gate: the new build stays at %s; %s is unchanged",
                mart,
                as_of,
                staged,
                settings.mart_path(mart, as_of),
            )
        raise
    features.promote(mart, as_of, settings)
    passes.record_pass(mart, in_place, settings, out[mart])
    return out


# Why a retrain trains: the trigger recorded with the model version it produces.
FORCED, SCHEDULE, NO_CHAMPION, DRIFT, DEGRADED = "forced", "schedule", "no_champion", "drift", "degraded"


@dataclass
class RetrainDecision:
    train: bool
    reason: str
    # FORCED, SCHEDULE, NO_CHAMPION, DRIFT or DEGRADED when it trains; None when it skips.
    trigger: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"train": self.train, "reason": self.reason, "trigger": self.trigger}


def decide_retrain(as_of: date, *, force: bool, scheduled: bool, settings: Settings) -> RetrainDecision:
    """Train when forced, on the weekly schedule, without a champion, on data drift, or when
    the champion's realized performance has degraded. The drift report is logged to MLflow
    either way, so a skipped week still leaves its evidence."""
    from mlsys import drift

    if registry.alias_version(settings, registry.CHAMPION) is None:
        return RetrainDecision(True, "no champion yet", NO_CHAMPION)
    report = drift.drift_report(as_of, settings)
    realized, realized_text = drift.realized_performance_or_reason(as_of, settings)
    if realized is None:
        realized_text = f"realized performance not measured: {realized_text}"
        log.warning("%s", realized_text)
    _log_drift_run(as_of, report, realized, settings)
    evidence = f"{report.summary()}; {realized_text}"
    if force:
        return RetrainDecision(True, f"forced; {evidence}", FORCED)
    if scheduled:
        return RetrainDecision(True, f"weekly schedule; {evidence}", SCHEDULE)
    if report.detected:
        return RetrainDecision(True, evidence, DRIFT)
    if realized is not None and realized.degraded:
        return RetrainDecision(True, evidence, DEGRADED)
    return RetrainDecision(False, f"skipped: no drift ({evidence})")


def _log_drift_run(as_of: date, report: Any, realized: Any, settings: Settings) -> None:
    import tempfile

    import mlflow

    from mlsys import drift

    registry.configure(settings)
    with mlflow.start_run(run_name=f"drift-{as_of.isoformat()}"):
        mlflow.set_tags({"mlsys.kind": "drift", "champion_version": str(report.champion_version)})
        mlflow.log_metrics({f"psi.{k}": v for k, v in report.psi.items()})
        mlflow.log_metric("drift_detected", int(report.detected))
        if realized is not None:
            mlflow.log_metrics(
                {
                    "realized_roc_auc": realized.roc_auc,
                    "realized_ece": realized.ece,
                    "realized_degraded": int(realized.degraded),
                }
            )
        with tempfile.TemporaryDirectory() as tmp:
            drift.log_report(report, Path(tmp))
            mlflow.log_artifacts(tmp, artifact_path="drift")


def train_challenger(
    as_of: date,
    *,
    settings: Settings,
    tune: bool = False,
    use_smote: bool = True,
    class_weights: bool = False,
    estimator: str | None = None,
    trigger: str = FORCED,
) -> dict[str, Any]:
    """``estimator`` None: the settings' (MLSYS_ESTIMATOR, default logreg). ``class_weights``:
    weight the classes by inverse frequency ("balanced"). ``trigger``: the decision's
    (`RetrainDecision.trigger`), recorded with the run."""
    from mlsys.model import ModelConfig
    from mlsys.train import train

    config = ModelConfig(
        estimator=estimator or settings.estimator,
        use_smote=use_smote,
        class_weight="balanced" if class_weights else None,
        calibration=settings.calibration,
        calibration_folds=settings.calibration_folds,
    )
    result = train(as_of, settings, config, do_tune=tune, trigger=trigger)
    champion = registry.alias_version(settings, registry.CHAMPION)
    if str(result.version).isdigit():
        from mlsys import metrics

        # Lets the Model dashboard tell which version each holdout AUC belongs to.
        metrics.gauge("train.model_version", int(result.version), settings)
    return {
        "as_of": as_of.isoformat(),
        "model_name": settings.model_name,
        "version": result.version,
        "champion_version": None if champion is None else str(champion.version),
        "run_id": result.run_id,
        "promoted": result.decision.promote,
        "reasons": result.decision.reasons,
        "roc_auc": round(result.metrics["roc_auc"], 4),
        "ece": round(result.metrics["ece"], 4),
        "summary": result.summary(),
    }


def plan_scoring(
    as_of: date, *, run_id: str, settings: Settings, allow_cached_champion: bool = False
) -> dict[str, Any]:
    """Pin the champion and the staging folder; one entry per shard for dynamic mapping.

    The champion goes through the local cache (`registry.champion_cache`): when the MLflow
    registry cannot be reached, `allow_cached_champion` (the Airflow task's last try, the CLI)
    lets the last champion it named score; otherwise RegistryUnavailableError, and Airflow
    retries with backoff. `champion_cached` in the plan tells the shards and the log."""
    from mlsys import score

    with (
        registry.champion_cache(fallback=allow_cached_champion) as policy,
        _output_errors(as_of.isoformat(), settings.staging_dir, passthrough=score.FeaturesMissingError),
    ):
        score_plan = score.plan(as_of, settings, run_id=run_id)
    return {**score_plan.as_dict(), "champion_cached": bool(policy.used_cache)}


def shards_of(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"plan": plan, "shard": i} for i in range(int(plan["n_shards"]))]


def score_shard(
    plan: dict[str, Any],
    shard: int,
    settings: Settings,
    *,
    allow_cached_champion: bool = False,
) -> dict[str, Any]:
    """Score one shard with the plan's pinned version, loaded through the champion cache (a
    plan made from the cache lets its shards use it at once)."""
    from mlsys import score

    fallback = allow_cached_champion or bool(plan.get("champion_cached"))
    with registry.champion_cache(fallback=fallback):
        champion = registry.load_version(settings, str(plan["model_version"]))
    with _output_errors(plan["as_of"], plan["staging_dir"], passthrough=score.FeaturesMissingError):
        return score.score_shard(score.ScorePlan.from_dict(plan), shard, settings, champion=champion)


def publish_scores(
    plan: dict[str, Any], shard_results: list[dict[str, Any]], settings: Settings
) -> dict[str, Any]:
    """Rank all shards, swap the partition in atomically, refresh the BI views, metrics."""
    from mlsys import metrics, score

    score_plan = score.ScorePlan.from_dict(plan)
    # A missing shard file passes through: combine's own message says which.
    with _output_errors(plan["as_of"], plan["staging_dir"], passthrough=FileNotFoundError):
        result = score.combine(score_plan, list(shard_results), settings)
        target = score.publish(score_plan.as_of, score_plan.staging_dir, settings)
    metrics.incr("score.rows", result.rows, settings=settings)
    metrics.timing("score.duration", result.seconds, settings)
    metrics.gauge("score.mean", result.mean_score, settings)
    for band, count in result.band_counts.items():
        metrics.gauge(f"score.band.{band}", count, settings)
    metrics.scored_table_freshness(settings)
    return {
        "as_of": score_plan.as_of.isoformat(),
        "rows": result.rows,
        "mean_score": result.mean_score,
        "band_counts": result.band_counts,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "shards": score_plan.n_shards,
        "partition": str(target),
        # Relative to the data folder: the same on every host that mounts it (asset events).
        "partition_relative": target.relative_to(settings.data_dir).as_posix(),
        "bi_database": str(settings.bi_database),
    }


def score_and_publish(
    as_of: date,
    *,
    run_id: str = "manual",
    settings: Settings,
    allow_cached_champion: bool = True,
) -> dict[str, Any]:
    """The whole scoring step in one process (the CLI). There is no Airflow retry here: after
    MLflow's own request retries, an unreachable registry falls back to the cached champion
    (logged as an error, `score.champion_from_cache` = 1) unless told otherwise."""
    plan = plan_scoring(as_of, run_id=run_id, settings=settings, allow_cached_champion=allow_cached_champion)
    results = [
        score_shard(plan, item["shard"], settings, allow_cached_champion=allow_cached_champion)
        for item in shards_of(plan)
    ]
    return publish_scores(plan, results, settings)


def build_features_gated(
    as_of: date,
    settings: Settings,
    *,
    training: bool = False,
    full_refresh: bool = False,
    rebuild_window: tuple[date, date] | None = None,
) -> dict[str, Any]:
    """The first three stages in one process (`mlsys features`): the raw tables gated, the
    mart built staged, gated, then moved into place. ``full_refresh``: the incremental
    activities rebuilt from every landing file (`mlsys features --full-refresh`);
    ``rebuild_window``: the activities of those days re-read (`--rebuild-from/--rebuild-to`)."""
    gate_raw(as_of, settings, training=training)
    if training:
        built = build_training_features(
            as_of, settings, full_refresh=full_refresh, rebuild_window=rebuild_window
        )
        gate_training(as_of, settings, raw=False)
    else:
        built = build_scoring_features(
            as_of, settings, full_refresh=full_refresh, rebuild_window=rebuild_window
        )
        gate_scoring(as_of, settings, raw=False)
    return built


def retrain(
    as_of: date, settings: Settings, *, force: bool, **training: Any
) -> tuple[RetrainDecision, dict[str, Any] | None]:
    """The training stages in one process (`mlsys train`): gate, snapshots, gate, the decision,
    and the challenger when the decision says so (`training`: train_challenger's options)."""
    build_features_gated(as_of, settings, training=True)
    decision = decide_retrain(as_of, force=force, scheduled=False, settings=settings)
    if not decision.train:
        return decision, None
    trigger = decision.trigger or FORCED  # decide_retrain names one whenever it trains
    return decision, train_challenger(as_of, settings=settings, trigger=trigger, **training)


class OutputWriteError(OSError):
    """The scored table's folders cannot be written (disk full, permissions, not a folder)."""


@contextmanager
def _output_errors(as_of: str, staging_dir: Any, *, passthrough: type[OSError]) -> Iterator[None]:
    """An OSError of the block (other than `passthrough`, whose own message says what to run)
    becomes an OutputWriteError that says the published partition is unchanged."""
    try:
        yield
    except passthrough:
        raise
    except OSError as exc:
        where = exc.filename or staging_dir
        raise OutputWriteError(
            f"cannot write the scored partition of {as_of} ({exc.strerror or exc} at {where}); "
            "the previously published partition is unchanged: free space or fix the folder's "
            "permissions, then re-run the date"
        ) from exc
