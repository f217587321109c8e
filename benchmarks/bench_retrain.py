"""The weekly retrain at scale: new snapshot, labels, fit, register; and what sampling the
negatives does to the model.

    .venv/bin/python benchmarks/bench_retrain.py --leads 10000000 --home /tmp/bench-retrain10m \
        --raw-from /tmp/bench-night-10m/data
    .venv/bin/python benchmarks/bench_retrain.py --leads 1000000 --home /tmp/bench-retrain1m \
        --check --sampling

Each step is `mlsys train` exactly as a person or the CLI runs it, in a process of its own
(wall time with interpreter start; peak RSS from wait4, the process's own):
  first:  `mlsys train --as-of <AS_OF - 7 days> --force` on a new home: all 12 weekly snapshots
          computed (a few per dbt run on a big CRM) and kept, the gates, a champion registered;
  weekly: `mlsys train --as-of <AS_OF> --force` a week later: one new snapshot date, every
          label joined again, the gates, drift, the fit, registered (the issue's (d): 15 min and
          4 GB on 2 cores at 10M leads).
The first step is one-off set-up, not the retrain measured: at 10M leads `mlsys train` adds
the 12 dates one dbt run each (MLSYS_SNAPSHOTS_PER_BUILD chosen from the landed row count), an
hour on 2 cores. --raw-from links another home's landed files (raw/, ground_truth/) instead of
generating them (the 10M nightly benchmark's, for one).
--check builds the same snapshots from scratch in a second home (the same raw files) and
compares them with EXCEPT ALL both ways. --sampling fits on the weekly snapshots with every
training row, with the negatives sampled to MLSYS_MAX_TRAIN_ROWS and weighted back (what
`mlsys train` does), sampled but not weighted, and a uniform sample of all rows (the previous
cap), and reports ROC AUC and ECE on the same holdout.
The machine may be shared: the load average is printed next to every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

AS_OF = date(2026, 6, 1)
MLSYS = str(Path(sys.executable).with_name("mlsys"))

SAMPLING_CHILD = """
import json, sys, time
import numpy as np
import pandas as pd
from datetime import date
from mlsys.catalog import load_catalog
from mlsys.evaluate import classification_metrics
from mlsys.model import ModelConfig, fit_calibrated, prepare_frame, uncalibrated_proba
from mlsys.settings import Settings
from mlsys import train
s = Settings.from_env()
as_of, variant, smote = date.fromisoformat(sys.argv[1]), sys.argv[2], sys.argv[3] == "smote"
catalog = load_catalog("training_snapshots", s)
path = s.training_snapshots_path(as_of)
cap = 10**12 if variant == "all rows" else s.max_train_rows
splits = train.load_splits(path, catalog, 42, "time", cap)
weights = splits.train_weights() if variant == "negatives sampled, weighted" else None
if variant == "uniform sample":
    import duckdb
    cols = ", ".join(["lead_id", "as_of", *catalog.columns, "label"])
    splits.train = duckdb.sql(
        f"select {cols} from read_parquet('{path}') where as_of < date '{splits.calibration_date}' "
        f"order by hash(lead_id, as_of, 42) limit {s.max_train_rows}"
    ).df()
numeric, categorical = list(catalog.numeric), list(catalog.categorical)
x_hold = prepare_frame(splits.holdout, numeric, categorical)
y_hold = splits.holdout["label"].to_numpy()
config = ModelConfig(use_smote=smote)
start = time.perf_counter()
fitted = fit_calibrated(numeric, categorical, config, splits.train, splits.calibration, weights)
fit_s = time.perf_counter() - start
calibrated = classification_metrics(y_hold, fitted.model.predict_proba(x_hold)[:, 1])
raw = classification_metrics(y_hold, uncalibrated_proba(fitted.model, x_hold))
print("RESULT " + json.dumps({
    "rows": len(splits.train), "positives": int(splits.train["label"].sum()),
    "available": splits.sampling.available, "roc_auc": calibrated["roc_auc"], "ece": calibrated["ece"],
    "ece_raw": raw["ece"], "fit_s": fit_s, "holdout_rows": len(y_hold)}))
"""


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def measure(args: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run a child; its wall time and peak RSS (wait4: its own), the load average, its RESULT."""
    load_before = load()
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise SystemExit(f"child failed ({' '.join(args[:4])} ...), log {log}:\n{tail}")
    # A progress bar may share the RESULT line (carriage returns, no newline): take what follows.
    found = [line[line.rindex("RESULT {") + 7 :] for line in text.splitlines() if "RESULT {" in line]
    result = json.loads(found[-1]) if found else {}
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "load_before": load_before,
        "load_after": load(),
        **result,
    }


def environ(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSYS_", "MLFLOW_"))}
    env.update({"MLSYS_HOME": str(home), "MLSYS_STATSD_PORT": "18125"})
    for name in ("MLSYS_DUCKDB_TRAINING_MEMORY_LIMIT", "MLSYS_SNAPSHOTS_PER_BUILD", "MLSYS_MAX_TRAIN_ROWS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def retrain(home: Path, as_of: date, name: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    args = [MLSYS, "train", "--as-of", as_of.isoformat(), "--force"]
    print(f"{name}: {' '.join(args)} {extra_env or ''}", flush=True)
    result = measure(args, {**environ(home), **(extra_env or {})}, home / f"bench-{name}.log")
    print(f"  {json.dumps(result)}", flush=True)
    return result


def snapshot_differences(a: Path, b: Path) -> tuple[int, int]:
    import duckdb

    one, other = f"read_parquet('{a}')", f"read_parquet('{b}')"
    con = duckdb.connect(config={"memory_limit": "4GB"})
    return (
        con.sql(f"select count(*) from (from {one} except all from {other})").fetchall()[0][0],
        con.sql(f"select count(*) from (from {other} except all from {one})").fetchall()[0][0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--raw-from", type=Path, help="a data folder whose raw/ and ground_truth/ to link")
    parser.add_argument("--check", action="store_true", help="compare with a build from scratch")
    parser.add_argument("--sampling", action="store_true", help="sampling against every training row")
    parser.add_argument("--no-weekly", action="store_true", help="measure only --check / --sampling")
    args = parser.parse_args()
    home: Path = args.home
    data = home / "data"
    results: dict[str, Any] = {"leads": args.leads, "cpus": os.cpu_count()}
    if args.raw_from and not (data / "raw").exists():
        data.mkdir(parents=True, exist_ok=True)
        for name in ("raw", "ground_truth"):
            (data / name).symlink_to((args.raw_from / name).resolve())
    if not (data / "raw" / "leads").exists():
        start = time.perf_counter()
        subprocess.run([MLSYS, "generate", "--leads", str(args.leads), "--out", str(data)], check=True)
        results["generate_s"] = round(time.perf_counter() - start, 1)
    week_before = AS_OF - timedelta(days=7)
    if not (data / "features" / "training_snapshots" / f"{week_before}.parquet").exists():
        results["first"] = retrain(home, week_before, "first")
    if not args.no_weekly:
        results["weekly"] = retrain(home, AS_OF, "weekly")

    if args.check:
        scratch = home.with_name(home.name + "-scratch")
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "data").mkdir(parents=True)
        (scratch / "data" / "raw").symlink_to(data / "raw")
        check = [sys.executable, "-c", "from datetime import date; from mlsys import features; "
                 "from mlsys.settings import Settings; "
                 f"features.build(date.fromisoformat('{AS_OF}'), Settings.from_env(), "
                 "selector=features.TRAINING_SELECTOR)"]  # fmt: skip
        results["from_scratch_build"] = measure(check, environ(scratch), scratch / "bench-scratch.log")
        kept = data / "features" / "training_snapshots" / f"{AS_OF}.parquet"
        fresh = scratch / "data" / "features" / "training_snapshots" / f"{AS_OF}.parquet"
        results["except_all_both_ways"] = snapshot_differences(kept, fresh)
        print(f"  from scratch: {json.dumps(results['from_scratch_build'])}; EXCEPT ALL both ways: "
              f"{results['except_all_both_ways']}", flush=True)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)

    if args.sampling:
        results["sampling"] = []
        for smote in ("no-smote", "smote"):
            for variant in (
                "all rows",
                "negatives sampled, weighted",
                "negatives sampled, unweighted",
                "uniform sample",
            ):
                if smote == "smote" and variant == "negatives sampled, unweighted":
                    continue  # with SMOTE the weights are not used: the same fit as "weighted"
                child = [sys.executable, "-c", SAMPLING_CHILD, AS_OF.isoformat(), variant, smote]
                slug = f"{smote}-{variant.replace(', ', '-').replace(' ', '-')}"
                row = {
                    "smote": smote,
                    "variant": variant,
                    **measure(child, environ(home), home / f"bench-{slug}.log"),
                }
                results["sampling"].append(row)
                print(f"  sampling: {json.dumps(row)}", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
