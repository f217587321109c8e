"""The first `POST /mlsys/score` after an api-server start, against the ones after it.

    .venv/bin/python benchmarks/bench_first_request.py [--home var/bench-on-demand] [--starts 3]
    .venv/bin/python benchmarks/bench_first_request.py --repo /tmp/mlsys-main   # another checkout

The home is benchmarks/bench_on_demand.py's (synthetic CRM, champion, published partition of
2026-06-01; built there on first use). Each start runs the api-server alone (one uvicorn
worker, the environment tests/stack/test_live_api.py gives it) and, as a client or a healthcheck
would:

1. polls `GET /api/v2/monitor/health` until 200, then `GET /mlsys-health/ready` until 200
   where the checkout has it (before it, the UI's catch-all answers that path with HTML):
   what the compose healthcheck waits for;
2. then times the first `POST /mlsys/score` of one lead id, 20 more (median), the first
   request with a full payload (feature SQL) and 5 more (median).

`--repo` runs the plugin and the `mlsys` package of another checkout with this venv (e.g.
`git worktree add /tmp/mlsys-main main`): the numbers before a change. Prints a Markdown table
and writes the raw numbers to `<home>/bench_first_request.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def probe_exists(url: str) -> bool:
    """Whether the readiness probe is there: JSON with a status (without it, the UI's
    catch-all route answers 200 with its HTML page)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
    try:
        return "status" in json.loads(raw)
    except ValueError:
        return False


def post(url: str, body: Any, token: str | None = None) -> tuple[float, int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return time.perf_counter() - start, status, json.loads(raw)


def one_start(stack: Any, lead_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Start the api-server, wait for its health answer, time the first requests; stop it."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    started = time.perf_counter()
    stack._spawn("api-server", [airflow, "api-server", "--port", str(stack.port), "--workers", "1"])
    try:
        while True:
            stack._check_alive()
            try:
                if get(f"{stack.url}/api/v2/monitor/health") == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        health = time.perf_counter() - started
        # What the compose healthcheck waits for: the readiness probe where the code has one.
        ready = None
        if probe_exists(f"{stack.url}/mlsys-health/ready"):
            while get(f"{stack.url}/mlsys-health/ready") != 200:
                time.sleep(0.05)
            ready = time.perf_counter() - started
        token = stack.token()
        first, status, body = post(f"{stack.url}/mlsys/score", {"leads": [{"lead_id": lead_id}]}, token)
        assert status == 200, body
        next_ = [
            post(f"{stack.url}/mlsys/score", {"leads": [{"lead_id": lead_id}]}, token)[0] for _ in range(20)
        ]
        first_payload, status, body = post(f"{stack.url}/mlsys/score", payload, token)
        assert status == 200, body
        next_payload = [post(f"{stack.url}/mlsys/score", payload, token)[0] for _ in range(5)]
        return {
            "health_s": round(health, 2),
            "ready_s": None if ready is None else round(ready, 2),
            "first_ms": round(first * 1000, 1),
            "next_median_ms": round(statistics.median(next_) * 1000, 1),
            "first_payload_ms": round(first_payload * 1000, 1),
            "next_payload_median_ms": round(statistics.median(next_payload) * 1000, 1),
        }
    finally:
        stack.stop()
        stack.procs.clear()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=REPO / "var" / "bench-on-demand")
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose plugin and mlsys to run")
    args = parser.parse_args()

    from benchmarks.bench_on_demand import AS_OF, prepare, use_home

    home = use_home(args.home)
    from mlsys.settings import Settings
    from mlsys_local.airflow_env import airflow_environ

    settings = Settings.from_env()
    os.environ.update(airflow_environ(settings))
    prepare(home, args.leads)

    import pyarrow.parquet as pq

    from mlsys import on_demand
    from tests.live import free_port
    from tests.stack.test_live_api import USER, LiveStack

    lead_id = sorted(
        pq.read_table(settings.partition_dir(AS_OF), columns=["lead_id"]).column("lead_id").to_pylist()
    )[0]
    payload = {"leads": on_demand.payloads_from_raw(settings, [lead_id], AS_OF), "as_of": AS_OF.isoformat()}
    repo = args.repo.resolve()
    base_env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
    }
    live_home = home / "airflow-first-request"
    live_home.mkdir(exist_ok=True)
    password = secrets.token_urlsafe(12)
    (live_home / "passwords.json").write_text(json.dumps({USER: password}))
    port = free_port()
    stack = LiveStack(live_home, port, password, LiveStack.environment(live_home, port, base_env))
    if not (live_home / "airflow.db").exists():
        stack._init_db(None)
    runs = [one_start(stack, lead_id, payload) for _ in range(args.starts)]
    results = {"repo": str(repo), "machine": {"cpus": os.cpu_count()}, "runs": runs}
    (home / "bench_first_request.json").write_text(json.dumps(results, indent=2))
    print(f"repo {repo}\n")
    columns = [
        "start",
        "health",
        "ready",
        "1st lead-id request",
        "next 20 (median)",
        "1st payload",
        "next 5 (median)",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|")
    for i, run in enumerate(runs, 1):
        ready = "-" if run["ready_s"] is None else f"{run['ready_s']} s"
        print(
            f"| {i} | {run['health_s']} s | {ready} | {run['first_ms']} ms | {run['next_median_ms']} ms "
            f"| {run['first_payload_ms']} ms | {run['next_payload_median_ms']} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
