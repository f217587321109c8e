"""`make airflow` and `make mlflow`: the UIs on a laptop, on the demo's own state.

`make airflow` runs the api-server (UI and REST on 127.0.0.1:8080), scheduler, dag-processor
and triggerer on the airflow.cfg of `mlsys_local.airflow_env` - the same Airflow home,
MLflow store, warehouse and data folder as `make demo` - so the demo's runs, the registered
model and the scored partitions are all there. The login (user `admin`, a password generated
on first start) lives in `$MLSYS_HOME/airflow/simple_auth_manager_passwords.json`.

Separate processes rather than `airflow standalone`: standalone makes its own admin user and
password file, starts the log servers on every interface and stops only on SIGINT. Here each
component runs in a session of its own, writes to `$MLSYS_HOME/airflow/logs/<component>.out`,
and Ctrl-C (or SIGTERM) stops every process group, task processes included.

`make mlflow` replaces itself with `mlflow ui` on 127.0.0.1:5000 against the same store.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

from mlsys.settings import Settings
from mlsys_local.airflow_env import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    airflow_cfg,
    init_airflow,
    passwords_file,
    process_environ,
    ui_login,
)

# The DAGs MLSYS_UNPAUSE acts on and the start waits for (score_on_demand runs only when asked).
DAG_IDS = ("score_leads", "retrain", "export_top_leads")
MLFLOW_UI_URL = "http://127.0.0.1:5000"
UNPAUSE_VARIABLE = "MLSYS_UNPAUSE"
# Public paths that answer 200 once the api-server has warmed up; docker-compose.yaml's
# healthcheck asks the same. Airflow builds the execution API's versioned routes at that API's
# first request, on the event loop (seconds in which every request waits), so the first one
# is this probe; the on-demand scorer loads its champion on a thread meanwhile.
EXECUTION_API_HEALTH = "/execution/health"
SCORER_READY = "/mlsys-health/ready"
WARM_UP_PATHS = (EXECUTION_API_HEALTH, SCORER_READY)
# A write behind a request may wait SQLITE_BUSY_TIMEOUT_SECONDS for the metadata DB's lock.
API_TIMEOUT_SECONDS = SQLITE_BUSY_TIMEOUT_SECONDS + 30.0
# The last line printed once everything is up (tests wait for it).
READY_LINE = "Ctrl-C stops everything."


class LaunchError(RuntimeError):
    """The local Airflow could not start; the message says why and where the logs are."""


def unpause_setting(value: str | None) -> bool | None:
    """`MLSYS_UNPAUSE`: 1 unpauses the DAGs, 0 pauses them, unset leaves them as they are
    (active when new: a trigger or backfill runs at once, and activation never runs a past
    night; docs/operating.md, "Paused or not")."""
    raw = (value or "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{UNPAUSE_VARIABLE} must be 1 or 0, got {value!r}")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _set_parent_death_signal() -> None:
    """In the child, before exec: SIGTERM when the launcher dies, even by SIGKILL, so no
    scheduler outlives it. Linux only; elsewhere the launcher's own stop() is all there is."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class LocalAirflow:
    """The four Airflow components on one Airflow home, each in its own process group."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        docs: bool = True,
        mlflow_url: str = MLFLOW_UI_URL,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.docs = docs
        self.log_dir = settings.home / "airflow" / "logs"
        self.env = {
            **process_environ(settings),
            # Read by plugins/mlsys_ui_links.py for the UI's MLflow link.
            "MLSYS_MLFLOW_UI_URL": mlflow_url,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._docs_proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._token: str | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104 - compared, not bound
        return f"http://{host}:{self.port}"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.out"

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Lock the home, migrate, start the docs build, the api-server, dag-processor and
        triggerer; returns at once (wait_ready waits, and starts the scheduler). On any failure
        everything started so far is stopped."""
        try:
            self._acquire_lock()
            if not port_is_free(self.host, self.port):
                raise LaunchError(
                    f"port {self.port} on {self.host} is in use: stop what listens there or "
                    "pick another one (make airflow AIRFLOW_PORT=8081)"
                )
            ui_login(self.settings)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            try:
                # airflow.cfg with this start's address: tasks reach the execution API there.
                init_airflow(self.settings, host=self.host, port=self.port)
            except subprocess.CalledProcessError as exc:
                output = (exc.stderr or exc.stdout or b"").decode(errors="replace")
                raise LaunchError(f"airflow {' '.join(exc.cmd[1:])} failed:\n{_tail(output)}") from exc
            if self.docs:
                self._docs_proc = self._spawn("dbt-docs", self.dbt_docs_command(), env=self._dbt_env())
            # The task log servers are left out (--skip-serve-logs): they listen on every
            # interface, and tasks run on this machine, so the UI reads their log files directly.
            self._spawn(
                "api-server", [_bin("airflow"), "api-server", "--port", str(self.port), "--workers", "1"]
            )
            self._spawn("dag-processor", [_bin("airflow"), "dag-processor"])
            self._spawn("triggerer", [_bin("airflow"), "triggerer", "--skip-serve-logs"])
        except BaseException:
            self.stop()
            raise

    def _acquire_lock(self) -> None:
        """One local Airflow per MLSYS_HOME: two schedulers on one SQLite file would fight."""
        path = self.settings.home / "airflow" / "local_airflow.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the launcher's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise LaunchError(
                f"another local Airflow (pid {owner}) runs on {self.settings.home}: stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def dbt_docs_command(self) -> list[str]:
        """`dbt docs generate --static` into its own folder (`Settings.dbt_docs_dir`);
        static_index.html there also opens straight from the file system."""
        from mlsys import dbt

        return dbt.docs_args(self.settings, self.settings.dbt_docs_dir)

    def _dbt_env(self) -> dict[str, str]:
        from mlsys import dbt

        return {**self.env, **dbt.env(self.settings)}

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.log_path(name), "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(args)}\n".encode())
            log.flush()
            # A session (and process group) per component: stop() signals the group, which
            # reaches the workers and task processes a component forked.
            proc = subprocess.Popen(  # noqa: S603 - Airflow components of our venv, no shell
                args,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal,
            )
        if name != "dbt-docs":
            self.procs[name] = proc
        return proc

    # -- wait ----------------------------------------------------------------------------
    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise LaunchError(
                    f"airflow {name} exited with code {proc.returncode}; "
                    f"last lines of {self.log_path(name)}:\n{self.tail(name)}"
                )

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return _tail(self.log_path(name).read_text(errors="replace"), lines)
        except FileNotFoundError:
            return ""

    def _client(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.url, timeout=API_TIMEOUT_SECONDS)

    def token(self) -> str:
        if self._token is None:
            user, password = ui_login(self.settings)
            with self._client() as client:
                response = client.post("/auth/token", json={"username": user, "password": password})
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._client() as client:
            response = client.request(
                method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kwargs
            )
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout: float = 300.0) -> dict[str, dict[str, Any]]:
        """Until the api-server has warmed up, the scheduler (started here) and the others
        report healthy and the DAGs are parsed; returns the DAGs.

        The scheduler starts once the execution API answers, as in docker-compose.yaml (it
        waits for the api-server's healthcheck): a task it queues at once, like the export the
        demo's published partition triggers, calls that API from its first second, and its
        first request makes Airflow build the API's routes while every request to the server
        waits, seconds on 2 cores (a task's start timed out; so did a REST call given 30 s)."""
        deadline = time.monotonic() + timeout
        self._poll(functools.partial(self._answers, EXECUTION_API_HEALTH), deadline, timeout)
        if "scheduler" not in self.procs:
            self._spawn("scheduler", [_bin("airflow"), "scheduler", "--skip-serve-logs"])
        self._poll(functools.partial(self._answers, SCORER_READY), deadline, timeout)
        dags: dict[str, dict[str, Any]] = self._poll(self._healthy_with_dags, deadline, timeout)
        return dags

    def _poll(self, probe: Callable[[], tuple[Any, str]], deadline: float, timeout: float) -> Any:
        """`probe()` every second until it returns a result; it names what it still waits for."""
        import httpx

        waiting_for = "the api-server"
        while True:
            self.check_alive()
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"Airflow not ready after {timeout:.0f}s, still waiting for {waiting_for}; "
                    f"logs in {self.log_dir}"
                )
            try:
                result, waiting_for = probe()
                if result is not None:
                    return result
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500:  # not a server still starting: say so
                    raise LaunchError(
                        f"{exc.request.method} {exc.request.url.path} answered "
                        f"{exc.response.status_code}; logs in {self.log_dir}"
                    ) from exc
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(1.0)

    def _answers(self, path: str) -> tuple[bool | None, str]:
        with self._client() as client:
            ok = client.get(path).status_code == 200
        return (True, "") if ok else (None, f"the api-server to answer GET {path} with 200")

    def _healthy_with_dags(self) -> tuple[dict[str, dict[str, Any]] | None, str]:
        import httpx

        with self._client() as client:
            health = client.get("/api/v2/monitor/health").json()
        unhealthy = [
            name
            for name in ("metadatabase", "scheduler", "dag_processor", "triggerer")
            if (health.get(name) or {}).get("status") != "healthy"
        ]
        if unhealthy:
            return None, ", ".join(unhealthy)
        dags = {}
        for dag_id in DAG_IDS:
            with contextlib.suppress(httpx.HTTPStatusError):
                dags[dag_id] = self.api("GET", f"/api/v2/dags/{dag_id}")
        if len(dags) < len(DAG_IDS):
            return None, "the dag-processor to parse " + ", ".join(DAG_IDS)
        return dags, ""

    def wait_docs(self, timeout: float = 300.0) -> str:
        """Wait for the dbt docs build; one line on what it left."""
        if self._docs_proc is None:
            return "dbt docs: not generated (--no-docs)"
        try:
            code = self._docs_proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self._docs_proc, signal.SIGKILL)
            code = -1
        self._docs_proc = None
        if code != 0:
            return f"dbt docs: `dbt docs generate` failed (exit {code}), see {self.log_path('dbt-docs')}"
        return f"dbt docs: {self.settings.dbt_docs_dir / 'index.html'}"

    def set_paused(self, paused: bool) -> dict[str, dict[str, Any]]:
        return {
            dag_id: self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
            for dag_id in DAG_IDS
        }

    def dead_component(self) -> str | None:
        return next((name for name, proc in self.procs.items() if proc.poll() is not None), None)

    # -- stop ----------------------------------------------------------------------------
    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every component's process group (Airflow shuts its workers down on it),
        then SIGKILL whatever is left of the groups after `grace` seconds. Idempotent."""
        procs = list(self.procs.values())
        if self._docs_proc is not None:
            procs.append(self._docs_proc)
        for proc in procs:
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        # Also the groups whose leader is gone: a worker or task process may still be in it.
        for proc in procs:
            _kill_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()
        self._docs_proc = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> LocalAirflow:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The child leads its own session, so its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM/SIGHUP."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Once: a second Ctrl-C during the shutdown must not cut the cleanup short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _describe_dags(dags: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for dag_id, dag in dags.items():
        schedule = dag.get("timetable_summary") or dag.get("timetable_description") or "-"
        state = "paused" if dag.get("is_paused") else "active"
        lines.append(f"{dag_id:<16} {schedule:<12} {state}")
    return lines


def run_airflow(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    unpause = unpause_setting(os.environ.get(UNPAUSE_VARIABLE))
    local = LocalAirflow(settings, host=args.host, port=args.port, docs=args.docs, mlflow_url=args.mlflow_url)
    user, password = ui_login(settings)
    with _stop_on_signals():
        try:
            print(
                f"starting Airflow on {settings.home / 'airflow'} (logs: {local.log_dir}/*.out) ...",
                flush=True,
            )
            started = time.monotonic()
            local.start()
            dags = local.wait_ready(args.timeout)
            docs = local.wait_docs()
            if unpause is not None:
                dags = local.set_paused(not unpause)
            print(
                "\n".join(
                    [
                        "",
                        f"Airflow UI  {local.url}",
                        f"login       {user} / {password}   (kept in {passwords_file(settings)})",
                        "DAGs        " + "\n            ".join(_describe_dags(dags)),
                        "            active: triggers and backfills run at once, schedules while up; "
                        f"{UNPAUSE_VARIABLE}=0 make airflow pauses them",
                        f"CLI         export AIRFLOW_HOME={airflow_cfg(settings).parent}   "
                        "(then .venv/bin/airflow ..., docs/operating.md)",
                        f"docs        {docs}",
                        f"            GX Data Docs: {settings.gx_data_docs_dir / 'index.html'}",
                        "            both, and MLflow, are in the Docs menu of the UI",
                        f"MLflow UI   make mlflow -> {args.mlflow_url}",
                        f"up in {time.monotonic() - started:.0f} s. {READY_LINE}",
                    ]
                ),
                flush=True,
            )
            while True:
                dead = local.dead_component()
                if dead is not None:
                    print(
                        f"airflow {dead} exited; last lines of its log:\n{local.tail(dead)}", file=sys.stderr
                    )
                    return 1
                time.sleep(1.0)
        except _Stop as stop:
            print(f"\n{stop}: stopping Airflow ...", flush=True)
            return 0
        except LaunchError as exc:
            print(f"make airflow: {exc}", file=sys.stderr)
            return 1
        finally:
            running = bool(local.procs)
            local.stop()
            if running:
                print("Airflow stopped.", flush=True)


def mlflow_command(settings: Settings, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """`mlflow ui` on the demo's tracking store and artifact folder, one worker."""
    artifacts = settings.mlflow_artifact_root.as_uri()
    return [
        _bin("mlflow"),
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--default-artifact-root",
        artifacts,
        # Without it `mlflow ui` proxies uploads into ./mlartifacts of the current folder.
        "--artifacts-destination",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def mlflow_environ() -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The job runner is a second server process that the UI does not need.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def run_mlflow(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
    command = mlflow_command(settings, host=args.host, port=args.port)
    print(
        f"MLflow UI on http://{args.host}:{args.port} ({settings.mlflow_tracking_uri}); Ctrl-C stops it",
        flush=True,
    )
    # exec: mlflow receives Ctrl-C itself and stops its own workers.
    os.execve(command[0], command, mlflow_environ())  # noqa: S606 - fixed binary, argument list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlsys_local.launcher", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command")
    air = sub.add_parser("airflow", help="api-server, scheduler, dag-processor, triggerer (default)")
    air.add_argument("--host", default=os.environ.get("AIRFLOW_HOST", "127.0.0.1"))
    air.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    air.add_argument("--mlflow-url", default=os.environ.get("MLSYS_MLFLOW_UI_URL", MLFLOW_UI_URL))
    air.add_argument("--no-docs", dest="docs", action="store_false", help="skip `dbt docs generate`")
    air.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a healthy start")
    ml = sub.add_parser("mlflow", help="the MLflow UI on the same tracking store")
    ml.add_argument("--host", default=os.environ.get("MLFLOW_HOST", "127.0.0.1"))
    ml.add_argument("--port", type=int, default=int(os.environ.get("MLFLOW_PORT", "5000")))
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] or ["airflow"])
    try:
        if args.command == "mlflow":
            return run_mlflow(args)
        return run_airflow(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
