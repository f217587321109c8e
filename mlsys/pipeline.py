"""The stages of both DAGs as plain functions: Airflow tasks and the CLI call these.

Each returns something small and JSON-friendly (it becomes an XCom) and raises with a
one-line reason on failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mlsys import features, registry
from mlsys.settings import Settings

log = logging.getLogger(__name__)


def build_scoring_features(as_of: date, settings: Settings | None = None) -> dict[str, Any]:
    result = features.build(as_of, settings, selector=features.SCORING_SELECTOR)
    return {"as_of": as_of.isoformat(), "rows": result.rows, "seconds": round(result.seconds, 2)}


def build_training_features(as_of: date, settings: Settings | None = None) -> dict[str, Any]:
    result = features.build(as_of, settings, selector=features.TRAINING_SELECTOR)
    return {"as_of": as_of.isoformat(), "rows": result.rows, "seconds": round(result.seconds, 2)}


def gate_scoring(as_of: date, settings: Settings | None = None) -> dict[str, Any]:
    """Raw leads and lead_features through Great Expectations; raises on a blocking failure."""
    from mlsys import validation

    settings = settings or Settings.from_env()
    reports = [
        validation.validate_raw_leads(settings),
        validation.validate_lead_features(as_of, settings),
    ]
    for report in reports:
        validation.gate(report)
    return {r.suite: {"success": r.success, "warnings": len(r.warnings)} for r in reports}


def gate_training(as_of: date, settings: Settings | None = None) -> dict[str, Any]:
    from mlsys import validation

    settings = settings or Settings.from_env()
    reports = [
        validation.validate_raw_leads(settings),
        validation.validate_training_snapshots(as_of, settings),
    ]
    for report in reports:
        validation.gate(report)
    return {r.suite: {"success": r.success, "warnings": len(r.warnings)} for r in reports}


@dataclass
class RetrainDecision:
    train: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"train": self.train, "reason": self.reason}


def decide_retrain(
    as_of: date, *, force: bool, scheduled: bool, settings: Settings | None = None
) -> RetrainDecision:
    """Train when forced, on the weekly schedule, without a champion, or on drift."""
    from mlsys import drift

    settings = settings or Settings.from_env()
    if registry.alias_version(settings, registry.CHAMPION) is None:
        return RetrainDecision(True, "no champion yet")
    report = drift.drift_report(as_of, settings)
    if force:
        return RetrainDecision(True, f"forced; {report.summary()}")
    if scheduled:
        return RetrainDecision(True, f"weekly schedule; {report.summary()}")
    if report.detected:
        return RetrainDecision(True, report.summary())
    return RetrainDecision(False, f"skipped: no drift ({report.summary()})")


def train_challenger(
    as_of: date,
    *,
    settings: Settings | None = None,
    tune: bool = False,
    use_smote: bool = True,
    estimator: str = "logreg",
    trigger: str = "manual",
) -> dict[str, Any]:
    from mlsys.model import ModelConfig
    from mlsys.train import train

    config = ModelConfig(estimator=estimator, use_smote=use_smote)
    result = train(as_of, settings, config, do_tune=tune, trigger=trigger)
    return {
        "version": result.version,
        "run_id": result.run_id,
        "promoted": result.decision.promote,
        "reasons": result.decision.reasons,
        "roc_auc": round(result.metrics["roc_auc"], 4),
        "ece": round(result.metrics["ece"], 4),
        "summary": result.summary(),
    }


def score_partition(as_of: date, *, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    from mlsys import score

    result = score.score(as_of, settings, run_id=run_id)
    return {
        "as_of": as_of.isoformat(),
        "staging_dir": str(result.staging_dir),
        "rows": result.rows,
        "mean_score": result.mean_score,
        "band_counts": result.band_counts,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "seconds": round(result.seconds, 2),
    }


def publish_partition(scored: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    from mlsys import metrics, score

    settings = settings or Settings.from_env()
    as_of = date.fromisoformat(scored["as_of"])
    target = score.publish(as_of, Path(scored["staging_dir"]), settings)
    metrics.incr("score.rows", int(scored["rows"]), settings)
    metrics.timing("score.duration", float(scored["seconds"]), settings)
    metrics.gauge("score.mean", float(scored["mean_score"]), settings)
    for band, count in scored["band_counts"].items():
        metrics.gauge(f"score.band.{band}", count, settings)
    return {**scored, "partition": str(target), "bi_database": str(settings.bi_database)}
