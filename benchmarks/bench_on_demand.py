"""On-demand scoring latency: the DAG over REST, the plugin endpoint, and `mlflow models serve`.

    .venv/bin/python benchmarks/bench_on_demand.py [--leads 20000] [--home var/bench-on-demand]

1. A home of its own (synthetic CRM, forced training, features and the published partition
   of 2026-06-01; reused when present).
2. A live Airflow (api-server, scheduler, dag-processor; simple auth) started as
   tests/stack/test_live_api.py does, and `mlflow models serve -m models:/lead_scoring@champion
   --env-manager local` on the same machine, both with one uvicorn worker.
3. DAG path: trigger-to-result of `score_on_demand` for one lead (median and p95 of --dag-runs),
   polled every 0.1 s as a client would.
4. Plugin vs MLflow: the same leads, 1 and 100 per request, over a kept-alive connection,
   alternating between the two servers request by request so background load hits both alike.
   The plugin gets lead ids and looks up the published features, scores, bands and explains;
   MLflow gets those leads' feature rows (it has no feature lookup) and returns probabilities.
   Also measured: the plugin scoring 100 full payloads (features from the compiled dbt SQL).

Prints a Markdown table and writes the raw numbers as JSON next to the home.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
AS_OF = date(2026, 6, 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def use_home(home: Path) -> Path:
    """This process (and what it starts) on `home` alone: no data dir, warehouse or MLflow
    store of the caller's environment, metrics to a port nobody listens on."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MLSYS_HOME"] = str(home)
    for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)
    os.environ.setdefault("MLSYS_STATSD_PORT", "18125")
    return home


def prepare(home: Path, leads: int) -> None:
    """CRM, champion and published partition in `home` (skipped when already there)."""
    from mlsys.cli import main
    from mlsys.settings import Settings

    settings = Settings.from_env()
    if not (settings.raw_dir / "leads").exists():
        assert main(["generate", "--leads", str(leads), "--end-date", AS_OF.isoformat()]) == 0
    if not settings.partition_dir(AS_OF).exists():
        assert main(["train", "--as-of", AS_OF.isoformat(), "--force"]) == 0
        assert main(["features", "--as-of", AS_OF.isoformat()]) == 0
        assert main(["score", "--as-of", AS_OF.isoformat()]) == 0


class Conn:
    """One kept-alive HTTP connection; `post` returns (seconds, status, parsed body)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Content-Type": "application/json", **headers}

    def post(self, path: str, body: bytes) -> tuple[float, int, Any]:
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                self.conn.request("POST", path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # uvicorn closes a connection idle for 5 s; reconnect, do not time that.
                self.conn.close()
                if attempt == 2:
                    raise
                continue
            return time.perf_counter() - start, resp.status, json.loads(raw)
        raise AssertionError("unreachable")


def start_mlflow_serve(home: Path, tracking_uri: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # It starts `uvicorn` through a shell: the venv's bin must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = open(home / "mlflow-serve.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "models",
            "serve",
            "-m",
            "models:/lead_scoring@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow models serve exited: {(home / 'mlflow-serve.log').read_text()[-2000:]}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("mlflow models serve did not answer /ping within 300 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=REPO / "var" / "bench-on-demand")
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--dag-runs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300, help="per size and server")
    args = parser.parse_args()

    home = use_home(args.home)
    # A snapshot of the dbt project: an edit of sql/ during a run would recompile the
    # on-demand feature SQL in the api-server in the middle of the measurements.
    project = home / "sql"
    if not project.exists():
        shutil.copytree(REPO / "sql", project, ignore=shutil.ignore_patterns("target", "logs"))
    os.environ["MLSYS_DBT_PROJECT_DIR"] = str(project)
    from mlsys.settings import Settings
    from mlsys_local.airflow_env import airflow_environ

    settings = Settings.from_env()
    os.environ.update(airflow_environ(settings))
    prepare(home, args.leads)

    import pyarrow.parquet as pq

    from mlsys import champion as champion_model
    from mlsys import on_demand
    from mlsys.client import Client
    from tests.live import free_port
    from tests.stack.test_live_api import USER, LiveStack

    partition = pq.read_table(settings.partition_dir(AS_OF), columns=["lead_id"])
    all_ids = sorted(partition.column("lead_id").to_pylist())
    ids_100 = all_ids[:: max(1, len(all_ids) // 100)][:100]
    champion = on_demand.Scorer(settings).champion()
    features = pq.read_table(settings.lead_features_path(AS_OF))
    rows = on_demand._align(features, ids_100)
    frame = champion_model.model_frame(rows, champion.numeric, champion.categorical)

    def mlflow_body(n: int) -> bytes:
        part = frame.iloc[:n]
        return json.dumps({"dataframe_split": json.loads(part.to_json(orient="split", index=False))}).encode()

    def plugin_body(n: int) -> bytes:
        return json.dumps({"leads": [{"lead_id": i} for i in ids_100[:n]]}).encode()

    payload_body = json.dumps(
        {"leads": on_demand.payloads_from_raw(settings, ids_100, AS_OF), "as_of": AS_OF.isoformat()}
    ).encode()

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "leads_in_partition": len(all_ids),
        "pythondontwritebytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }
    stack = LiveStack.start(home / "airflow-live", dict(os.environ))
    mlflow_port = free_port()
    serve = None
    try:
        serve = start_mlflow_serve(home, settings.mlflow_tracking_uri, mlflow_port)
        api = Client(stack.url, username=USER, password=stack.password, poll_interval=0.1)
        token = api.token()
        plugin = Conn(stack.port, {"Authorization": f"Bearer {token}"})
        mlflow = Conn(mlflow_port, {})

        # Warm both servers (model load, compiled feature SQL, feature cache).
        for _ in range(20):
            for n in (1, 100):
                _, status, body = plugin.post("/mlsys/score", plugin_body(n))
                assert status == 200, body
                _, status, answer = mlflow.post("/invocations", mlflow_body(n))
                assert status == 200, answer
        _, status, body = plugin.post("/mlsys/score", payload_body)
        assert status == 200, body
        ours = [r["score"] for r in body["results"]]
        theirs = [p[1] for p in answer["predictions"]]
        results["max_abs_score_diff_vs_mlflow"] = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))

        for n in (1, 100):
            timings: dict[str, list[float]] = {"plugin": [], "mlflow": []}
            for _ in range(args.requests):
                elapsed, status, _ = plugin.post("/mlsys/score", plugin_body(n))
                assert status == 200
                timings["plugin"].append(elapsed)
                elapsed, status, _ = mlflow.post("/invocations", mlflow_body(n))
                assert status == 200
                timings["mlflow"].append(elapsed)
            results[f"plugin_lead_ids_{n}"] = summary(timings["plugin"])
            results[f"mlflow_serve_rows_{n}"] = summary(timings["mlflow"])
        payload_times = []
        for _ in range(max(20, args.requests // 5)):
            elapsed, status, _ = plugin.post("/mlsys/score", payload_body)
            assert status == 200
            payload_times.append(elapsed)
        results["plugin_payloads_100"] = summary(payload_times)

        api.score([{"lead_id": ids_100[0]}])  # first run pays the task's cold imports
        dag_times = []
        for i in range(args.dag_runs):
            start = time.perf_counter()
            api.score([{"lead_id": ids_100[i % len(ids_100)]}])
            dag_times.append(time.perf_counter() - start)
        results["dag_one_lead"] = summary(dag_times)
        results["load_average_end"] = os.getloadavg()
    finally:
        if serve is not None:
            stop(serve)
        stack.stop()

    out = home / "bench_on_demand.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print()
    print("| what | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|")
    labels = {
        "dag_one_lead": "DAG over REST, trigger to result, 1 lead",
        "plugin_lead_ids_1": "plugin `POST /mlsys/score`, 1 lead id",
        "mlflow_serve_rows_1": "`mlflow models serve`, 1 feature row",
        "plugin_lead_ids_100": "plugin, 100 lead ids",
        "mlflow_serve_rows_100": "`mlflow models serve`, 100 feature rows",
        "plugin_payloads_100": "plugin, 100 full payloads (dbt SQL in memory)",
    }
    for key, label in labels.items():
        s = results[key]
        print(f"| {label} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |")
    print(f"\nraw numbers: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
