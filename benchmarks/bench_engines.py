"""The nightly path on DuckDB and on Spark (MLSYS_ENGINE, docs/spark.md), same data, same model.

    .venv/bin/python benchmarks/bench_engines.py --leads 1000000 --home /tmp/bench-engines-1m
    .venv/bin/python benchmarks/bench_engines.py --leads 10000000 --home /tmp/bench-engines-10m \\
        --champion-from /tmp/bench-engines-1m
    # DuckDB on one core of the two (the scaling note of docs/benchmarks.md)
    .venv/bin/python benchmarks/bench_engines.py --leads 1000000 --home /tmp/bench-engines-1m \\
        --engines duckdb --cpu-list 0

In a home of its own (kept: a second run skips generating and training):
1. `mlsys generate --leads N` (a year of history), a champion trained on DuckDB, or the one of
   --champion-from (the same generator at another lead count: training at 10M costs an hour
   and is what bench_retrain.py measures, not this comparison).
2. Per engine, on a data folder of its own whose raw/ is the shared landing: the night of the
   end date from scratch, `mlsys features --full-refresh --as-of D` (raw gate, build, features
   gate; Spark rebuilds stg_activities at every build, so both engines do the full work) and
   `mlsys score --as-of D`. Spark runs in local mode, `MLSYS_SPARK_MASTER` (default local[2]).
3. The engines' features (`EXCEPT ALL` both ways) and scores (largest difference) compared:
   the benchmark fails when they differ.

Each command is its own process, as an Airflow task is. Wall time; CPU and peak RSS of the
whole process tree, Spark's JVM included (sampled from /proc every 0.2 s, so a peak shorter
than that can be missed). The load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
END = date(2026, 6, 1)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def _stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu, int(fields[21]) * PAGE


def measure(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    cpu_by_pid: dict[int, float] = {}
    peak = 0
    import threading

    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        rss = 0
        for pid in _tree(proc.pid):
            stat = _stat(pid)
            if stat is not None:
                cpu_by_pid[pid] = stat[0]
                rss += stat[1]
        peak = max(peak, rss)
        time.sleep(0.2)
    reader.join()
    wall = time.perf_counter() - start
    out = "".join(output)
    if proc.returncode != 0:
        log = Path(env.get("MLSYS_HOME", ".")) / f"failed-{args[-3] if len(args) > 3 else 'step'}.log"
        log.write_text(out)  # the whole output: a JVM's first error is long before the last
        tail = "\n".join(line for line in out.strip().splitlines() if not line.startswith('{"ts"'))[-3000:]
        raise SystemExit(f"failed: {' '.join(args)} (whole output: {log})\n{tail}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(cpu_by_pid.values()), 1),
        "peak_rss_mb": round(peak / 2**20),
    }


def mlsys(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlsys.cli", *args]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, required=True, help="kept between runs")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--champion-from", type=Path, default=None, help="use this bench home's champion")
    parser.add_argument(
        "--cpu-list",
        default="",
        help="run the nights pinned to these CPUs (taskset -c), e.g. 0: DuckDB on one core",
    )
    args = parser.parse_args()
    home = args.home.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSYS_", "MLFLOW_"))}
    env.update({"MLSYS_HOME": str(home), "MLSYS_STATSD_PORT": "18125", "PYTHONPATH": str(REPO)})
    for name in (
        "MLSYS_DUCKDB_MEMORY_LIMIT",
        "MLSYS_SPARK_MASTER",
        "MLSYS_SPARK_DRIVER_MEMORY",
        "MLSYS_SPARK_SHUFFLE_PARTITIONS",
    ):
        if name in os.environ:
            env[name] = os.environ[name]
    if args.champion_from:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.champion_from.resolve() / 'mlflow.db'}"
    shared = home / "data"
    if not (shared / "raw" / "leads").exists():
        print(
            "generate",
            measure(mlsys("generate", "--leads", str(args.leads), "--end-date", END.isoformat()), env),
            flush=True,
        )
    if not args.champion_from and not (home / "mlflow.db").exists():
        print("train", measure(mlsys("train", "--force", "--as-of", END.isoformat()), env), flush=True)

    results: dict[str, Any] = {
        "leads": args.leads,
        "cpus": args.cpu_list or f"all {os.cpu_count()}",
        "load_before": os.getloadavg(),
    }
    for engine in args.engines.split(","):
        data = home / f"data-{engine}"
        data.mkdir(exist_ok=True)
        if not (data / "raw").exists():
            (data / "raw").symlink_to(shared / "raw")
        engine_env = {**env, "MLSYS_ENGINE": engine, "MLSYS_DATA_DIR": str(data)}
        pin = ["taskset", "-c", args.cpu_list] if args.cpu_list else []
        features = measure(
            [*pin, *mlsys("features", "--full-refresh", "--as-of", END.isoformat())], engine_env
        )
        scored = measure([*pin, *mlsys("score", "--as-of", END.isoformat())], engine_env)
        results[engine] = {
            "features": features,
            "score": scored,
            "wall_s": round(features["wall_s"] + scored["wall_s"], 1),
        }
        print(engine, results[engine], flush=True)
    results["load_after"] = os.getloadavg()

    import duckdb

    engines = args.engines.split(",")
    if len(engines) == 2:
        con = duckdb.connect()
        a, b = (f"read_parquet('{home}/data-{e}/features/lead_features/{END}.parquet')" for e in engines)
        results["features_rows_differing"] = con.sql(
            f"select count(*) from ((select * from {a} except all select * from {b}) "
            f"union all (select * from {b} except all select * from {a}))"
        ).fetchall()[0][0]
        x, y = (f"read_parquet('{home}/data-{e}/scored_leads/score_date={END}/*.parquet')" for e in engines)
        results["scores_compared"] = con.sql(
            "select count(*), max(abs(x.score - y.score)), "
            "max(abs(x.score_percentile - y.score_percentile)), count(*) filter "
            "(where x.score_band != y.score_band or x.top_reasons != y.top_reasons) "
            f"from {x} as x join {y} as y using (lead_id)"
        ).fetchall()[0]
    print(json.dumps(results, indent=2, default=str))
    if results.get("features_rows_differing") or (results.get("scores_compared") or (0, 0, 0, 0))[3]:
        raise SystemExit("the engines' outputs differ")


if __name__ == "__main__":
    main()
