"""The nightly path when one more day lands, against a full refresh, at any history length.

    # (a) and (b): 10M leads, one year of history, the last day landing as the night's file
    .venv/bin/python benchmarks/bench_nightly.py --leads 10000000 --home /tmp/bench-night-10m
    # (c): the same night with 2x and 4x the days of history (and activities) at the same lead
    #      count; the full refreshes with 8GB, (b) once the machine is quiet
    .venv/bin/python benchmarks/bench_nightly.py --leads 10000000 --history-days 730 \\
        --activities-per-lead 60 --home /tmp/bench-night-10m-2x --champion-from /tmp/bench-night-10m \\
        --full-refresh-memory-limit 8GB --wait-for-load-below 0.6
    .venv/bin/python benchmarks/bench_nightly.py --leads 10000000 --history-days 1460 \\
        --activities-per-lead 120 --home /tmp/bench-night-10m-4x --champion-from /tmp/bench-night-10m \\
        --full-refresh-memory-limit 8GB --wait-for-load-below 0.6
    # (e): at 1M leads, the CLI's night against a pandas script and DuckDB SQL streamed
    #      through predict_proba (benchmarks/bench_night_baselines.py)
    .venv/bin/python benchmarks/bench_nightly.py --leads 1000000 --home /tmp/bench-night-1m --baselines

What it does, in a home of its own (kept, so a second run skips the set-up):
1. `mlsys generate --leads N --history-days H --daily-files 1`: the last day before the end
   date lands as its own file, `day-<D-1>.parquet`; that file is moved aside.
2. A champion: trained on the history (`mlsys train --force`), or the one of --champion-from.
3. (a) the night of D-1 from scratch: `mlsys features --full-refresh --as-of D-1`, then
   `mlsys score --as-of D-1`.
4. (b) the day's file lands back; the night of D: `mlsys features --as-of D` (raw gate,
   incremental build, features gate) and `mlsys score --as-of D` (the gate's pass is reused).
   With --reuse-eve, the state after (a) (the warehouse and data/ but the landing files) is
   kept in <home>/eve/ and a later run restores it instead of running (a) again: (b) and the
   check alone (--eve-only: (a) and the kept state, nothing after).
5. The features of D are checked against a full refresh of D (`EXCEPT ALL` both ways), and
   the published scores against a re-score of those: the incremental night's output must be
   the full refresh's, or the benchmark fails.
Each command is its own process, as an Airflow task is: wall time (interpreter start and
imports included), CPU and peak RSS from wait4. The load average is printed with the numbers:
on a shared machine wall times stretch.
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

REPO = Path(__file__).resolve().parent.parent
END = date(2026, 6, 1)
NIGHT = END  # the night that sees the last day land
EVE = END - timedelta(days=1)


def measure(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One command in its own process: wall, CPU and peak RSS of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise SystemExit(f"failed: {' '.join(args)}\n{tail}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "output": out,
    }


def mlsys(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlsys.cli", *args]


def differing(con: Any, left: str, right: str) -> int:
    return int(
        con.sql(
            f"select count(*) from ((select * from {left} except all select * from {right}) "
            f"union all (select * from {right} except all select * from {left}))"
        ).fetchall()[0][0]
    )


def night(env: dict[str, str], as_of: date, *, full_refresh: bool) -> dict[str, Any]:
    feats = measure(
        mlsys("features", "--as-of", as_of.isoformat(), *(["--full-refresh"] if full_refresh else [])), env
    )
    score = measure(mlsys("score", "--as-of", as_of.isoformat()), env)
    return {
        "features": {k: v for k, v in feats.items() if k != "output"},
        "score": {k: v for k, v in score.items() if k != "output"},
        "wall_s": round(feats["wall_s"] + score["wall_s"], 1),
        "peak_rss_mb": max(feats["peak_rss_mb"], score["peak_rss_mb"]),
        "model_seconds": _model_seconds(feats["output"]),
    }


def _model_seconds(output: str) -> dict[str, float]:
    """The per-model lines of mlsys.dbt.BuildProgress: 'dbt model <name>: success in 1.2s'."""
    seconds = {}
    for line in output.splitlines():
        if "dbt model " in line and ": success in " in line:
            text = line.split("dbt model ", 1)[1]
            name, rest = text.split(": success in ", 1)
            seconds[name] = float(rest.split("s", 1)[0])
    return seconds


KEPT_AT_EVE = (
    "warehouse.duckdb",
    "data/features",
    "data/gx",
    "data/scored_leads",
    "data/scored_leads.duckdb",
)


def _keep_eve(home: Path, eve: Path, a_result: dict[str, Any]) -> None:
    """The state (a) left, but the landing files: what (b) starts from."""
    shutil.rmtree(eve, ignore_errors=True)
    for name in KEPT_AT_EVE:
        source, kept = home / name, eve / name
        kept.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, kept, symlinks=True)
        elif source.exists():
            shutil.copy2(source, kept)
    (eve / "done").write_text(json.dumps(a_result))


def _restore_eve(home: Path, eve: Path) -> None:
    for name in KEPT_AT_EVE:
        target, kept = home / name, eve / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if kept.is_dir():
            shutil.copytree(kept, target, symlinks=True)
        elif kept.exists():
            shutil.copy2(kept, target)


def _wait_for_load_below(threshold: float, most_s: float = 45 * 60) -> float:
    started = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - started < most_s:
        time.sleep(15)
    waited = round(time.monotonic() - started)
    print(f"waited {waited} s for the load to fall below {threshold}: {os.getloadavg()}", flush=True)
    return waited


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument(
        "--activities-per-lead",
        type=float,
        default=None,
        help="the generator's (30 by default, over any history): scale it with --history-days "
        "to keep the activities of a day the same while the history grows",
    )
    parser.add_argument("--home", type=Path, required=True, help="kept between runs")
    parser.add_argument("--champion-from", type=Path, default=None, help="use this bench home's champion")
    parser.add_argument(
        "--baselines", action="store_true", help="(e): also the pandas and DuckDB-streamed scripts"
    )
    parser.add_argument("--reuse-eve", action="store_true", help="keep the state after (a); reuse it")
    parser.add_argument("--eve-only", action="store_true", help="run (a), keep its state, stop")
    parser.add_argument(
        "--full-refresh-memory-limit",
        default=None,
        help="MLSYS_DUCKDB_MEMORY_LIMIT for the two full refreshes ((a) and the check) alone, e.g. "
        "8GB: at 600M activities and more a full refresh at the nightly limit spills tens of GB",
    )
    parser.add_argument(
        "--wait-for-load-below",
        type=float,
        default=None,
        help="before (b), wait (up to 45 min) until the 1-minute load average is below this: "
        "(b) is the number that has a target, other work on the machine stretches it",
    )
    args = parser.parse_args()
    home = args.home.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSYS_", "MLFLOW_"))}
    env.update({"MLSYS_HOME": str(home), "MLSYS_STATSD_PORT": "18125", "PYTHONPATH": str(REPO)})
    for name in ("MLSYS_DUCKDB_MEMORY_LIMIT",):
        if name in os.environ:
            env[name] = os.environ[name]
    if args.champion_from:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.champion_from.resolve() / 'mlflow.db'}"
    full_refresh_env = dict(env)
    if args.full_refresh_memory_limit:
        full_refresh_env["MLSYS_DUCKDB_MEMORY_LIMIT"] = args.full_refresh_memory_limit
    data = home / "data"
    day_file = data / "raw" / "activities" / f"day-{EVE.isoformat()}.parquet"
    aside = home / f"aside-{day_file.name}"
    if not (data / "raw" / "leads").exists():
        generated = measure(
            mlsys(
                "generate",
                "--leads",
                str(args.leads),
                "--history-days",
                str(args.history_days),
                *(["--activities-per-lead", str(per_lead)] if (per_lead := args.activities_per_lead) else []),
                "--daily-files",
                "1",
                "--end-date",
                END.isoformat(),
            ),
            env,
        )
        print("generate", {k: v for k, v in generated.items() if k != "output"}, flush=True)
    if day_file.exists():
        shutil.move(day_file, aside)
    if not args.champion_from and not (home / "mlflow.db").exists():
        trained = measure(mlsys("train", "--force", "--as-of", EVE.isoformat()), env)
        print("train", {k: v for k, v in trained.items() if k != "output"}, flush=True)

    results: dict[str, Any] = {
        "leads": args.leads,
        "history_days": args.history_days,
        "activities_per_lead": args.activities_per_lead,
    }
    results["load_before"] = os.getloadavg()
    eve = home / "eve"
    if args.reuse_eve and (eve / "done").exists():
        _restore_eve(home, eve)
        results["a_full_refresh_night"] = json.loads((eve / "done").read_text())
        print("(a) reused from", eve, results["a_full_refresh_night"], flush=True)
    else:
        results["a_full_refresh_night"] = night(full_refresh_env, EVE, full_refresh=True)
        print("(a)", results["a_full_refresh_night"], flush=True)
        if args.reuse_eve or args.eve_only:
            _keep_eve(home, eve, results["a_full_refresh_night"])
    if args.eve_only:
        return
    shutil.move(aside, day_file)  # the night's file lands
    if args.wait_for_load_below is not None:
        results["waited_for_load_s"] = _wait_for_load_below(args.wait_for_load_below)
    results["b_one_more_day_night"] = night(env, NIGHT, full_refresh=False)
    print("(b)", results["b_one_more_day_night"], flush=True)
    results["load_after"] = os.getloadavg()

    # The incremental night's output must be the full refresh's.
    import duckdb

    features_path = data / "features" / "lead_features" / f"{NIGHT.isoformat()}.parquet"
    scored = data / "scored_leads" / f"score_date={NIGHT.isoformat()}"
    incremental_features = home / "incremental-features.parquet"
    incremental_scores = home / "incremental-scores.parquet"
    shutil.copyfile(features_path, incremental_features)
    con = duckdb.connect()
    columns = "lead_id, score, score_band, top_reasons"
    con.sql(f"copy (select {columns} from read_parquet('{scored}/*.parquet')) to '{incremental_scores}'")
    night(full_refresh_env, NIGHT, full_refresh=True)
    results["features_rows_differing"] = differing(
        con, f"read_parquet('{incremental_features}')", f"read_parquet('{features_path}')"
    )
    results["scores_rows_differing"] = differing(
        con,
        f"read_parquet('{incremental_scores}')",
        f"(select {columns} from read_parquet('{scored}/*.parquet'))",
    )
    if args.baselines:
        for script in ("pandas", "duckdb_stream"):
            out = home / f"baseline-{script}.parquet"
            run = measure(
                [
                    sys.executable,
                    str(REPO / "benchmarks" / "bench_night_baselines.py"),
                    script,
                    str(NIGHT),
                    str(out),
                ],
                env,
            )
            results[f"e_{script}"] = {k: v for k, v in run.items() if k != "output"}
            results[f"e_{script}_scores_differing"] = differing(
                con,
                f"(select lead_id, round(score, 9) as score from read_parquet('{out}'))",
                f"(select lead_id, round(score, 9) as score from read_parquet('{incremental_scores}'))",
            )
    print(json.dumps(results, indent=2, default=str))
    if results["features_rows_differing"] or results["scores_rows_differing"]:
        raise SystemExit("the incremental night differs from the full refresh")


if __name__ == "__main__":
    main()
