"""Nightly scoring against the usual pandas script and against the floor.

    .venv/bin/python benchmarks/bench_scoring.py --leads 1000000

One run, each measured in its own process (wall time and peak RSS of that process):
  (a) reference: the pandas batch scorer most tutorials show (MLOps Zoomcamp, the Astronomer
      MLflow example): raw tables into pandas, the same features with groupbys,
      predict_proba, to_parquet;
  (b) floor: the feature SQL through DuckDB alone + the model's predict alone + a Parquet
      write alone (three processes, times and peaks added / maxed);
  (c) `mlsys score` with the features already built (streaming, with top_reasons, atomic
      publish); also (c+f) `mlsys features` + `mlsys score`, the whole nightly path, and the
      cost of top_reasons (the same batches scored with and without them).
The 5M run: `--leads 5000000 --champion-from <1M home>` scores with the 1M home's champion.
Needs a home with a champion: it generates a CRM and trains one first when --home is new.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

AS_OF = date(2026, 6, 1)
TYPES = [
    "email_open", "email_click", "page_view", "pricing_page_view",
    "form_submit", "content_download", "webinar_attended", "demo_requested",
]  # fmt: skip


def _peak_mb() -> float:
    """This process's own peak RSS. (ru_maxrss would not do: Linux carries it over from
    the parent across fork + exec, so every child would report the parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_reference(out: Path) -> dict:
    """(a): what a pandas batch scorer does, end to end, in memory."""
    import numpy as np
    import pandas as pd

    from mlsys import registry
    from mlsys.model import prepare_frame
    from mlsys.settings import Settings

    settings = Settings.from_env()
    start = time.perf_counter()
    cutoff = pd.Timestamp(AS_OF)
    leads = pd.read_parquet(settings.raw_dir / "leads")
    acts = pd.read_parquet(settings.raw_dir / "activities")
    acts = acts[acts["occurred_at"] < cutoff].drop_duplicates()
    leads = leads[leads["created_at"] < cutoff].set_index("lead_id")
    age_days = (cutoff - acts["occurred_at"]).dt.total_seconds() / 86400
    feats = pd.DataFrame(index=leads.index)
    for col in ("source", "industry", "country", "job_level", "company_size"):
        feats[col] = leads[col]
    feats["lead_age_days"] = np.floor((cutoff - leads["created_at"]).dt.total_seconds() / 86400)
    grouped = acts.groupby("lead_id")["occurred_at"]
    feats["days_since_first_activity"] = (cutoff - grouped.min()).dt.total_seconds() / 86400
    feats["days_since_last_activity"] = (cutoff - grouped.max()).dt.total_seconds() / 86400
    feats["n_activities_total"] = acts.groupby("lead_id").size()
    for w in (7, 30, 90):
        feats[f"n_activities_{w}d"] = acts[age_days < w].groupby("lead_id").size()
        by_type = acts[age_days < w].groupby(["lead_id", "activity_type"]).size().unstack(fill_value=0)
        for t in TYPES:
            feats[f"n_{t}_{w}d"] = by_type.get(t, 0)
    prev = acts[(age_days >= 7) & (age_days < 14)].groupby("lead_id").size()
    feats["activity_trend_7d"] = feats["n_activities_7d"].fillna(0) - prev.reindex(feats.index).fillna(0)
    count_cols = [c for c in feats.columns if c.startswith("n_")]
    feats[count_cols] = feats[count_cols].fillna(0)
    champion = registry.load_champion(settings)
    x = prepare_frame(feats.reset_index(), champion.numeric, champion.categorical)
    result = pd.DataFrame({"lead_id": feats.index, "score": champion.model.predict_proba(x)[:, 1]})
    result.to_parquet(out)
    return {"rows": len(result), "wall_s": time.perf_counter() - start}


def child_floor_sql(out: Path) -> dict:
    """(b1): the compiled lead_features SQL straight through DuckDB."""
    import duckdb

    from mlsys.settings import Settings

    settings = Settings.from_env()
    compiled = next(settings.dbt_target_dir.glob("compiled/**/marts/lead_features.sql")).read_text()
    start = time.perf_counter()
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    con.execute("set preserve_insertion_order = false")
    con.execute(f"copy ({compiled}) to '{out}' (format parquet)")
    return {"wall_s": time.perf_counter() - start}


def child_floor_predict(out: Path) -> dict:
    """(b2): the champion's predict_proba over all features, nothing else."""
    import pyarrow.parquet as pq

    from mlsys import registry
    from mlsys.model import prepare_frame
    from mlsys.settings import Settings

    settings = Settings.from_env()
    champion = registry.load_champion(settings)
    frame = pq.read_table(settings.lead_features_path(AS_OF), columns=champion.features).to_pandas()
    x = prepare_frame(frame, champion.numeric, champion.categorical)
    start = time.perf_counter()
    champion.model.predict_proba(x)
    return {"wall_s": time.perf_counter() - start}


def child_floor_write(out: Path) -> dict:
    """(b3): writing a table of the output's size and shape to Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlsys.settings import Settings

    settings = Settings.from_env()
    n = pq.ParquetFile(settings.lead_features_path(AS_OF)).metadata.num_rows
    table = pa.table(
        {
            "lead_id": np.arange(n, dtype=np.int64),
            "score": np.random.default_rng(0).random(n),
            "score_band": pa.array(np.array(["A", "B", "C", "D"])[np.arange(n) % 4]),
        }
    )
    start = time.perf_counter()
    pq.write_table(table, out, compression="zstd")
    return {"wall_s": time.perf_counter() - start}


def child_mlsys(out: Path, with_features: bool) -> dict:
    from mlsys import features, pipeline
    from mlsys.settings import Settings

    settings = Settings.from_env()
    start = time.perf_counter()
    if with_features:
        # The dbt build as the nightly path runs it (staged), moved into place without the
        # gate: (c+f) measures features + scoring.
        pipeline.build_scoring_features(AS_OF, settings)
        features.promote("lead_features", AS_OF, settings)
    published = pipeline.score_and_publish(AS_OF, run_id="bench", settings=settings)
    return {"rows": published["rows"], "wall_s": time.perf_counter() - start}


def child_reasons_cost(out: Path) -> dict:
    """What top_reasons adds: the same batches scored with and without them (in-process,
    batch reading excluded, best of two passes each)."""
    import pyarrow.parquet as pq

    from mlsys import registry
    from mlsys.champion import Champion
    from mlsys.settings import Settings

    settings = Settings.from_env()
    scorer = Champion(registry.load_champion(settings))
    batches = list(
        pq.ParquetFile(settings.lead_features_path(AS_OF)).iter_batches(
            batch_size=settings.score_batch_size, columns=scorer.loaded.features
        )
    )

    def timed(reasons: bool) -> float:
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            for batch in batches:
                scorer.score_arrow(batch, reasons=reasons)
            best = min(best, time.perf_counter() - start)
        return best

    without, with_reasons = timed(False), timed(True)
    return {
        "split_scoring": scorer.split_scoring,
        "score_s": round(without, 2),
        "score_with_reasons_s": round(with_reasons, 2),
        "reasons_cost_ratio": round(with_reasons / without, 2),
        "wall_s": without + with_reasons,
    }


CHILDREN = {
    "reference": child_reference,
    "floor_sql": child_floor_sql,
    "floor_predict": child_floor_predict,
    "floor_write": child_floor_write,
    "mlsys_score": lambda out: child_mlsys(out, False),
    "mlsys_features_score": lambda out: child_mlsys(out, True),
    "reasons_cost": child_reasons_cost,
}


def run_child(mode: str, tmp: Path) -> dict:
    """One measurement in a fresh interpreter. `wall_s` is timed inside the child, after its
    imports; `process_s` is the whole process (interpreter start, imports, model load)."""
    start = time.perf_counter()
    out = (
        subprocess.run(
            [sys.executable, __file__, "--child", mode, "--out", str(tmp / f"{mode}.parquet")],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    result = json.loads(out)
    result["process_s"] = round(time.perf_counter() - start, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--child", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-reference", action="store_true", help="the pandas run needs a lot of RAM")
    parser.add_argument(
        "--champion-from",
        type=Path,
        default=None,
        help="score with the champion of this (smaller) bench home's MLflow store instead of "
        "training one: the 5M run measures scoring, not training",
    )
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        result = CHILDREN[args.child](args.out)
        result["peak_rss_mb"] = round(_peak_mb())
        print(json.dumps(result))
        return

    home = args.home or Path(tempfile.mkdtemp(prefix="mlsys-bench-"))
    os.environ["MLSYS_HOME"] = str(home)
    os.environ.setdefault("MLSYS_STATSD_PORT", "18125")
    if args.champion_from:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.champion_from.resolve() / 'mlflow.db'}"
    from mlsys import features, pipeline, registry
    from mlsys.settings import Settings
    from mlsys_local.generate import generate

    settings = Settings.from_env()
    if not (settings.raw_dir / "leads").exists():
        print(generate(settings.data_dir, n_leads=args.leads, end_date=AS_OF).summary(), flush=True)
    if registry.alias_version(settings, registry.CHAMPION) is None:
        features.build(AS_OF, settings, selector=features.TRAINING_SELECTOR)
        print(pipeline.train_challenger(AS_OF, settings=settings)["summary"], flush=True)
    features.build(AS_OF, settings, selector=features.SCORING_SELECTOR)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results = {}
        modes = [m for m in CHILDREN if not (args.skip_reference and m == "reference")]
        for mode in modes:
            results[mode] = run_child(mode, tmp)
            print(mode, results[mode], flush=True)
    floor_s = sum(results[m]["wall_s"] for m in ("floor_sql", "floor_predict", "floor_write"))
    floor_mb = max(results[m]["peak_rss_mb"] for m in ("floor_sql", "floor_predict", "floor_write"))
    score_s, score_mb = results["mlsys_score"]["wall_s"], results["mlsys_score"]["peak_rss_mb"]
    nightly_s = results["mlsys_features_score"]["wall_s"]
    nightly_mb = results["mlsys_features_score"]["peak_rss_mb"]
    summary = {
        "leads": results["mlsys_score"]["rows"],
        "floor_s": round(floor_s, 2),
        "floor_peak_mb": floor_mb,
        "mlsys_score_s": round(score_s, 2),
        "mlsys_score_process_s": results["mlsys_score"]["process_s"],
        "mlsys_score_peak_mb": score_mb,
        "mlsys_features_score_s": round(nightly_s, 2),
        "mlsys_features_score_peak_mb": nightly_mb,
        "score_vs_floor": round(score_s / floor_s, 2),
        "features_score_vs_floor": round(nightly_s / floor_s, 2),
        "reasons_cost_ratio": results["reasons_cost"]["reasons_cost_ratio"],
    }
    if "reference" in results:
        ref_s, ref_mb = results["reference"]["wall_s"], results["reference"]["peak_rss_mb"]
        summary.update(
            reference_s=round(ref_s, 2),
            reference_peak_mb=ref_mb,
            # (c) against (a), the target, and the whole nightly path against (a).
            score_speedup_vs_reference=round(ref_s / score_s, 2),
            score_rss_ratio_vs_reference=round(ref_mb / score_mb, 2),
            features_score_speedup_vs_reference=round(ref_s / nightly_s, 2),
            features_score_rss_ratio_vs_reference=round(ref_mb / nightly_mb, 2),
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
