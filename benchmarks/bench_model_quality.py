"""Model quality against the oracle: the generator knows each lead's true probability.

    .venv/bin/python benchmarks/bench_model_quality.py --leads 100000

Generates a CRM, builds the training snapshots with dbt, then trains the pipeline's model
(time split: older snapshots train, the next calibrates, the latest is the holdout) with
SMOTE, without resampling and with class weights, for both estimators. For each it reports
ROC AUC on the holdout against the oracle AUC of the true probabilities on the same leads,
and ECE before and after calibration. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
from sklearn.metrics import roc_auc_score

END_DATE = date(2026, 6, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--estimators", default="logreg,hgb")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="mlsys-quality-"))
    os.environ["MLSYS_HOME"] = str(home)
    os.environ.setdefault("MLSYS_STATSD_PORT", "18125")

    from mlsys import features
    from mlsys.catalog import load_catalog
    from mlsys.evaluate import expected_calibration_error
    from mlsys.model import ModelConfig, build_pipeline, calibrate, plan_smote, prepare_frame
    from mlsys.settings import Settings
    from mlsys.train import load_splits
    from mlsys_local.generate import generate

    settings = Settings.from_env()
    if not (settings.raw_dir / "leads").exists():
        generate(settings.data_dir, n_leads=args.leads, end_date=END_DATE)
    features.build(END_DATE, settings, selector=features.TRAINING_SELECTOR)
    catalog = load_catalog("training_snapshots", settings)
    splits = load_splits(settings.training_snapshots_path(END_DATE), catalog, seed=42)
    num, cat = list(catalog.numeric), list(catalog.categorical)
    x_train, y_train = prepare_frame(splits.train, num, cat), splits.train["label"].to_numpy()
    x_cal, y_cal = prepare_frame(splits.calibration, num, cat), splits.calibration["label"].to_numpy()
    x_hold, y_hold = prepare_frame(splits.holdout, num, cat), splits.holdout["label"].to_numpy()

    truth = duckdb.sql(
        "select lead_id, true_probability "
        f"from read_parquet('{settings.data_dir}/ground_truth/*.parquet') "
        f"where as_of = date '{splits.holdout_date}'"
    ).df()
    merged = splits.holdout[["lead_id", "label"]].merge(truth, on="lead_id", how="left")
    if merged["true_probability"].isna().any():
        sys.exit("ground truth does not cover the holdout snapshot")
    oracle = roc_auc_score(merged["label"], merged["true_probability"])
    print(
        f"{args.leads:,} leads; train {len(x_train):,} rows "
        f"({splits.train_dates[0]}..{splits.train_dates[-1]}), "
        f"calibration {len(x_cal):,} ({splits.calibration_date}), holdout {len(x_hold):,} "
        f"({splits.holdout_date}, {y_hold.mean():.1%} positive); oracle ROC AUC {oracle:.4f}"
    )
    print()
    print("| estimator | imbalance | ROC AUC | / oracle | PR AUC | ECE before cal. | ECE after | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    from sklearn.metrics import average_precision_score

    for estimator in args.estimators.split(","):
        for handling in ("smote", "none", "class_weight"):
            config = ModelConfig(
                estimator=estimator,
                use_smote=handling == "smote",
                class_weight="balanced" if handling == "class_weight" else None,
            )
            start = time.perf_counter()
            pipeline = build_pipeline(num, cat, config, plan_smote(y_train, config.use_smote))
            pipeline.fit(x_train, y_train)
            seconds = time.perf_counter() - start
            raw = pipeline.predict_proba(x_hold)[:, 1]
            calibrated = calibrate(pipeline, x_cal, y_cal, config.calibration).predict_proba(x_hold)[:, 1]
            auc = roc_auc_score(y_hold, calibrated)
            print(
                f"| {estimator} | {handling} | {auc:.4f} | {auc / oracle:.3f} | "
                f"{average_precision_score(y_hold, calibrated):.4f} | "
                f"{expected_calibration_error(y_hold, raw):.4f} | "
                f"{expected_calibration_error(y_hold, calibrated):.4f} | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
