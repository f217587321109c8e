"""What each nightly task pays before it does any work: interpreter start-up and the imports
its step needs, each in a fresh interpreter (as an Airflow task process is), median of N.

    .venv/bin/python benchmarks/bench_task_startup.py --repeat 5

The imports are those of the `score_leads` tasks' code paths: `mlsys.pipeline` (every task),
Great Expectations (the two gates), dbt (build_features), the champion's stack: MLflow,
scikit-learn, pyarrow (plan_scoring, score, publish). Airflow's own task runner start-up is
not included (it is the same for any task). The load average is printed: on a shared machine
the numbers stretch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STEPS = {
    "interpreter only": "pass",
    "mlsys.pipeline (every task)": "from mlsys import pipeline",
    "validate_raw / validate_features (+ GX)": (
        "from mlsys import pipeline, validation; from mlsys.validation.engine import import_gx; import_gx()"
    ),
    "build_features (+ dbt)": "from mlsys import pipeline, features; from dbt.cli.main import dbtRunner",
    "score (+ MLflow, scikit-learn, pyarrow)": (
        "from mlsys import pipeline, score, registry; import mlflow, sklearn.pipeline, pyarrow.parquet"
    ),
}


def measure(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {"load_before": os.getloadavg()}
    for name, code in STEPS.items():
        results[name] = round(statistics.median(measure(code) for _ in range(args.repeat)), 2)
        print(f"{name}: {results[name]} s", flush=True)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
