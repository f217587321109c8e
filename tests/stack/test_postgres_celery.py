"""The production path, live: PostgreSQL metadata and MLflow store, roles, then Celery scale-out.

`make test-postgres` (also in .ci/run; not part of `make test`, it takes a few minutes).
Everything runs on free ports in one temporary folder, from Debian's packages and the venv:

1. A throwaway PostgreSQL cluster (`initdb` + `pg_ctl`, as the `postgres` user when run as
   root: root cannot run postgres), prepared by the stack's own docker/postgres/init-databases.sh
   (roles and the airflow / mlflow / mlflow_auth databases).
2. Redis (`redis-server --requirepass`, no persistence), the Celery broker.
3. The MLflow server on PostgreSQL, started by the image's entrypoint (`mlflow-server`), with
   basic-auth (people read by default; Airflow logs in with the service account the
   entrypoint sets up, which may edit), and artifacts served from a folder.
4. `docker/entrypoint.sh init`: `airflow db migrate` on PostgreSQL (with the FAB auth
   manager's tables), the warehouse pool, the first admin from the environment.
5. api-server + dag-processor + scheduler with LocalExecutor and the FAB auth manager:
   `retrain` (forced) and then `score_leads` through the REST API with a token; the champion
   lands in MLflow's PostgreSQL store, the partition on disk. score_leads' Deadline Alert
   (shortened to 6 s) is missed and the notification reaches a local webhook.
   Then a Viewer and an Op user (the documented `airflow users create`) against the live
   api-server: what each role may and may not do, the on-demand endpoints included.
6. The scheduler again with CeleryExecutor and an `airflow celery worker` with
   MLSYS_SCORE_SHARDS=3: the same night scored in 3 mapped shards through Redis and the
   PostgreSQL result backend gives the same partition (sorted by lead_id, same scores).

Every process is stopped and the folder removed at the end, whether the tests pass or not.
Without the Debian packages the tests skip on a laptop and FAIL on CI (CI=true).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.live import Procs, WebhookReceiver, free_port, http, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
PG_INIT = REPO / "docker" / "postgres" / "init-databases.sh"
VENV_BIN = Path(sys.executable).parent
AS_OF = "2026-06-01"
SHARDS = 3
ADMIN = "admin"
MLFLOW_SERVICE = "airflow"  # MLflow's account for Airflow (docker-compose.yaml's MLFLOW_AIRFLOW_USER)
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# score_leads' Deadline Alert, shortened: a run takes far longer than this here.
DEADLINE_MINUTES = "0.1"
# Columns that depend on the data and the model only (not on the run).
STABLE_COLUMNS = [
    "lead_id",
    "score",
    "score_band",
    "score_percentile",
    "top_reasons",
    "model_name",
    "model_version",
    "as_of",
]


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def missing(what: str) -> None:
    message = f"{what}: `make test-postgres` installs it via .ci/install-system-deps.sh"
    if on_ci():
        pytest.fail(message)
    pytest.skip(message)


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.search(r"/postgresql/(\d+)/", p).group(1)),  # type: ignore[union-attr]
    )
    if not found:
        missing("PostgreSQL (Debian package postgresql) is not installed")
    return Path(found[-1]).parent


@dataclass
class Postgres:
    bindir: Path
    root: Path
    port: int
    superuser_password: str

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "run"

    def as_owner(self, args: list[str]) -> list[str]:
        """Root may not run PostgreSQL: run its tools as the `postgres` user then."""
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def start(self) -> None:
        self.root.mkdir(parents=True)
        self.sockets.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                missing("the `postgres` system user (created by Debian's postgresql package)")
            for path in (self.root, self.sockets, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            self.as_owner(
                [
                    str(self.bindir / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local",
                    "trust",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=300,
        )
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            self.as_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.root / "postgres.log"),
                    "--options",
                    options,
                    "--wait",
                    "--timeout",
                    "120",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=180,
        )

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        done = subprocess.run(
            self.as_owner(
                [str(self.bindir / "pg_ctl"), "--pgdata", str(self.data), "--mode", "fast", "--wait", "stop"]
            ),
            capture_output=True,
            timeout=120,
        )
        pid_file = self.data / "postmaster.pid"
        if done.returncode != 0 and pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError, OSError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)

    def url(self, user: str, password: str, database: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def query(self, user: str, password: str, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=user, password=password, dbname=database
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()


# -- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    procs: Procs
    pg: Postgres
    passwords: dict[str, str]
    api_port: int
    mlflow_port: int
    redis_port: int
    env: dict[str, str]
    webhook: WebhookReceiver

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def home(self) -> Path:
        return Path(self.env["MLSYS_HOME"])

    def airflow(self) -> str:
        return str(VENV_BIN / "airflow")

    def token(self, user: str = ADMIN) -> str:
        status, body = http(
            "POST", f"{self.api}/auth/token", {"username": user, "password": self.passwords[user]}
        )
        assert status in (200, 201), f"POST /auth/token -> {status}: {body}"
        return str(body["access_token"])

    def airflow_db(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.pg.query("airflow", self.passwords["airflow_db"], "airflow", sql, params)

    def mlflow_db(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.pg.query("mlflow", self.passwords["mlflow_db"], "mlflow", sql, params)

    def start_airflow(self, *, executor: str, components: tuple[str, ...]) -> None:
        env = {**self.env, "AIRFLOW__CORE__EXECUTOR": executor}
        commands = {
            "api-server": [self.airflow(), "api-server", "--port", str(self.api_port), "--workers", "1"],
            "dag-processor": [self.airflow(), "dag-processor"],
            "scheduler": [self.airflow(), "scheduler", "--skip-serve-logs"],
            "celery-worker": [
                self.airflow(),
                "celery",
                "worker",
                "--concurrency",
                "2",
                "--skip-serve-logs",
                "--celery-hostname",
                "mlsys-test@%h",
            ],
        }
        for name in components:
            worker_env = {**env, "MLSYS_SCORE_SHARDS": str(SHARDS)} if name == "celery-worker" else env
            self.procs.spawn(f"{name}-{executor}", commands[name], worker_env)

    def wait_ready(self, dag_ids: tuple[str, ...], timeout: float = 300) -> str:
        def scheduler_healthy() -> bool:
            status, health = http("GET", f"{self.api}/api/v2/monitor/health")
            return status == 200 and health.get("scheduler", {}).get("status") == "healthy"

        wait_for("scheduler heartbeat", scheduler_healthy, timeout, self.procs)
        token = self.token()
        for dag_id in dag_ids:
            wait_for(
                f"DAG {dag_id} parsed",
                lambda d=dag_id: http("GET", f"{self.api}/api/v2/dags/{d}", token=token)[0] == 200,
                timeout,
                self.procs,
            )
            status, body = http("PATCH", f"{self.api}/api/v2/dags/{dag_id}", {"is_paused": False}, token)
            assert status == 200, body
        return token

    def trigger(self, dag_id: str, conf: dict[str, Any], token: str) -> tuple[int, Any]:
        return http(
            "POST", f"{self.api}/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}, token
        )

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float = 900) -> str:
        status, body = self.trigger(dag_id, conf, self.token())
        assert status == 200, f"trigger {dag_id} -> {status}: {body}"
        run_id = str(body["dag_run_id"])

        def finished() -> str | None:
            code, run = http("GET", f"{self.api}/api/v2/dags/{dag_id}/dagRuns/{run_id}", token=self.token())
            state = run.get("state") if code == 200 else None
            return state if state in ("success", "failed") else None

        state = wait_for(f"{dag_id} run {run_id}", finished, timeout, self.procs, interval=2)
        assert state == "success", f"{dag_id} {run_id} ended {state}\n{self.explain(dag_id, run_id)}"
        return run_id

    def explain(self, dag_id: str, run_id: str) -> str:
        """Task states and the tail of every failed task's log, for a failed run's message."""
        rows = self.airflow_db(
            "select task_id, map_index, state, try_number from task_instance where dag_id=%s and run_id=%s "
            "order by task_id, map_index",
            (dag_id, run_id),
        )
        lines = [f"{t}[{m}] {s} try {n}" for t, m, s, n in rows]
        logs = Path(self.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
        for task_id, _, state, _ in rows:
            if state in ("failed", "up_for_retry"):
                for log in sorted(logs.glob(f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/**/*.log")):
                    lines.append(f"--- {log.relative_to(logs)}")
                    lines.extend(log.read_text(errors="replace").splitlines()[-30:])
        return "\n".join(lines) + "\n" + self.procs.tails()


def start_mlflow(procs: Procs, pg: Postgres, passwords: dict[str, str], port: int, root: Path) -> None:
    """The image's `mlflow-server` entrypoint on PostgreSQL, with basic-auth."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_BACKEND_STORE_URI": pg.url("mlflow", passwords["mlflow_db"], "mlflow"),
        "MLFLOW_ARTIFACTS_DESTINATION": str(root / "mlartifacts"),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_ALLOWED_HOSTS": f"127.0.0.1:{port},localhost:{port}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_APP_NAME": "basic-auth",
        "MLFLOW_AUTH_DATABASE_URI": pg.url("mlflow", passwords["mlflow_db"], "mlflow_auth"),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
        "MLFLOW_AUTH_ADMIN_PASSWORD": passwords["mlflow_admin"],
        "MLFLOW_AUTH_DEFAULT_PERMISSION": "READ",
        "MLFLOW_SERVICE_USERNAME": MLFLOW_SERVICE,
        "MLFLOW_SERVICE_PASSWORD": passwords["mlflow_service"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "TMPDIR": str(root),
    }
    procs.spawn("mlflow", ["sh", str(ENTRYPOINT), "mlflow-server"], env)


@pytest.fixture(scope="module")
def stack(crm: Path) -> Iterator[Stack]:
    bindir = postgres_bin()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        missing("redis-server (Debian package redis-server) is not installed")
    assert redis_server is not None
    root = Path(tempfile.mkdtemp(prefix="mlsys-pg-celery-"))
    root.chmod(0o755)  # the postgres user must reach its folder inside
    procs = Procs(root)
    passwords = {
        name: secrets.token_urlsafe(18) for name in ("superuser", "airflow_db", "mlflow_db", "redis")
    }
    passwords |= {
        name: secrets.token_urlsafe(12)
        for name in ("admin", "ana", "oscar", "mlflow_admin", "mlflow_service", "mlflow_analyst")
    }
    webhook = WebhookReceiver()
    pg = Postgres(bindir, root / "pg", free_port(), passwords["superuser"])
    try:
        pg.start()
        # The stack's own init script: roles and databases.
        subprocess.run(
            ["bash", str(PG_INIT)],
            env={
                "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
                "PGHOST": str(pg.sockets),
                "PGPORT": str(pg.port),
                "POSTGRES_USER": "postgres",
                "POSTGRES_DB": "postgres",
                "AIRFLOW_DB_PASSWORD": passwords["airflow_db"],
                "MLFLOW_DB_PASSWORD": passwords["mlflow_db"],
            },
            check=True,
            capture_output=True,
            timeout=120,
        )
        redis_port = free_port()
        (root / "redis").mkdir()
        procs.spawn(
            "redis",
            [
                redis_server,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(root / "redis"),
                "--requirepass",
                passwords["redis"],
            ],
            dict(os.environ),
        )
        mlflow_port = free_port()
        start_mlflow(procs, pg, passwords, mlflow_port, root)

        home = root / "home"
        shutil.copytree(crm / "raw", home / "data" / "raw")
        api_port = free_port()
        airflow_home = root / "airflow"
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow", passwords["airflow_db"], "airflow"),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{passwords['redis']}@127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": pg.url(
                "airflow", passwords["airflow_db"], "airflow", "db+postgresql"
            ),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # As compose does: the DAGs and plugins by name (this home has no mlsys airflow.cfg).
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            # Airflow's own notifications to this test's webhook; the nightly deadline shortened.
            "MLSYS_ALERT_WEBHOOK_URL": webhook.url,
            "MLSYS_NIGHTLY_DEADLINE_MINUTES": DEADLINE_MINUTES,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
            # No scheduled runs: unpausing score_leads must not start tonight's run beside ours.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW_ADMIN_USER": ADMIN,
            "AIRFLOW_ADMIN_PASSWORD": passwords["admin"],
            "MLSYS_HOME": str(home),
            "MLSYS_DATA_DIR": str(home / "data"),
            "MLSYS_WAREHOUSE": str(home / "warehouse.duckdb"),
            "MLSYS_SCORE_SHARDS": "1",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
            # Airflow's tasks log in to MLflow with the service account (it edits models).
            "MLFLOW_TRACKING_USERNAME": MLFLOW_SERVICE,
            "MLFLOW_TRACKING_PASSWORD": passwords["mlflow_service"],
            # Task processes import mlflow and scikit-learn afresh: cached bytecode helps.
            "PYTHONPYCACHEPREFIX": str(root / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("MLSYS_MLFLOW_ARTIFACTS", None)
        from cryptography.fernet import Fernet

        env["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
        # The stack's init job: db migrate on PostgreSQL, the pool, the first admin.
        init = subprocess.run(
            ["sh", str(ENTRYPOINT), "init"], env=env, capture_output=True, text=True, timeout=900, cwd=root
        )
        assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
        stack = Stack(root, procs, pg, passwords, api_port, mlflow_port, redis_port, env, webhook)
        wait_for(
            "MLflow server",
            lambda: http("GET", f"http://127.0.0.1:{mlflow_port}/health")[0] == 200,
            300,
            procs,
        )
        yield stack
    finally:
        procs.stop_all()
        webhook.stop()
        pg.stop()
        if os.environ.get("MLSYS_KEEP_TEST_HOME") != "1":
            shutil.rmtree(root, ignore_errors=True)


def partition(stack: Stack) -> Path:
    return stack.home / "data" / "scored_leads" / f"score_date={AS_OF}"


def stable_table(path: Path) -> Any:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=STABLE_COLUMNS)
    return table.sort_by("lead_id")


@pytest.fixture(scope="module")
def local_run(stack: Stack) -> dict[str, Any]:
    """LocalExecutor on PostgreSQL: retrain (forced) then score_leads, through the REST API."""
    stack.start_airflow(executor="LocalExecutor", components=("api-server", "dag-processor", "scheduler"))
    stack.wait_ready(("retrain", "score_leads"))
    retrain = stack.run_dag("retrain", {"force": True, "as_of": AS_OF})
    score = stack.run_dag("score_leads", {"as_of": AS_OF})
    # The missed deadline's callback runs on the executor: let it finish before the scheduler
    # stops (test_a_run_past_its_deadline_notifies checks what arrived).
    with contextlib.suppress(AssertionError):
        stack.webhook.wait_for("the deadline notification", lambda p: p["mlsys"]["run_id"] == score, 60)
    saved = stack.root / "partition-local"
    shutil.copytree(partition(stack), saved)
    stack.procs.stop("scheduler-LocalExecutor")
    return {"retrain": retrain, "score": score, "partition": saved}


@pytest.fixture(scope="module")
def celery_run(stack: Stack, local_run: dict[str, Any]) -> dict[str, Any]:
    """CeleryExecutor: a scheduler and a Celery worker (MLSYS_SCORE_SHARDS=3) score the same night."""
    stack.start_airflow(executor="CeleryExecutor", components=("celery-worker", "scheduler"))
    stack.wait_ready(("score_leads",))
    score = stack.run_dag("score_leads", {"as_of": AS_OF})
    return {"score": score}


# -- tests -----------------------------------------------------------------------------------


def test_databases_and_roles_from_the_init_script(stack: Stack) -> None:
    databases = {
        row[0]: row[1]
        for row in stack.pg.query(
            "postgres",
            stack.passwords["superuser"],
            "postgres",
            "select d.datname, r.rolname from pg_database d join pg_roles r on r.oid = d.datdba",
        )
    }
    assert {k: databases[k] for k in ("airflow", "mlflow", "mlflow_auth")} == {
        "airflow": "airflow",
        "mlflow": "mlflow",
        "mlflow_auth": "mlflow",
    }
    # Each role reaches only its own databases (CONNECT revoked from PUBLIC).
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        stack.pg.query("mlflow", stack.passwords["mlflow_db"], "airflow", "select 1")
    # Airflow's schema is in PostgreSQL, migrated by the entrypoint's init, FAB's users and
    # roles included: the first admin from the environment, its password stored hashed.
    assert stack.airflow_db("select slots from slot_pool where pool = 'warehouse'") == [(1,)]
    users = stack.airflow_db(
        "select u.username, r.name, u.password from ab_user u join ab_user_role ur on ur.user_id = u.id "
        "join ab_role r on r.id = ur.role_id"
    )
    assert [(user, role) for user, role, _ in users] == [(ADMIN, "Admin")]
    assert stack.passwords["admin"] not in users[0][2]
    roles = {name for (name,) in stack.airflow_db("select name from ab_role")}
    assert {"Viewer", "Op", "Admin"} <= roles
    # A second init (every `docker compose up`) keeps the user and its password.
    again = subprocess.run(
        ["sh", str(ENTRYPOINT), "init"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=stack.root,
    )
    assert again.returncode == 0 and "exists; its password and roles are left" in again.stdout, again.stderr
    assert stack.airflow_db("select password from ab_user") == [(users[0][2],)]


def test_retrain_and_score_on_postgres(stack: Stack, local_run: dict[str, Any]) -> None:
    # Airflow's metadata: both runs, every task succeeded, one scoring shard.
    runs = stack.airflow_db(
        "select dag_id, state from dag_run where run_id in (%s, %s) order by dag_id",
        (local_run["retrain"], local_run["score"]),
    )
    assert runs == [("retrain", "success"), ("score_leads", "success")]
    shards = stack.airflow_db(
        "select map_index from task_instance where run_id = %s and task_id = 'score'", (local_run["score"],)
    )
    assert shards == [(0,)]
    # MLflow's store is PostgreSQL: the registered model and its champion alias are rows there.
    champion = stack.mlflow_db(
        "select version from registered_model_aliases where name = 'lead_scoring' and alias = 'champion'"
    )
    assert len(champion) == 1
    artifacts = list((stack.root / "mlartifacts").rglob("MLmodel"))
    assert artifacts, "the model's artifacts were not served into the artifact folder"
    # The partition carries that model version, one row per lead.
    table = stable_table(local_run["partition"])
    assert table.num_rows > 1000
    assert set(table.column("model_version").to_pylist()) == {str(champion[0][0])}
    assert len(set(table.column("lead_id").to_pylist())) == table.num_rows


def test_api_requires_a_token(stack: Stack, local_run: dict[str, Any]) -> None:
    status, _ = http("GET", f"{stack.api}/api/v2/dags/score_leads/dagRuns/{local_run['score']}")
    assert status == 401
    status, _ = http("POST", f"{stack.api}/auth/token", {"username": ADMIN, "password": "wrong"})
    assert status == 401


def test_mlflow_people_read_and_airflow_edits(stack: Stack, local_run: dict[str, Any]) -> None:
    """basic-auth in front of the tracking server: a person reads (default_permission READ),
    Airflow's service account edits registered models (also one it did not create), the admin
    manages users."""
    base = f"http://127.0.0.1:{stack.mlflow_port}/api/2.0/mlflow"
    assert http("POST", f"{base}/experiments/search", {"max_results": 1})[0] == 401
    admin = (ADMIN, stack.passwords["mlflow_admin"])
    service = (MLFLOW_SERVICE, stack.passwords["mlflow_service"])
    analyst = ("analyst", stack.passwords["mlflow_analyst"])
    status, body = http(
        "POST", f"{base}/users/create", {"username": analyst[0], "password": analyst[1]}, basic=admin
    )
    assert status == 200, body
    # A model the admin made: the service account's EDIT comes from its grant, not from owning it.
    status, body = http("POST", f"{base}/registered-models/create", {"name": "made_by_admin"}, basic=admin)
    assert status == 200, body

    # The person reads the registry: the champion retrain registered through Airflow ...
    status, body = http("GET", f"{base}/registered-models/get?name=lead_scoring", basic=analyst)
    assert status == 200, body
    aliases = {a["alias"]: a["version"] for a in body["registered_model"]["aliases"]}
    version = aliases["champion"]
    # ... and changes nothing.
    pick = {"name": "lead_scoring", "alias": "analyst-pick", "version": version}
    tag = {"name": "made_by_admin", "key": "owner", "value": "bi"}
    assert http("POST", f"{base}/registered-models/alias", pick, basic=analyst)[0] == 403
    assert http("POST", f"{base}/registered-models/set-tag", tag, basic=analyst)[0] == 403
    assert (
        http("DELETE", f"{base}/registered-models/delete", {"name": "lead_scoring"}, basic=analyst)[0] == 403
    )

    # Airflow's service account edits both models, but is no admin.
    assert http("POST", f"{base}/registered-models/alias", pick, basic=service)[0] == 200
    status, body = http("GET", f"{base}/registered-models/get?name=lead_scoring", basic=analyst)
    assert {a["alias"] for a in body["registered_model"]["aliases"]} >= {"champion", "analyst-pick"}
    unpick = {"name": "lead_scoring", "alias": "analyst-pick"}
    assert http("DELETE", f"{base}/registered-models/alias", unpick, basic=service)[0] == 200
    assert http("POST", f"{base}/registered-models/set-tag", tag, basic=service)[0] == 200
    user = {"username": "intruder", "password": secrets.token_urlsafe(12)}
    assert http("POST", f"{base}/users/create", user, basic=service)[0] == 403


def test_a_run_past_its_deadline_notifies(stack: Stack, local_run: dict[str, Any]) -> None:
    """score_leads' Deadline Alert (MLSYS_NIGHTLY_DEADLINE_MINUTES, 6 s here) on a real
    scheduler: the run is still going when it passes, the notification names the DAG and run;
    the run still finishes, and its successful tasks tell nobody."""
    posts = stack.webhook.received()
    runs = (local_run["retrain"], local_run["score"])
    ours = [p["mlsys"] for p in posts if p["mlsys"]["run_id"] in runs]
    assert [(m["event"], m["dag_id"], m["run_id"]) for m in ours] == [
        ("deadline_missed", "score_leads", local_run["score"])
    ], posts
    assert ours[0]["reason"] == "not finished by its deadline" and ours[0]["deadline"]
    missed = stack.airflow_db(
        "select d.missed from deadline d join dag_run r on r.id = d.dagrun_id where r.run_id = %s",
        (local_run["score"],),
    )
    assert missed == [(True,)]


# docs/deployment.md ("Roles"), after `docker compose exec airflow-apiserver `: the Viewer as
# written there, the Op with the same command. The password is typed at its prompt, twice.
VIEWER_CREATE = (
    "airflow users create --role Viewer --username ana --email ana@example.com --firstname Ana "
    "--lastname Analyst"
)
OP_CREATE = (
    "airflow users create --role Op --username oscar --email oscar@example.com --firstname Oscar "
    "--lastname Operator"
)


def create_user(stack: Stack, command: str) -> str:
    args = command.split()
    user, role = args[args.index("--username") + 1], args[args.index("--role") + 1]
    password = stack.passwords[user]
    done = subprocess.run(
        args,
        input=f"{password}\n{password}\n",
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,  # no terminal: the prompt reads standard input
    )
    assert done.returncode == 0 and f'User "{user}" created with role "{role}"' in done.stdout, done.stderr
    return user


def test_roles_on_a_live_api_server(stack: Stack, local_run: dict[str, Any]) -> None:
    """FAB on PostgreSQL: anonymous 401; a Viewer reads DAGs, runs and logs but triggers,
    pauses, backfills and scores nothing (403); an Op triggers retrain and score_on_demand,
    plans a backfill and scores now, but manages no users; the Admin does all of it."""
    deployment = (REPO / "docs" / "deployment.md").read_text()
    assert f"docker compose exec airflow-apiserver {VIEWER_CREATE}\n" in deployment
    viewer_user, op_user = create_user(stack, VIEWER_CREATE), create_user(stack, OP_CREATE)
    api = stack.api
    lead_id = stable_table(local_run["partition"]).column("lead_id")[0].as_py()
    score = {"leads": [{"lead_id": lead_id}]}
    backfill = {
        "dag_id": "score_leads",
        "from_date": "2026-05-01T00:00:00Z",
        "to_date": "2026-05-03T00:00:00Z",
    }
    run = quote(local_run["score"], safe="")
    viewer, op, admin = (stack.token(user) for user in (viewer_user, op_user, ADMIN))

    # Anonymous: nothing.
    assert http("GET", f"{api}/api/v2/dags")[0] == 401
    assert http("POST", f"{api}/mlsys/score", score)[0] == 401

    # Viewer: scored_leads' run history, task logs, the model on-demand serves ...
    status, body = http("GET", f"{api}/api/v2/dags/score_leads/dagRuns", token=viewer)
    assert status == 200 and local_run["score"] in {r["dag_run_id"] for r in body["dag_runs"]}
    status, body = http("GET", f"{api}/api/v2/dags/score_leads/dagRuns/{run}/taskInstances", token=viewer)
    assert status == 200 and {ti["state"] for ti in body["task_instances"]} == {"success"}
    status, _ = http(
        "GET", f"{api}/api/v2/dags/score_leads/dagRuns/{run}/taskInstances/publish/logs/1", token=viewer
    )
    assert status == 200
    status, body = http("GET", f"{api}/mlsys/model", token=viewer)
    assert status == 200, body
    # ... and no trigger, pause, backfill or scoring.
    assert stack.trigger("retrain", {"force": True}, viewer)[0] == 403
    assert stack.trigger("score_on_demand", score, viewer)[0] == 403
    assert http("PATCH", f"{api}/api/v2/dags/retrain", {"is_paused": True}, viewer)[0] == 403
    assert http("POST", f"{api}/api/v2/backfills/dry_run", backfill, viewer)[0] == 403
    assert http("POST", f"{api}/mlsys/score", score, viewer)[0] == 403

    # Op: triggers retrain and score_on_demand, plans a backfill, scores now ...
    queued = []
    for dag_id, conf in (("retrain", {"force": True}), ("score_on_demand", score)):
        status, body = stack.trigger(dag_id, conf, op)
        assert status == 200, body
        queued.append((dag_id, body["dag_run_id"]))
    status, body = http("POST", f"{api}/api/v2/backfills/dry_run", backfill, op)
    assert status == 200 and body["total_entries"] >= 1, body
    status, body = http("POST", f"{api}/mlsys/score", score, op)
    assert status == 200 and [r["lead_id"] for r in body["results"]] == [lead_id], body
    # ... but manages no users.
    assert http("GET", f"{api}/auth/fab/v1/users", token=op)[0] == 403

    # Admin: all of that, and the users.
    status, body = http("POST", f"{api}/mlsys/score", score, admin)
    assert status == 200 and body["results"][0]["lead_id"] == lead_id
    status, body = http("GET", f"{api}/auth/fab/v1/users", token=admin)
    assert status == 200 and {u["username"] for u in body["users"]} == {ADMIN, viewer_user, op_user}
    # No scheduler runs now: the Admin removes what the Op queued before Celery's scheduler starts.
    for dag_id, run_id in queued:
        status, body = http(
            "DELETE", f"{api}/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", token=admin
        )
        assert status == 204, body


def test_celery_scale_out_scores_the_same_partition(
    stack: Stack, local_run: dict[str, Any], celery_run: dict
) -> None:
    run_id = celery_run["score"]
    # Three mapped shards, all through Celery (the worker has MLSYS_SCORE_SHARDS=3).
    shards = stack.airflow_db(
        "select map_index, state from task_instance where run_id = %s and task_id = 'score' "
        "order by map_index",
        (run_id,),
    )
    assert shards == [(i, "success") for i in range(SHARDS)]
    states = stack.airflow_db(
        "select state, count(*) from task_instance where run_id = %s group by state", (run_id,)
    )
    assert dict(states) == {"success": sum(n for _, n in states)}
    # The result backend is PostgreSQL: one row per Celery task, all of them successes.
    tasks = sum(n for _, n in states)
    # The worker records SUCCESS in the backend just after Airflow sees the task finish, so
    # the last task can still read STARTED for a moment on a loaded machine: wait for it.
    deadline = time.monotonic() + 60
    while True:
        results = dict(stack.airflow_db("select status, count(*) from celery_taskmeta group by status"))
        if set(results) == {"SUCCESS"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert results.get("SUCCESS", 0) >= tasks and set(results) == {"SUCCESS"}
    assert "mlsys-test@" in (stack.root / "celery-worker-CeleryExecutor.log").read_text(errors="replace")
    # Same leads, same scores, bands, percentiles and reasons as the single-shard night.
    local = stable_table(local_run["partition"])
    celery = stable_table(partition(stack))
    assert celery.num_rows == local.num_rows
    assert celery.equals(local)
