"""On-demand scoring through a real Airflow: api-server, scheduler and dag-processor started
for this module, auth on. The DAG path over REST (trigger, poll, XCom), its structured errors,
the synchronous plugin endpoint, 401 without a token, and the CLI against the API.

The stack runs on its own AIRFLOW_HOME and SQLite file (a copy of the session's migrated DB):
a scheduler polling the session DB while other tests run `dag.test()` on it would risk
"database is locked". Every process is started in its own process group and the group is
killed on teardown, whether the tests passed or not. `LiveStack` is also what
benchmarks/bench_on_demand.py starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mlsys.settings import REPO_ROOT, Settings
from mlsys_local.airflow_env import SIMPLE_AUTH_MANAGER
from mlsys_local.launcher import WARM_UP_PATHS
from tests.fuzz import PAYLOAD, REPRODUCTIONS
from tests.live import free_port, http

pytestmark = pytest.mark.slow

USER = "admin"


@dataclass
class LiveStack:
    """api-server + scheduler + dag-processor on a free port, simple auth manager, one user."""

    home: Path
    port: int
    password: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        home: Path,
        base_env: dict[str, str],
        *,
        template_db: Path | None = None,
        unpause: tuple[str, ...] = (),
        dags: tuple[str, ...] = ("score_on_demand",),
        timeout: float = 300.0,
        bytecode_cache: bool = True,
    ) -> LiveStack:
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        password = secrets.token_urlsafe(12)
        (home / "passwords.json").write_text(json.dumps({USER: password}))
        env = cls.environment(home, port, base_env, bytecode_cache=bytecode_cache)
        stack = cls(home, port, password, env)
        try:
            stack._init_db(template_db)
            airflow = str(Path(sys.executable).with_name("airflow"))
            stack._spawn("api-server", [airflow, "api-server", "--port", str(port), "--workers", "1"])
            stack._spawn("scheduler", [airflow, "scheduler", "--skip-serve-logs"])
            stack._spawn("dag-processor", [airflow, "dag-processor"])
            stack._wait_ready(unpause, dags, timeout)
        except BaseException:
            stack.stop()
            raise
        return stack

    @staticmethod
    def environment(
        home: Path, port: int, base_env: dict[str, str], *, bytecode_cache: bool = True
    ) -> dict[str, str]:
        """The environment of every component: SQLite in `home`, simple auth with the user of
        `home/passwords.json`, this port (benchmarks/bench_first_request.py starts the
        api-server alone with it)."""
        env = {
            **base_env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # This home has no mlsys airflow.cfg: the repo's DAGs and plugins by name.
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Shared by the three components; 64 bytes, or PyJWT warns on every request.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        }
        if bytecode_cache:
            # Task processes import mlflow and scikit-learn afresh per run; cached bytecode
            # (kept in this home, not in the venv) makes every run after the first faster.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
        return env

    def _init_db(self, template_db: Path | None) -> None:
        target = self.home / "airflow.db"
        if template_db is not None and template_db.exists():
            # A consistent copy of an already migrated DB (with the warehouse pool): no
            # migration to wait for.
            with sqlite3.connect(template_db) as src, sqlite3.connect(target) as dst:
                src.backup(dst)
            return
        airflow = str(Path(sys.executable).with_name("airflow"))
        for args in (["db", "migrate"], ["pools", "set", "warehouse", "1", "DuckDB warehouse writer"]):
            subprocess.run([airflow, *args], env=self.env, check=True, capture_output=True, timeout=600)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        # A process group per component: teardown kills the component and its children.
        self.procs[name] = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.home / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def token(self) -> str:
        status, body = http("POST", f"{self.url}/auth/token", {"username": USER, "password": self.password})
        if status not in (200, 201):
            raise RuntimeError(f"POST /auth/token -> {status}: {body}")
        return str(body["access_token"])

    def _wait_ready(self, unpause: tuple[str, ...], dags: tuple[str, ...], timeout: float) -> None:
        """Until the scheduler is healthy, `dags` are parsed (`unpause` unpaused too) and the
        plugin says it is warmed up (`GET /mlsys-health/ready`)."""
        deadline = time.monotonic() + timeout
        token = None
        pending = [*dags, *unpause]
        while True:
            self._check_alive()
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}\n{self.tail(n)}" for n in self.procs)
                raise TimeoutError(
                    f"Airflow stack not ready after {timeout:.0f}s; waiting for {pending}\n{tails}"
                )
            try:
                status, health = http("GET", f"{self.url}/api/v2/monitor/health")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
                continue
            scheduler_ok = status == 200 and health.get("scheduler", {}).get("status") == "healthy"
            if not scheduler_ok:
                time.sleep(0.5)
                continue
            token = token or self.token()
            for dag_id in list(pending):
                if dag_id in unpause:
                    status, _ = http("PATCH", f"{self.url}/api/v2/dags/{dag_id}", {"is_paused": False}, token)
                else:
                    status, _ = http("GET", f"{self.url}/api/v2/dags/{dag_id}", token=token)
                if status == 200:
                    pending.remove(dag_id)
            if not pending and http("GET", f"{self.url}/mlsys-health/ready")[0] == 200:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Children (executor workers, uvicorn workers, task processes) share the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(
    published: Path, airflow_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    from mlsys.settings import Settings
    from mlsys_local.airflow_env import metadata_db

    template = metadata_db(Settings.from_env())
    live = LiveStack.start(tmp_path_factory.mktemp("airflow-live"), dict(os.environ), template_db=template)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def api(stack: LiveStack) -> Any:
    from mlsys.client import Client

    return Client(stack.url, username=USER, password=stack.password, poll_interval=0.2)


@pytest.fixture(scope="module")
def lead_ids(published: Path) -> list[int]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(published, columns=["lead_id"]).column("lead_id").to_pylist())[10:13]


@pytest.fixture(scope="module")
def expected(published: Path, lead_ids: list[int]) -> list[dict[str, Any]]:
    """The same request scored in this process with the current champion."""
    from mlsys import on_demand

    return on_demand.Scorer(Settings.from_env()).score({"leads": [{"lead_id": i} for i in lead_ids]})


# -- tests ------------------------------------------------------------------------------------


def test_everything_needs_a_token(stack: LiveStack) -> None:
    for method, path, body in (
        ("GET", "/api/v2/dags/score_on_demand", None),
        ("POST", "/api/v2/dags/score_on_demand/dagRuns", {"logical_date": None, "conf": {}}),
        ("POST", "/mlsys/score", {"leads": [{"lead_id": 1}]}),
        ("GET", "/mlsys/model", None),
    ):
        status, _ = http(method, stack.url + path, body)
        assert status == 401, f"{method} {path} without a token -> {status}"
    status, _ = http("GET", f"{stack.url}/mlsys/model", token="not-a-jwt")
    assert status in (401, 403)


def test_dag_scores_lead_ids_over_rest(api: Any, lead_ids: list[int], expected: list[dict[str, Any]]) -> None:
    results = api.score([{"lead_id": i} for i in lead_ids])
    assert results == expected


def test_dag_scores_a_payload_over_rest(api: Any, stack: LiveStack) -> None:
    payload = {
        "lead_id": 700_001,
        "created_at": "2026-05-10T08:00:00Z",
        "source": "event",
        "company_size": 40,
        "activities": [{"occurred_at": "2026-05-30T12:00:00Z", "activity_type": "webinar_attended"}],
    }
    (result,) = api.score([payload], as_of="2026-06-01")
    assert result["lead_id"] == 700_001 and result["as_of"] == "2026-06-01"
    status, body = http(
        "POST", f"{stack.url}/mlsys/score", {"leads": [payload], "as_of": "2026-06-01"}, api.token()
    )
    assert status == 200
    assert body["results"] == [result]


def test_dag_bad_request_is_a_readable_error(api: Any, stack: LiveStack) -> None:
    from mlsys.client import ClientError

    run_id = api.trigger({"leads": [{"lead_id": "1; drop table x"}]})
    assert api.wait(run_id) == "failed"
    with pytest.raises(ClientError) as excinfo:
        api.result(run_id, "failed")
    assert excinfo.value.code == "invalid_lead"
    assert "must be an integer" in excinfo.value.error["message"]
    # Failed at once, no retry: one try.
    status, ti = http("GET", f"{stack.url}{api.run_path(run_id)}/taskInstances/score", token=api.token())
    assert status == 200 and ti["state"] == "failed" and ti["try_number"] == 1


def test_plugin_scores_synchronously(stack: LiveStack, api: Any, lead_ids: list[int], expected: list) -> None:
    status, body = http(
        "POST", f"{stack.url}/mlsys/score", {"leads": [{"lead_id": i} for i in lead_ids]}, api.token()
    )
    assert status == 200, body
    assert body["results"] == expected
    assert api.score([{"lead_id": i} for i in lead_ids], sync=True) == expected
    model = api.model()
    assert model["model_version"] == expected[0]["model_version"]
    assert model["alias"] == "champion" and "n_activities_7d" in model["features"]["numeric"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"leads": [{"lead_id": i} for i in range(101)]}, 413, "too_many_leads"),
        ({"leads": [{"lead_id": 987_654_321}]}, 404, "unknown_leads"),
        ({"leads": [{"lead_id": 5, "created_at": "2026-05-01T00:00:00"}]}, 400, "invalid_lead"),
        ([1, 2, 3], 400, "invalid_request"),
        # Bigger than the plugin's body limit: 413, the body dropped as it arrives.
        ({"leads": [{"lead_id": 1, "industry": "x" * 3_000_000}]}, 413, "request_too_large"),
        (
            {"leads": [{"lead_id": 1, "created_at": "2026-05-01", "source": "web", "industry": "y" * 5000}]},
            400,
            "invalid_lead",
        ),
    ],
)
def test_plugin_bad_requests(stack: LiveStack, api: Any, body: Any, status: int, code: str) -> None:
    got, answer = http("POST", f"{stack.url}/mlsys/score", body, api.token())
    assert (got, answer["error"]) == (status, code)
    assert answer["message"] and isinstance(answer["details"], dict)


def test_cli_against_the_api(
    stack: LiveStack,
    lead_ids: list[int],
    expected: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlsys.cli import main

    monkeypatch.setenv("MLSYS_API_USER", USER)
    monkeypatch.setenv("MLSYS_API_PASSWORD", stack.password)
    assert main(["score", "--api", stack.url, "--lead-id", *map(str, lead_ids)]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["score", "--api", stack.url, "--sync", "--lead-id", "987654321"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "HTTP 404" in err[0] and json.loads(err[1])["error"] == "unknown_leads"
    monkeypatch.setenv("MLSYS_API_PASSWORD", "wrong")
    assert main(["score", "--api", stack.url, "--sync", "--lead-id", "1"]) == 1
    assert "/auth/token" in capsys.readouterr().err


# -- no input gets a 500; ready when it says so ----------------------------------------------------


def _post_raw(stack: LiveStack, token: str | None, body: bytes, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        f"{stack.url}/mlsys/score",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        *((conf, "invalid_lead", path) for conf, path in REPRODUCTIONS.values()),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json", None),
        ({"leads": [{**PAYLOAD, "industry": "\ud800"}]}, "invalid_lead", "leads[0].industry"),
        (b'{"leads": [{"lead_id": NaN}]}', "invalid_json", None),
    ],
    ids=[*REPRODUCTIONS, "nested-100000", "surrogate", "nan"],
)
def test_the_reproductions_answer_400_with_their_path(
    stack: LiveStack, api: Any, body: Any, code: str, path: str | None
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, answer = _post_raw(stack, api.token(), raw)
    assert (status, answer["error"]) == (400, code), answer
    assert set(answer) == {"error", "message", "details"}
    if path is not None:
        assert [p["path"] for p in answer["details"]["problems"]] == [path]


def test_an_unexpected_failure_answers_json_with_a_request_id_in_the_log(
    stack: LiveStack, api: Any, settings: Any
) -> None:
    """A corrupt lead_features file (nothing a request can fix): 500 `internal`, JSON, the
    caller's X-Request-ID echoed and on the traceback in the api-server log."""
    day = date(2026, 1, 5)
    path = settings.lead_features_path(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1 this is not parquet")
    try:
        body = json.dumps({"leads": [{"lead_id": 1}], "as_of": day.isoformat()}).encode()
        status, headers, answer = _post_raw(stack, api.token(), body, {"X-Request-ID": "fuzz-500-probe"})
    finally:
        path.unlink()
    assert status == 500 and answer["error"] == "internal"
    assert (
        answer["details"] == {"request_id": "fuzz-500-probe"} and headers["x-request-id"] == "fuzz-500-probe"
    )
    log = (stack.home / "api-server.log").read_text(errors="replace")
    assert "request_id=fuzz-500-probe" in log and "Traceback" in log


def test_the_plugin_survives_schema_fuzzing(stack: LiveStack, api: Any) -> None:
    """schemathesis, from the schema the plugin publishes, against this api-server: every
    phase, no 5xx, every status/body as documented, every schema violation refused."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(REPO_ROOT / "tests" / "schemathesis.toml"),
        "--no-color",
        "run",
        "-H",
        f"Authorization: Bearer {api.token()}",
        f"{stack.url}/mlsys/openapi.json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=stack.home)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated.group(1)) >= 150 and generated.group(1) == generated.group(2), output[
        -3000:
    ]


def test_the_schema_is_published_behind_the_login(stack: LiveStack, api: Any) -> None:
    assert http("GET", f"{stack.url}/mlsys/openapi.json")[0] == 401
    status, schema = http("GET", f"{stack.url}/mlsys/openapi.json", token=api.token())
    assert status == 200 and schema["servers"] == [{"url": "/mlsys"}]
    request = schema["components"]["schemas"]["ScoreRequest"]
    assert request["properties"]["leads"]["maxItems"] == 100 and request["additionalProperties"] is False
    payload = schema["components"]["schemas"]["LeadPayload"]["properties"]
    assert payload["company_size"]["anyOf"][0]["maximum"] == 2**53
    # FastAPI's own docs routes are off: they would bypass the app's login.
    assert http("GET", f"{stack.url}/mlsys/docs", token=api.token())[0] == 404


def test_ready_from_the_start(stack: LiveStack, api: Any) -> None:
    """The probe is public and says only whether the warm-up is done and a champion loaded;
    the champion was loaded at start-up, not by a request."""
    status, probe = http("GET", f"{stack.url}/mlsys-health/ready")
    assert (status, probe) == (200, {"status": "ready", "champion_loaded": True})
    readiness = api.model()["readiness"]
    assert set(readiness["steps"].values()) == {"ready"}
    assert set(readiness["steps"]) == {"champion", "feature_sql", "published_features", "probe"}
    assert readiness["warm_up_seconds"] is not None
    log = (stack.home / "api-server.log").read_text(errors="replace")
    assert "on-demand scorer warmed up" in log


def test_score_on_demand_is_created_unpaused(stack: LiveStack, api: Any) -> None:
    """The stack's Airflow pauses new DAGs (DAGS_ARE_PAUSED_AT_CREATION) and nobody unpaused
    this one: it runs when triggered because the DAG says so."""
    status, dag = http("GET", f"{stack.url}/api/v2/dags/score_on_demand", token=api.token())
    assert status == 200 and dag["is_paused"] is False


def test_a_paused_dag_is_reported_at_once_with_the_unpause_call(
    stack: LiveStack, api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlsys.cli import main
    from mlsys.client import ClientError

    url = f"{stack.url}/api/v2/dags/score_on_demand"
    assert http("PATCH", url, {"is_paused": True}, api.token())[0] == 200
    try:
        start = time.monotonic()
        with pytest.raises(ClientError) as excinfo:
            api.score([{"lead_id": 1}])
        assert time.monotonic() - start < 5
        assert excinfo.value.code == "dag_paused"
        assert 'PATCH /api/v2/dags/score_on_demand with {"is_paused": false}' in str(excinfo.value)
        monkeypatch.setenv("MLSYS_API_USER", USER)
        monkeypatch.setenv("MLSYS_API_PASSWORD", stack.password)
        assert main(["score", "--api", stack.url, "--lead-id", "1"]) == 1
        assert "score_on_demand DAG is paused" in capsys.readouterr().err
    finally:
        assert http("PATCH", url, {"is_paused": False}, api.token())[0] == 200


def test_the_compose_healthcheck_waits_for_the_scorer(stack: LiveStack) -> None:
    """docker-compose.yaml's api-server healthcheck, run as written against this api-server
    (its port instead of the container's 8080): it asks the paths of `WARM_UP_PATHS`, which
    `make airflow` waits for too, and passes."""
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    command = compose["services"]["airflow-apiserver"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "python", "-c"]
    assert all(f"'{path}'" in command[3] for path in WARM_UP_PATHS), command[3]
    code = command[3].replace("localhost:8080", f"127.0.0.1:{stack.port}")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
