"""Scoring without Airflow: shards, explanations, atomic publish, failure modes."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlsys import registry, score
from mlsys.settings import Settings

AS_OF = date(2026, 6, 1)
COMPARED = ["lead_id", "score", "score_band", "score_percentile", "top_reasons", "model_version", "as_of"]


def _staged_table(result: score.ScoreResult):
    return pq.read_table(result.staging_dir / score.PART_FILE).select(COMPARED).sort_by("lead_id")


def test_sharded_scoring_equals_one_shard(published: Path, settings: Settings) -> None:
    single = score.score(AS_OF, settings, n_shards=1)
    table_single = _staged_table(single)
    sharded = score.score(AS_OF, settings, n_shards=3)
    table_sharded = _staged_table(sharded)
    assert sharded.rows == single.rows == table_single.num_rows
    assert table_sharded.equals(table_single)
    assert sharded.band_counts == single.band_counts
    # plan() of the second run cleared the first run's (never published) staging folder
    assert not single.staging_dir.exists()


def _staged_rows(result: score.ScoreResult):
    """The staged partition file in its row order, every column but the run's clock."""
    table = pq.read_table(result.staging_dir / score.PART_FILE)
    return table.drop_columns(["scored_at"])


@pytest.mark.parametrize("n_shards", [1, 2])
def test_threaded_scoring_equals_one_thread(
    published: Path, settings: Settings, n_shards: int, caplog: pytest.LogCaptureFixture
) -> None:
    """MLSYS_SCORE_THREADS: batches scored on worker threads and written in their order give
    the partition of one thread, row for row. Batches of 40 rows (3 threads: 14-row slices)
    keep several in flight; with 2 shards, some slices hold no lead of the shard."""
    one = replace(settings, score_threads=1, score_batch_size=40)
    single = score.score(AS_OF, one, n_shards=n_shards)
    table_single = _staged_rows(single)
    with caplog.at_level(logging.INFO, logger="mlsys.score"):
        threaded = score.score(AS_OF, replace(one, score_threads=3), n_shards=n_shards)
    assert "(3 threads)" in caplog.text
    assert threaded.rows == single.rows == table_single.num_rows
    assert _staged_rows(threaded).equals(table_single)
    assert threaded.band_counts == single.band_counts
    assert threaded.mean_score == single.mean_score


def test_threaded_scoring_of_a_tree_champion_equals_one_thread(published: Path, settings: Settings) -> None:
    """The tree explainer walks every tree of every batch: on 3 threads at once, the same
    scores and reasons as on one."""
    from mlsys.model import ModelConfig, build_pipeline, calibrate, plan_smote, prepare_frame, reason_spec

    splits, num, cat, x, y = training_rows(settings)
    pipeline = build_pipeline(num, cat, ModelConfig(estimator="hgb", hgb_max_iter=30), plan_smote(y, False))
    pipeline.fit(x, y)
    model = calibrate(
        pipeline,
        prepare_frame(splits.calibration, num, cat),
        splits.calibration["label"].to_numpy(),
        "isotonic",
    )
    metadata = {
        "features": {"numeric": num, "categorical": cat},
        "score_bands": {"A": 0.9, "B": 0.5, "C": 0.1},
        "reasons": reason_spec(pipeline, x, num + cat).to_dict(),
    }
    trees = registry.LoadedModel(model, "trees", "1", metadata, None)
    tables = []
    for threads in (1, 3):
        threaded = replace(settings, score_threads=threads, score_batch_size=60)
        plan = score.plan(AS_OF, threaded)
        shard = score.score_shard(plan, 0, threaded, champion=trees)
        tables.append(_staged_rows(score.combine(plan, [shard], threaded)))
    assert tables[0].num_rows == pq.read_metadata(settings.lead_features_path(AS_OF)).num_rows
    assert tables[1].equals(tables[0])
    assert any(tables[0].column("top_reasons").to_pylist())


def test_shards_split_evenly_and_stably() -> None:
    ids = np.arange(1, 100_001)
    shards = score.shard_of(ids, 4)
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 0.9 * counts.max()
    assert (score.shard_of(ids, 4) == shards).all()
    assert (score.shard_of(ids, 1) == 0).all()


def test_publish_swaps_atomically_and_keeps_no_stray_files(night_restored: Path, settings: Settings) -> None:
    published = night_restored
    before = {p.name for p in published.iterdir()}
    result = score.score(AS_OF, settings, run_id="swap-test")
    target = score.publish(AS_OF, result.staging_dir, settings)
    assert target == published
    assert {p.name for p in published.iterdir()} == before == {score.PART_FILE}
    assert not result.staging_dir.exists()
    assert set(pq.read_table(published, columns=["run_id"]).column("run_id").to_pylist()) == {"swap-test"}
    leftovers = [p for p in settings.staging_dir.iterdir() if p.name.startswith(f"score_date={AS_OF}")]
    assert leftovers == []


def test_a_killed_run_leaves_the_partition_intact(
    published: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in published.iterdir()}
    plan = score.plan(AS_OF, settings, run_id="killed", n_shards=2)
    with caplog.at_level(logging.INFO, logger="mlsys.progress"):
        score.score_shard(plan, 0, settings)  # shard 1 "dies": its file never appears
    # The shard's progress: at least its last line, with every lead of the file read.
    leads = pq.read_metadata(settings.lead_features_path(AS_OF)).num_rows
    assert f"score shard 1/2: 100% ({leads:,}/{leads:,} leads read)" in caplog.text
    with pytest.raises(FileNotFoundError, match="expected"):
        score.combine(plan, [], settings)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in published.iterdir()} == digest
    # the next run's plan removes the dead run's staging folder
    score.plan(AS_OF, settings, run_id="next")
    assert not plan.staging_dir.exists()


def test_scores_are_reproducible_and_explained(published: Path, settings: Settings) -> None:
    table = pq.read_table(published).to_pylist()
    top = sorted(table, key=lambda r: -r["score"])[:20]
    assert all(1 <= len(r["top_reasons"]) <= 3 for r in top)
    for r in top:
        contributions = [reason["contribution"] for reason in r["top_reasons"]]
        assert contributions == sorted(contributions, reverse=True)


def test_nightly_scores_equal_the_pipelines_own_predictions(published: Path, settings: Settings) -> None:
    """The nightly path transforms each batch once (mlsys.champion); what it publishes must be
    what the registered pipeline's predict_proba and the explainer give on a pandas frame."""
    from mlsys.champion import Champion
    from mlsys.model import Explainer, ReasonSpec, prepare_frame

    partition = pq.read_table(published).sort_by("lead_id")
    loaded = registry.load_version(settings, partition.column("model_version")[0].as_py())
    assert Champion(loaded).split_scoring, "the default champion should take the one-transform path"
    features = pq.read_table(settings.lead_features_path(AS_OF)).sort_by("lead_id")
    assert features.column("lead_id").equals(partition.column("lead_id"))
    x = prepare_frame(features.to_pandas(), loaded.numeric, loaded.categorical)
    expected = loaded.model.predict_proba(x)[:, 1]
    np.testing.assert_allclose(partition.column("score").to_numpy(), expected, rtol=1e-12, atol=1e-15)
    explainer = Explainer(loaded.model, ReasonSpec(**loaded.metadata["reasons"]))
    expected_reasons = explainer.top_reasons(x.head(300))
    published_reasons = partition.column("top_reasons").to_pylist()[:300]
    assert [[r["feature"] for r in row] for row in published_reasons] == [
        [r["feature"] for r in row] for row in expected_reasons
    ]


def training_rows(settings: Settings) -> tuple[Any, list[str], list[str], Any, np.ndarray]:
    """The session's training snapshots of AS_OF: (splits, numeric, categorical, model input
    of the training rows, their labels)."""
    from mlsys.catalog import load_catalog
    from mlsys.model import prepare_frame
    from mlsys.train import load_splits

    catalog = load_catalog("training_snapshots", settings)
    splits = load_splits(settings.training_snapshots_path(AS_OF), catalog, seed=0)
    num, cat = list(catalog.numeric), list(catalog.categorical)
    return splits, num, cat, prepare_frame(splits.train, num, cat), splits.train["label"].to_numpy()


def test_tree_model_reasons_decompose_its_logit(published: Path, settings: Settings) -> None:
    from mlsys.model import Explainer, ModelConfig, build_pipeline, plan_smote, reason_spec

    _, num, cat, x, y = training_rows(settings)
    pipeline = build_pipeline(num, cat, ModelConfig(estimator="hgb", hgb_max_iter=30), plan_smote(y, False))
    pipeline.fit(x, y)
    explainer = Explainer(pipeline, reason_spec(pipeline, x, num + cat))
    assert explainer.kind == "trees"
    sample = x.head(200)
    contributions, names = explainer.contributions(sample)
    assert set(names) == set(num + cat)
    residual = pipeline.decision_function(sample) - contributions.sum(axis=1)
    assert np.ptp(residual) < 1e-9, "contributions must sum to the logit up to a constant"
    assert any(explainer.top_reasons(sample))


def test_auto_calibrated_tree_champion_scores_split_and_explains(published: Path, settings: Settings) -> None:
    """MLSYS_CALIBRATION=auto may give a sigmoid-calibrated model: the split scoring of
    mlsys.champion must take it, and equal the nightly computation."""
    from mlsys.model import ModelConfig, build_pipeline, calibrate, plan_smote, prepare_frame, reason_spec

    splits, num, cat, x, y = training_rows(settings)
    pipeline = build_pipeline(num, cat, ModelConfig(estimator="hgb", hgb_max_iter=30), plan_smote(y, True))
    pipeline.fit(x, y)
    x_cal = prepare_frame(splits.calibration, num, cat)
    for method in ("sigmoid", "auto"):
        model = calibrate(pipeline, x_cal, splits.calibration["label"].to_numpy(), method)
        assert_split_scoring_is_the_nightly_computation(
            model, reason_spec(pipeline, x, num + cat), num, cat, settings
        )


def assert_split_scoring_is_the_nightly_computation(
    model: Any, spec: Any, num: list[str], cat: list[str], settings: Settings
) -> Any:
    """The champion built from ``model`` takes the split (one-transform) path, and its scores
    and reasons on 300 leads equal ``predict_proba`` and the explainer on a pandas frame.
    Returns that frame."""
    from mlsys.champion import Champion, model_frame

    metadata = {
        "features": {"numeric": num, "categorical": cat},
        "score_bands": {"A": 0.9, "B": 0.5, "C": 0.1},
        "reasons": spec.to_dict(),
    }
    champion = Champion(registry.LoadedModel(model, "test", "1", metadata, None))
    assert champion.split_scoring
    table = pq.read_table(settings.lead_features_path(AS_OF)).slice(0, 300)
    p, reasons, _ = champion.predict(table)
    frame = model_frame(table, num, cat)
    assert np.array_equal(p, model.predict_proba(frame)[:, 1])
    assert champion.explainer is not None and reasons == champion.explainer.top_reasons(frame)
    assert any(reasons)
    return frame


def test_cross_fitted_tree_champion_scores_split_and_explains(published: Path, settings: Settings) -> None:
    """MLSYS_CALIBRATION_FOLDS: k tree models sharing one preprocessing. The champion's split
    scoring must take them (one transform per batch) and equal the nightly computation; the
    reasons must decompose the members' mean logit."""
    from mlsys.model import (
        Explainer,
        ModelConfig,
        fit_cross_fitted,
        member_pipelines,
        plan_smote,
        reason_spec,
    )

    splits, num, cat, x, y = training_rows(settings)
    config = ModelConfig(estimator="hgb", hgb_max_iter=20, calibration="sigmoid", calibration_folds=3)
    model = fit_cross_fitted(num, cat, config, plan_smote(y, True), x, y, splits.train["lead_id"].to_numpy())
    members = member_pipelines(model)
    assert len(members) == 3
    spec = reason_spec(members[0], x, num + cat)
    frame = assert_split_scoring_is_the_nightly_computation(model, spec, num, cat, settings)
    contributions, _ = Explainer(model, spec).contributions(frame)
    mean_logit = np.mean([m.decision_function(frame) for m in members], axis=0)
    assert np.ptp(mean_logit - contributions.sum(axis=1)) < 1e-9


def test_missing_features_say_what_to_run(published: Path, settings: Settings) -> None:
    with pytest.raises(score.FeaturesMissingError, match="mlsys features --as-of 2020-01-01"):
        score.plan(date(2020, 1, 1), settings)


def test_no_champion_says_run_retrain(isolated_settings: Settings) -> None:
    from mlsys import features

    features.build(AS_OF, isolated_settings)
    with pytest.raises(registry.NoChampionError, match="retrain"):
        score.plan(AS_OF, isolated_settings)


def test_publish_without_renameat2_still_replaces(
    night_restored: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = night_restored
    monkeypatch.setattr(score, "_exchange", lambda a, b: False)
    result = score.score(AS_OF, settings, run_id="fallback")
    score.publish(AS_OF, result.staging_dir, settings)
    assert set(pq.read_table(published, columns=["run_id"]).column("run_id").to_pylist()) == {"fallback"}
    assert [p.name for p in published.iterdir()] == [score.PART_FILE]
