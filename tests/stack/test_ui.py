"""`make airflow` and `make mlflow` checked in a real browser.

The launcher (`python -m mlsys_local.launcher`, what `make airflow` runs) is started on the
session's MLSYS_HOME after the `published` fixture, so the UI must show what the demo left: the
`score_leads` run, the registered champion. Headless Chromium, driven through chromedriver's
W3C WebDriver HTTP API (no Selenium in the locked environment), logs in with the generated
password, opens the DAGs, the `retrain` trigger form and the docs the plugin links, and saves
screenshots to test-artifacts/. The last test sends the launcher SIGINT (Ctrl-C) and checks
that every process it started is gone.

Chromium and chromedriver are Debian packages (`.ci/install-system-deps.sh`): without them
the module skips on a laptop and fails under CI=true.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from mlsys import registry
from mlsys.settings import REPO_ROOT, Settings
from mlsys_local.airflow_env import passwords_file, ui_login
from mlsys_local.launcher import (
    API_TIMEOUT_SECONDS,
    EXECUTION_API_HEALTH,
    READY_LINE,
    LocalAirflow,
    mlflow_command,
    unpause_setting,
)
from tests.live import free_port

pytestmark = pytest.mark.slow

ARTIFACTS = REPO_ROOT / "test-artifacts"
SCORE_LEADS_TASKS = (
    "validate_raw",
    "build_features",
    "validate_features",
    "plan_scoring",
    "score",
    "publish",
)
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.5) -> T:
    """Poll until `probe` returns something truthy (the SPA renders asynchronously)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # the page may be between two renders
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not installed: run .ci/install-system-deps.sh (Debian: chromium, chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# -- headless Chromium over WebDriver ------------------------------------------------------
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


class Browser:
    """The few WebDriver commands these tests need: navigate, find, type, click, run a
    script, screenshot."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path) -> None:
        port = free_port()
        self.driver = subprocess.Popen(
            [chromedriver, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0)
        self.session = ""
        try:
            wait_for("chromedriver", lambda: self.http.get("/status").json()["value"]["ready"], 30)
            args = [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
            ]
            capabilities = {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}
            response = self.http.post("/session", json={"capabilities": {"alwaysMatch": capabilities}})
            self.session = response.json()["value"]["sessionId"]
        except BaseException:
            self.quit()
            raise

    def command(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"/session/{self.session}{path}", json=body)
        value = response.json()["value"]
        if response.status_code >= 400:
            raise RuntimeError(f"WebDriver {method} {path}: {value.get('message', value)}")
        return value

    def get(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def script(self, source: str, *args: Any) -> Any:
        return self.command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def find_all(self, css: str) -> list[str]:
        found = self.command("POST", "/elements", {"using": "css selector", "value": css})
        return [item[ELEMENT] for item in found]

    def text(self, element: str) -> str:
        return str(self.command("GET", f"/element/{element}/text"))

    def type(self, element: str, text: str) -> None:
        self.command("POST", f"/element/{element}/value", {"text": text})

    def click(self, element: str) -> None:
        self.command("POST", f"/element/{element}/click", {})

    def button(self, label: str) -> str:
        """The first visible button whose text is `label`."""
        return wait_for(
            f"a button {label!r}",
            lambda: next((b for b in self.find_all("button") if self.text(b).strip() == label), None),
        )

    def body_text(self) -> str:
        return str(self.script("return document.body ? document.body.innerText : ''"))

    def wait_for_text(self, what: str, *needles: str, shot: str, timeout: float = 60.0) -> str:
        """The page's text once it holds every needle; a screenshot `<shot>-timeout` if never."""
        try:
            return wait_for(
                what, lambda: (t := self.body_text()) and all(n in t for n in needles) and t, timeout
            )
        except AssertionError:
            self.screenshot(f"{shot}-timeout")
            raise

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(self.command("GET", "/screenshot")))
        return path

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            if self.session:
                self.http.delete(f"/session/{self.session}")
        self.http.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.driver.pid, signal.SIGKILL)
        self.driver.wait(10)


# -- the processes under test --------------------------------------------------------------
def python_command() -> list[str]:
    """The interpreter for a launcher subprocess, under coverage when this session measures
    it: pytest-cov combines the parallel data file it leaves at exit."""
    import coverage

    if coverage.Coverage.current() is None:
        return [sys.executable]
    return [
        sys.executable,
        "-m",
        "coverage",
        "run",
        "--parallel-mode",
        f"--rcfile={REPO_ROOT / 'pyproject.toml'}",
    ]


def coverage_env() -> dict[str, str]:
    import coverage

    current = coverage.Coverage.current()
    return {} if current is None else {"COVERAGE_FILE": os.path.abspath(current.config.data_file)}


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    output: Path
    url: str
    user: str
    password: str
    mlflow: subprocess.Popen[bytes]
    mlflow_url: str
    mlflow_output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        procs = []
        for proc in (self.proc, self.mlflow):
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(proc.pid)
                procs += [root, *root.children(recursive=True)]
        return procs

    def interrupt(self, timeout: float = 90.0) -> tuple[int | None, int | None]:
        """Ctrl-C for both launchers; their exit codes (None: did not stop in time)."""
        codes: list[int | None] = []
        for proc in (self.proc, self.mlflow):
            if proc.poll() is None:
                # As a terminal does: SIGINT to the foreground process group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
        for proc in (self.proc, self.mlflow):
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes[0], codes[1]


def _kill_leftovers(procs: list[psutil.Process]) -> None:
    """SIGKILL what is left of these processes and of their process groups (never this one's)."""
    groups = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.is_running():
                groups.add(os.getpgid(proc.pid))
                proc.kill()
    for group in groups - {os.getpgrp()}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)


@pytest.fixture(scope="module")
def local(published: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """`make airflow` and `make mlflow` on the session's home, on free ports, both started at
    once (each takes most of a minute on 2 cores)."""
    out_dir = tmp_path_factory.mktemp("local-airflow")
    port, mlflow_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    env = {k: v for k, v in os.environ.items() if k != "MLSYS_UNPAUSE"}
    output, mlflow_output = out_dir / "airflow.out", out_dir / "mlflow.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [
                *python_command(),
                "-m",
                "mlsys_local.launcher",
                "airflow",
                "--port",
                str(port),
                "--mlflow-url",
                mlflow_url,
            ],
            cwd=REPO_ROOT,
            env={**env, **coverage_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    with open(mlflow_output, "wb") as out:
        mlflow = subprocess.Popen(
            [sys.executable, "-m", "mlsys_local.launcher", "mlflow", "--port", str(mlflow_port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    launched = Launched(proc, output, f"http://127.0.0.1:{port}", "", "", mlflow, mlflow_url, mlflow_output)
    started: list[psutil.Process] = []
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"make airflow exited with {proc.returncode}:\n{launched.text()}")
            return READY_LINE in launched.text()

        wait_for("make airflow to be up", ready, timeout=300, interval=1.0)
        match = re.search(r"^login\s+(\S+) / (\S+)", launched.text(), re.MULTILINE)
        assert match, launched.text()
        launched.user, launched.password = match.group(1), match.group(2)
        started = launched.descendants()
        yield launched
    finally:
        started += launched.descendants()
        launched.interrupt()
        _kill_leftovers(started)
        for leader in (proc, mlflow):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser(local: Launched, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One Chromium for the module, logged in to the local Airflow."""
    chromium, chromedriver = require_binary("chromium"), require_binary("chromedriver")
    b = Browser(chromium, chromedriver, tmp_path_factory.mktemp("chromium-profile"))
    try:
        b.get(f"{local.url}/")
        user_input = wait_for("the login form", lambda: b.find_all("input[name=username]"))[0]
        b.type(user_input, local.user)
        b.type(b.find_all("input[name=password]")[0], local.password)
        b.screenshot("ui-login")
        b.click(b.find_all("button[type=submit]")[0])
        wait_for("the home page after login", lambda: "/auth/login" not in b.script("return location.href"))
        yield b
    finally:
        b.quit()


def api_token(local: Launched) -> str:
    response = httpx.post(
        f"{local.url}/auth/token", json={"username": local.user, "password": local.password}
    )
    return str(response.json()["access_token"])


def api(local: Launched, path: str) -> Any:
    headers = {"Authorization": f"Bearer {api_token(local)}"}
    response = httpx.get(f"{local.url}{path}", headers=headers, timeout=API_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


# -- tests ---------------------------------------------------------------------------------
def test_unpause_setting() -> None:
    assert unpause_setting(None) is None
    assert unpause_setting("") is None
    assert unpause_setting("1") is True
    assert unpause_setting("0") is False
    with pytest.raises(ValueError, match="MLSYS_UNPAUSE"):
        unpause_setting("maybe")


def test_mlflow_command_uses_the_demo_store(settings: Settings) -> None:
    command = mlflow_command(settings, port=5001)
    assert command[1] == "ui"
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--backend-store-uri"] == settings.mlflow_tracking_uri
    assert options["--default-artifact-root"] == settings.mlflow_artifact_root.as_uri()
    assert options["--host"] == "127.0.0.1"
    assert (options["--port"], options["--workers"]) == ("5001", "1")


def test_login_is_generated_once_and_kept_out_of_git(local: Launched, settings: Settings) -> None:
    path = passwords_file(settings)
    assert path.is_relative_to(settings.home / "airflow")
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {local.user: local.password}
    # The same login on the next start, not a new one.
    assert ui_login(settings) == (local.user, local.password)
    if (REPO_ROOT / ".git").exists() and shutil.which("git"):
        # Where `make airflow` keeps it (MLSYS_HOME=var) is ignored by git.
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "var/airflow/simple_auth_manager_passwords.json"], cwd=REPO_ROOT
        )
        assert ignored.returncode == 0
    # The api-server checks it: no token, no DAGs; a wrong password, no token.
    assert httpx.get(f"{local.url}/api/v2/dags").status_code == 401
    wrong = httpx.post(f"{local.url}/auth/token", json={"username": local.user, "password": "not-it"})
    assert wrong.status_code == 401
    assert local.url.startswith("http://127.0.0.1:")


def test_dags_are_active_with_their_schedules_and_the_pool(local: Launched) -> None:
    """Active when created (docs/operating.md, "Paused or not"): a trigger runs at once."""
    score_leads, retrain = api(local, "/api/v2/dags/score_leads"), api(local, "/api/v2/dags/retrain")
    assert (score_leads["timetable_summary"], score_leads["is_paused"]) == ("0 2 * * *", False)
    assert (retrain["timetable_summary"], retrain["is_paused"]) == ("0 0 * * 0", False)
    # Activation scheduled the next tick, not a past night: no scheduled run exists.
    runs = api(local, "/api/v2/dags/score_leads/dagRuns")["dag_runs"]
    assert not [r for r in runs if r["run_type"] == "scheduled"], runs
    assert api(local, "/api/v2/pools/warehouse")["slots"] == 1
    out = local.text()
    assert "score_leads      0 2 * * *    active" in out
    assert "retrain          0 0 * * 0    active" in out
    assert f"export AIRFLOW_HOME={Settings.from_env().home / 'airflow'}" in out
    # What MLSYS_UNPAUSE=0 does at start, then =1.
    port = int(local.url.rsplit(":", 1)[1])
    launcher = LocalAirflow(Settings.from_env(), port=port)
    paused = launcher.set_paused(True)
    assert {dag_id: dag["is_paused"] for dag_id, dag in paused.items()} == {
        "score_leads": True,
        "retrain": True,
        "export_top_leads": True,
    }
    assert not any(dag["is_paused"] for dag in launcher.set_paused(False).values())


def test_the_export_left_by_the_demo_runs_once_on_its_first_try(local: Launched) -> None:
    """The demo's published night queued an `export_top_leads` run (an asset event): the
    scheduler, started once the execution API answers (launcher.wait_ready), runs it at start
    and its task succeeds on try 1. Started with the others, the task called the
    execution API while the server was not up or was building that API; that try was killed."""

    def finished() -> list[dict[str, Any]] | None:
        runs = api(local, "/api/v2/dags/export_top_leads/dagRuns")["dag_runs"]
        runs = [r for r in runs if r["run_type"] == "asset_triggered"]
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    runs = wait_for("the export run the demo left to finish", finished, timeout=180, interval=2.0)
    assert [r["state"] for r in runs] == ["success"], runs
    path = f"/api/v2/dags/export_top_leads/dagRuns/{runs[0]['dag_run_id']}/taskInstances"
    tries = [(ti["task_id"], ti["try_number"], ti["state"]) for ti in api(local, path)["task_instances"]]
    assert tries == [("export", 1, "success")]
    # The server's access log, in order: the launcher's probe before the task's first call.
    log = (Settings.from_env().home / "airflow" / "logs" / "api-server.out").read_text()
    assert log.index(f"path={EXECUTION_API_HEALTH} ") < log.index("path=/execution/task-instances/")


def test_score_leads_page_shows_its_tasks_and_the_demo_run(local: Launched, browser: Browser) -> None:
    runs = api(local, "/api/v2/dags/score_leads/dagRuns")["dag_runs"]
    demo_run = next(r for r in runs if r["logical_date"].startswith("2026-06-01") and r["state"] == "success")

    browser.get(f"{local.url}/dags/score_leads")
    text = browser.wait_for_text("the score_leads tasks", *SCORE_LEADS_TASKS, shot="ui-score_leads")
    # One line per task in the grid ("score [ ]": mapped); "score" alone is in "score_leads" too.
    lines = {line.strip().removesuffix("[ ]").strip() for line in text.splitlines()}
    assert set(SCORE_LEADS_TASKS) <= lines, sorted(lines)
    assert "0 2 * * *" in text
    browser.screenshot("ui-score_leads")

    browser.get(f"{local.url}/dags/score_leads/runs")
    browser.wait_for_text("the demo's score_leads run", demo_run["dag_run_id"], shot="ui-score_leads-runs")
    browser.screenshot("ui-score_leads-runs")


def trigger_dialog_text(browser: Browser) -> str:
    # Popovers are dialogs too (the grid's options): take the trigger form's.
    return str(
        browser.script(
            "const d = Array.from(document.querySelectorAll('[role=dialog]'))"
            ".find(e => e.innerText.includes('Trigger Dag'));"
            "return d ? d.innerText : ''"
        )
    )


def close_trigger_dialog(browser: Browser) -> None:
    close = browser.script(
        "return Array.from(document.querySelectorAll('[role=dialog]'))"
        ".find(e => e.innerText.includes('Trigger Dag')).querySelector('button[aria-label=Close]')"
    )
    browser.click(close[ELEMENT])


def test_retrain_trigger_form_shows_force_and_tune(local: Launched, browser: Browser) -> None:
    runs_before = api(local, "/api/v2/dags/retrain/dagRuns")["total_entries"]
    browser.get(f"{local.url}/dags/retrain")
    browser.click(browser.button("Trigger"))
    text = wait_for(
        "the trigger form with its params", lambda: (t := trigger_dialog_text(browser)) and "tune" in t and t
    )
    assert "Trigger Dag - retrain" in text
    assert re.search(r"^force\b", text, re.MULTILINE), text
    assert re.search(r"^tune\b", text, re.MULTILINE), text
    assert "Train even without drift" in text
    browser.screenshot("ui-retrain-trigger")
    # Closed, never submitted: a retrain run here would change the session's champion.
    close_trigger_dialog(browser)
    assert api(local, "/api/v2/dags/retrain/dagRuns")["total_entries"] == runs_before


def test_score_on_demand_trigger_form_shows_leads_and_as_of(local: Launched, browser: Browser) -> None:
    browser.get(f"{local.url}/dags/score_on_demand")
    browser.click(browser.button("Trigger"))
    text = wait_for(
        "the score_on_demand trigger form",
        lambda: (t := trigger_dialog_text(browser)) and "leads" in t and "as_of" in t and t,
    )
    assert "Trigger Dag - score_on_demand" in text
    assert re.search(r"^leads\b", text, re.MULTILINE), text
    assert re.search(r"^as_of\b", text, re.MULTILINE), text
    assert "Up to 100 leads" in text
    browser.screenshot("ui-score_on_demand-trigger")
    close_trigger_dialog(browser)


def doc_block(path: Path, heading: str) -> str:
    """The first ```bash block under `heading` in a Markdown file, as written."""
    text = path.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, f"no bash block under {heading} in {path}"
    return match.group(1)


def test_the_documented_rest_sequence_returns_a_result(local: Launched) -> None:
    """docs/on-demand.md's curl lines, run as written by bash on this `make airflow`, whose
    Airflow pauses new DAGs: score_on_demand was created unpaused, so the DAG run ends
    instead of staying queued, and both doors return a score (AIRFLOW_PORT set, as a user
    who started `AIRFLOW_PORT=... make airflow` would have it)."""
    assert api(local, "/api/v2/dags/score_on_demand")["is_paused"] is False
    script = doc_block(REPO_ROOT / "docs" / "on-demand.md", "## Over REST")
    port = local.url.rsplit(":", 1)[1]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "AIRFLOW_PORT": port},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sync, rest = done.stdout.split("\nsuccess\n")
    assert json.loads(sync)["results"][0]["lead_id"] == 42
    (result,) = json.loads(rest)
    assert result["lead_id"] == 42 and 0.0 <= result["score"] <= 1.0


def test_docs_are_linked_from_the_ui(local: Launched, browser: Browser) -> None:
    browser.get(f"{local.url}/")
    browser.click(browser.button("Docs"))
    # The menu renders Airflow's own items first; wait for the plugin's, not for any item.
    links = wait_for(
        "the plugin's links in the Docs menu",
        lambda: (
            (
                found := browser.script(
                    "return Object.fromEntries(Array.from(document.querySelectorAll('[role=menuitem]'))"
                    ".map(e => [e.innerText.trim(), e.getAttribute('href')]))"
                )
            )
            and "dbt docs" in found
            and found
        ),
    )
    assert links["dbt docs"] == "/plugin/dbt-docs"
    assert links["GX Data Docs"] == "/plugin/gx-data-docs"
    assert links["MLflow"] == local.mlflow_url

    def framed(url: str, expected: str) -> str:
        browser.get(url)
        probe = (
            "const f = document.querySelector('iframe');"
            "return f && f.contentDocument && f.contentDocument.body ? f.contentDocument.body.innerText : ''"
        )
        return wait_for(
            f"{expected!r} in the frame of {url}",
            lambda: (t := browser.script(probe)) and expected in t and t,
        )

    dbt = framed(f"{local.url}/plugin/dbt-docs", "Welcome to the auto-generated documentation")
    assert "mlsys" in dbt
    browser.screenshot("ui-dbt-docs")
    gx = framed(f"{local.url}/plugin/gx-data-docs", "Expectation Suites")
    assert "Data Docs" in gx
    # The files are for logged-in users only, and only the files of the two sites.
    assert httpx.get(f"{local.url}/mlsys-docs/dbt/index.html").status_code == 401
    token = {"Authorization": f"Bearer {api_token(local)}"}
    assert httpx.get(f"{local.url}/mlsys-docs/dbt/catalog.json", headers=token).status_code == 200
    escape = f"{local.url}/mlsys-docs/gx/%2e%2e/%2e%2e/%2e%2e/mlflow.db"
    assert httpx.get(escape, headers=token).status_code == 404


def test_mlflow_ui_shows_the_champion(local: Launched, browser: Browser, settings: Settings) -> None:
    def healthy() -> bool:
        if local.mlflow.poll() is not None:
            raise AssertionError(f"make mlflow exited:\n{local.mlflow_output.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{local.mlflow_url}/health", timeout=5).status_code == 200
        return False

    wait_for("the MLflow UI", healthy, timeout=240, interval=1.0)
    champion = registry.alias_version(settings, registry.CHAMPION)
    assert champion is not None
    model = httpx.get(
        f"{local.mlflow_url}/ajax-api/2.0/mlflow/registered-models/get", params={"name": settings.model_name}
    ).json()["registered_model"]
    assert {"alias": "champion", "version": str(champion.version)} in model["aliases"]

    browser.get(f"{local.mlflow_url}/#/models/{settings.model_name}")
    browser.wait_for_text(
        "the champion on the model page",
        "champion",
        f"Version {champion.version}",
        shot="ui-mlflow-model",
        timeout=120,
    )
    browser.screenshot("ui-mlflow-model")


def test_everything_listens_on_the_loopback_only(local: Launched) -> None:
    listening = []
    for proc in local.descendants():
        with contextlib.suppress(psutil.NoSuchProcess):
            listening += [
                (" ".join(proc.cmdline())[:60], conn.laddr.ip, conn.laddr.port)
                for conn in proc.net_connections(kind="inet")
                if conn.status == psutil.CONN_LISTEN
            ]
    ports = {port for _, _, port in listening}
    assert {int(local.url.rsplit(":", 1)[1]), int(local.mlflow_url.rsplit(":", 1)[1])} <= ports, listening
    assert all(ip == "127.0.0.1" for _, ip, _ in listening), listening


def test_ctrl_c_stops_every_process(local: Launched) -> None:
    started = local.descendants()
    commands = " | ".join(" ".join(p.cmdline()) for p in started if p.is_running())
    for component in ("api_server", "scheduler", "dag-processor", "triggerer", "mlflow"):
        assert component in commands, commands

    code, mlflow_code = local.interrupt()
    assert code == 0, local.text()
    assert "Airflow stopped." in local.text()
    assert mlflow_code is not None, "make mlflow did not stop on SIGINT"
    # The launchers have exited; give what they signalled a bounded moment to finish exiting.
    _, still_running = psutil.wait_procs(started, timeout=30)
    alive = [p for p in still_running if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    # Nothing listens any more (a bind could still fail on the browser's TIME_WAIT sockets).
    for url in (local.url, local.mlflow_url):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5).close()
