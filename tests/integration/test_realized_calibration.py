"""The realized-performance check flags a published score that stopped being a probability,
not only a ranking that got worse (a jump of the conversion rate can keep the AUC)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys import drift
from mlsys.settings import Settings

SCORED = date(2026, 1, 1)


def _night(settings: Settings, rate_factor: float) -> None:
    """One published partition of 4,000 leads scored ~10%; each converts with probability
    score x rate_factor (1: the scores are right; >1: the same ranking, a higher rate)."""
    rng = np.random.default_rng(3)
    n = 4000
    scores = np.clip(rng.normal(0.10, 0.05, n), 0.001, 0.25)
    converted = rng.random(n) < scores * rate_factor
    partition = settings.partition_dir(SCORED)
    partition.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"lead_id": np.arange(n), "score": scores, "model_version": "1", "as_of": SCORED}
    ).to_parquet(partition / "part-0.parquet")
    folder = settings.data_dir / "raw" / "conversions"
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.flatnonzero(converted)
    pd.DataFrame({"lead_id": ids, "converted_at": datetime(2026, 1, 10)}).to_parquet(folder / "c.parquet")


@pytest.fixture
def home(tmp_path: Path, settings: Settings) -> Settings:
    # A model name nobody registered: no holdout AUC to compare with, so the verdict is the
    # calibration's alone, whatever else the session registered.
    return dataclasses.replace(settings, data_dir=tmp_path / "data", model_name="unregistered_model")


def test_a_jump_of_the_conversion_rate_is_flagged(home: Settings) -> None:
    _night(home, rate_factor=3.5)
    realized = drift.realized_performance(date(2026, 3, 1), home)
    assert realized is not None
    assert realized.positive_rate > 0.3 and realized.mean_score == pytest.approx(0.10, abs=0.01)
    assert realized.ece is not None and realized.ece > home.max_calibration_error
    assert realized.miscalibrated and realized.degraded
    assert realized.holdout_roc_auc is None and not realized.ranking_degraded
    assert "DEGRADED (calibration)" in realized.summary()


def test_scores_that_match_the_outcomes_are_ok(home: Settings) -> None:
    _night(home, rate_factor=1.0)
    realized = drift.realized_performance(date(2026, 3, 1), home)
    assert realized is not None and realized.ece is not None
    assert realized.ece <= home.max_calibration_error
    assert not realized.miscalibrated
    assert realized.degraded == realized.ranking_degraded
