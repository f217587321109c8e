"""The `airflow` CLI on the local instance, typed as docs/operating.md types it.

A home laid out as a clone's after `make demo` (`var/` with the session's generated CRM, no
model yet) runs the api-server, scheduler, dag-processor and triggerer the way `make airflow`
starts them (`mlsys_local.launcher.LocalAirflow`, on a free port). Then, from a shell that has
only the documented line (`export AIRFLOW_HOME=$PWD/var/airflow`) and no MLSYS_* variable:
`airflow dags trigger retrain --conf '{"force": true}'` runs to success (a promotion: the
home had no champion), `airflow backfill create` over three nights (one already scored)
publishes three partitions, and the asset consumer `export_top_leads` exports each night
after its publish. Bad conf is refused at trigger time. Once the instance is stopped,
`airflow dags test score_leads 2026-06-01` and `airflow tasks test` work on the same home.
Each command string is asserted to appear verbatim in docs/operating.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow.parquet as pq
import pytest

from mlsys.settings import REPO_ROOT, Settings
from mlsys_local.launcher import LocalAirflow
from tests.live import free_port

pytestmark = pytest.mark.slow

OPERATING = REPO_ROOT / "docs" / "operating.md"
ENV_LINE = "export AIRFLOW_HOME=$PWD/var/airflow"
TRIGGER = """.venv/bin/airflow dags trigger retrain --conf '{"force": true}'"""
BAD_TRIGGER = """.venv/bin/airflow dags trigger retrain --conf '{"force": "yes"}'"""
DAGS_LIST = ".venv/bin/airflow dags list"
LIST_RUNS = ".venv/bin/airflow dags list-runs retrain"
DAGS_TEST = ".venv/bin/airflow dags test score_leads 2026-06-01"
TASKS_TEST = ".venv/bin/airflow tasks test score_leads validate_raw 2026-06-01"
BACKFILL = (
    ".venv/bin/airflow backfill create --dag-id score_leads --from-date 2026-05-30 --to-date 2026-06-02"
)
BACKFILL_ONE = (
    ".venv/bin/airflow backfill create --dag-id score_leads --from-date 2026-06-01 --to-date 2026-06-02"
)
REPROCESS = " --reprocess-behavior completed"
NIGHTS = [date(2026, 5, 30), date(2026, 5, 31), date(2026, 6, 1)]


@dataclass
class Clone:
    root: Path
    settings: Settings
    local: LocalAirflow

    def sh(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`command` after the documented line, in a shell with no MLSYS_*/AIRFLOW_* variable,
        from the clone's root (what a second terminal in the repository has)."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        return subprocess.run(
            ["bash", "-c", f"{ENV_LINE} && {command}"],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def sh_again_if_locked(self, command: str, tries: int = 3) -> subprocess.CompletedProcess[str]:
        """`sh`, run again as docs/operating.md says when SQLite refused a write racing the
        scheduler's ("database is locked": Airflow removes the half-made backfill first)."""
        for _ in range(tries - 1):
            done = self.sh(command)
            if done.returncode == 0 or "database is locked" not in done.stderr:
                return done
            time.sleep(3.0)
        return self.sh(command)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.local.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])

    def wait_runs(self, dag_id: str, done: Any, timeout: float, what: str) -> list[dict[str, Any]]:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            self.local.check_alive()
            try:
                runs = self.runs(dag_id)
            except httpx.TimeoutException:
                # A busy machine can keep SQLite's one writer long enough to time one poll
                # out; the deadline below still bounds the wait.
                runs = []
            if runs and done(runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not done after {timeout:.0f}s: {runs}\n{self.logs()}")
            time.sleep(2.0)

    def logs(self) -> str:
        return "\n".join(self.local.tail(name) for name in ("scheduler", "dag-processor"))


@pytest.fixture(scope="module")
def clone(crm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    root = tmp_path_factory.mktemp("clone")
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    home = root / "var"
    shutil.copytree(crm / "raw", home / "data" / "raw")
    # The launcher's environment as `make airflow` gives it: MLSYS_HOME, the session's knobs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLSYS_MLFLOW_ARTIFACTS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    env["MLSYS_HOME"] = str(home)
    with mock.patch.dict(os.environ, env, clear=True):
        settings = Settings.from_env()
        local = LocalAirflow(settings, port=free_port(), docs=False)
        try:
            local.start()
        except BaseException:
            local.stop()
            raise
    # The launcher pointed this process's environment at the clone while starting: undone
    # above; the session's Airflow settings stay as they were.
    try:
        local.wait_ready(300)
        yield Clone(root, settings, local)
    finally:
        local.stop()


def test_the_commands_are_the_documented_ones() -> None:
    text = OPERATING.read_text()
    for command in (
        ENV_LINE,
        TRIGGER,
        BAD_TRIGGER,
        DAGS_LIST,
        LIST_RUNS,
        DAGS_TEST,
        TASKS_TEST,
        BACKFILL_ONE,
        BACKFILL,
        BACKFILL + REPROCESS,
        BACKFILL + REPROCESS + " --dry-run",
    ):
        assert command in text, command
    # The README's doorway shows the same three lines, copied from what this module runs.
    readme = (REPO_ROOT / "README.md").read_text()
    for command in (ENV_LINE, TRIGGER, BACKFILL):
        assert command in readme, command


def test_the_cli_talks_to_the_running_instance(clone: Clone) -> None:
    listed = clone.sh(DAGS_LIST + " -o json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    line = next(x for x in reversed(listed.stdout.splitlines()) if x.startswith("[{"))
    dags = {d["dag_id"]: d for d in json.loads(line)}
    assert {"score_leads", "retrain", "export_top_leads", "score_on_demand"} <= set(dags)
    assert all(Path(d["fileloc"]).parent == REPO_ROOT / "dags" for d in dags.values()), dags
    # Active when created (docs/operating.md, "Paused or not"); the CLI prints booleans as text.
    assert {str(dags[d]["is_paused"]) for d in ("score_leads", "retrain", "export_top_leads")} == {"False"}


def test_bad_conf_is_refused_at_trigger_time(clone: Clone) -> None:
    before = len(clone.runs("retrain"))
    refused = clone.sh(BAD_TRIGGER)
    assert refused.returncode != 0
    assert "'yes' is not of type 'boolean'" in refused.stderr, refused.stderr[-2000:]
    assert len(clone.runs("retrain")) == before


def test_trigger_retrain_runs_to_success_and_announces_the_champion(clone: Clone) -> None:
    from mlsys import registry

    triggered = clone.sh(TRIGGER)
    assert triggered.returncode == 0, triggered.stderr[-3000:]
    runs = clone.wait_runs(
        "retrain",
        lambda runs: runs and all(r["state"] in ("success", "failed") for r in runs),
        timeout=600,
        what="the triggered retrain",
    )
    [run] = runs
    assert (run["run_type"], run["state"], run["conf"]) == ("manual", "success", {"force": True})
    listed = clone.sh(LIST_RUNS)
    assert listed.returncode == 0 and run["dag_run_id"] in listed.stdout, listed.stdout[-2000:]
    champion = registry.alias_version(clone.settings, registry.CHAMPION)
    assert champion is not None and str(champion.version) == "1"
    events = clone.local.api("GET", "/api/v2/assets/events?limit=100")["asset_events"]
    extras = {e["uri"].rstrip("/"): e["extra"] for e in events if e["source_dag_id"] == "retrain"}
    promoted = {
        "model_name": "lead_scoring",
        "version": "1",
        "promoted": True,
        "champion_version": "1",
        # No as_of in conf, no logical date: the landing's complete_as_of, not today.
        "as_of": "2026-06-01",
    }
    assert extras["mlsys://models/lead_scoring"] == promoted
    assert extras["mlsys://models/lead_scoring/champion"] == promoted


def test_backfill_three_nights_one_already_scored_then_the_consumer(clone: Clone) -> None:
    settings = clone.settings

    def backfilled(count: int) -> Any:
        def done(runs: list[dict[str, Any]]) -> bool:
            mine = [r for r in runs if r["run_type"] == "backfill"]
            return len(mine) == count and all(r["state"] in ("success", "failed") for r in mine)

        return done

    # One night first: the night the range below finds already scored.
    first = clone.sh_again_if_locked(BACKFILL_ONE)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = clone.wait_runs("score_leads", backfilled(1), timeout=600, what="the one-night backfill")
    [one] = [r for r in runs if r["run_type"] == "backfill"]
    assert one["state"] == "success", f"{one}\n{clone.logs()}"
    # One backfill per DAG at a time: the next waits until the scheduler closes this one.
    deadline = time.monotonic() + 120
    while any(
        b["completed_at"] is None
        for b in clone.local.api("GET", "/api/v2/backfills?dag_id=score_leads")["backfills"]
    ):
        assert time.monotonic() < deadline, "the one-night backfill was never marked completed"
        time.sleep(2.0)
    scored_first = settings.partition_dir(NIGHTS[-1]) / "part-00000.parquet"
    first_run_ids = set(pq.read_table(scored_first, columns=["run_id"]).column("run_id").to_pylist())
    assert first_run_ids == {f"backfill__{NIGHTS[-1]}T02:00:00+00:00"}
    mtime = scored_first.stat().st_mtime_ns

    # The range: without the flag the scored night is skipped; the dry run with the flag would
    # run all three again.
    rerun = clone.sh(BACKFILL + REPROCESS + " --dry-run")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [f"{n} 02:00:00+00:00" in rerun.stdout for n in NIGHTS] == [True, True, True], rerun.stdout
    created = clone.sh_again_if_locked(BACKFILL)
    assert created.returncode == 0, created.stderr[-3000:]
    runs = clone.wait_runs("score_leads", backfilled(3), timeout=900, what="the backfill")
    backfills = [r for r in runs if r["run_type"] == "backfill"]
    assert sorted(r["logical_date"][:10] for r in backfills) == [str(n) for n in NIGHTS]
    assert {r["state"] for r in backfills} == {"success"}
    for night in NIGHTS:
        run_ids = pq.read_table(settings.partition_dir(night), columns=["run_id"]).column("run_id")
        assert set(run_ids.to_pylist()) == {f"backfill__{night}T02:00:00+00:00"}, night
    assert scored_first.stat().st_mtime_ns == mtime, "the night already scored was scored again"
    # Any later tick Airflow runs (catchup=False after a backfill) is past the landing: skipped.
    for run in runs:
        if run["run_type"] == "scheduled" and run["state"] == "success":
            tis = clone.local.api(
                "GET", f"/api/v2/dags/score_leads/dagRuns/{run['dag_run_id']}/taskInstances"
            )
            assert {t["state"] for t in tis["task_instances"]} == {"skipped"}, tis

    # The consumer followed each night.
    from mlsys import exports

    def exported(runs: list[dict[str, Any]]) -> bool:
        files = all(exports.top_leads_path(settings, n).exists() for n in NIGHTS)
        return files and bool(runs) and all(r["state"] in ("success", "failed") for r in runs)

    consumer = clone.wait_runs("export_top_leads", exported, timeout=300, what="the consumer")
    assert {r["run_type"] for r in consumer} == {"asset_triggered"}
    assert {r["state"] for r in consumer} == {"success"}, clone.logs()
    for night in NIGHTS:
        with exports.top_leads_path(settings, night).open() as handle:
            assert len(handle.read().splitlines()) == 1 + exports.TOP_N

    # The asset events carry what consumers key on. (Read once the consumer's runs have started:
    # Airflow 3.3.2 answers 500 to GET /assets/events while a run an event created is queued.)
    events = clone.local.api("GET", "/api/v2/assets/events?limit=100")["asset_events"]
    published = [e["extra"] for e in events if e["uri"].rstrip("/") == "mlsys://scored_leads"]
    assert sorted(e["score_date"] for e in published) == [str(n) for n in NIGHTS]
    for extra in published:
        assert set(extra) == {"score_date", "model_name", "model_version", "rows", "partition"}
        assert (extra["model_name"], extra["model_version"]) == ("lead_scoring", "1")
        night = date.fromisoformat(extra["score_date"])
        assert (
            extra["rows"] == pq.read_metadata(settings.partition_dir(night) / "part-00000.parquet").num_rows
        )
        assert extra["partition"] == f"scored_leads/score_date={night}"


def test_dags_test_and_tasks_test_on_the_same_home_once_it_is_stopped(clone: Clone) -> None:
    """`dags test` / `tasks test` run the DAG in the CLI's own process; with the scheduler up
    it would also take the run over (docs/operating.md). The last test of the module."""
    clone.local.stop()
    settings = clone.settings
    gated = clone.sh(TASKS_TEST, timeout=600)
    assert gated.returncode == 0, gated.stdout[-2000:] + gated.stderr[-3000:]
    tested = clone.sh(DAGS_TEST, timeout=900)
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-3000:]
    assert "state=success" in tested.stdout + tested.stderr
    table = pq.read_table(settings.partition_dir(NIGHTS[-1]), columns=["run_id"])
    [run_id] = set(table.column("run_id").to_pylist())
    assert run_id.startswith("manual__"), run_id
