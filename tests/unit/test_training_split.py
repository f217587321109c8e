"""MLSYS_SPLIT: the time split stays the default; the random split is stratified, seeded and
refuses snapshots that hold a lead twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys.catalog import FeatureCatalog
from mlsys.model import TrainingDataError
from mlsys.settings import Settings
from mlsys.train import load_splits

CATALOG = FeatureCatalog("training_snapshots", ("x",), ("c",), "sha")


def _snapshots(tmp_path: Path, *, repeat_leads: bool = False, n: int = 2000) -> Path:
    rng = np.random.default_rng(0)
    dates = pd.to_datetime(["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"])
    lead_ids = np.arange(n) % (n // 4) if repeat_leads else np.arange(n)
    frame = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "as_of": dates[np.arange(n) % 4].date,
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b"], size=n),
            "label": (rng.random(n) < 0.1).astype("int32"),
        }
    )
    path = tmp_path / "snapshots.parquet"
    frame.to_parquet(path)
    return path


def test_time_split_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSYS_SPLIT", raising=False)
    assert Settings.from_env().training_split == "time"
    splits = load_splits(_snapshots(tmp_path), CATALOG, seed=42)
    assert splits.holdout_date == "2026-01-26" and splits.calibration_date == "2026-01-19"
    assert set(splits.holdout["as_of"].astype(str)) == {"2026-01-26"}


def test_random_split_is_stratified_seeded_and_disjoint(tmp_path: Path) -> None:
    path = _snapshots(tmp_path)
    splits = load_splits(path, CATALOG, seed=42, split="random")
    sizes = [len(splits.train), len(splits.calibration), len(splits.holdout)]
    assert sum(sizes) == 2000 and sizes[2] == 400 and sizes[1] == 320
    ids = [set(s["lead_id"]) for s in (splits.train, splits.calibration, splits.holdout)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    rate = pd.read_parquet(path)["label"].mean()
    for part in (splits.train, splits.calibration, splits.holdout):
        assert abs(part["label"].mean() - rate) < 0.01  # stratified
    again = load_splits(path, CATALOG, seed=42, split="random")
    assert list(again.holdout["lead_id"]) == list(splits.holdout["lead_id"])
    other = load_splits(path, CATALOG, seed=7, split="random")
    assert set(other.holdout["lead_id"]) != set(splits.holdout["lead_id"])
    assert "random" in splits.holdout_date


def test_random_split_refuses_repeated_leads(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="MLSYS_SPLIT=time"):
        load_splits(_snapshots(tmp_path, repeat_leads=True), CATALOG, seed=42, split="random")
    with pytest.raises(ValueError, match="split"):
        load_splits(_snapshots(tmp_path), CATALOG, seed=42, split="shuffled")
