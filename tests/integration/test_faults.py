"""Faults injected into real runs (docs/reliability.md is the matrix these tests prove).

* a scoring process killed with SIGKILL while it writes: readers keep the previous partition,
  the re-run equals an uninterrupted run, one row per lead;
* two builds wanting the warehouse at once: they queue on the warehouse lock, neither fails
  with DuckDB's "Could not set lock on file";
* a real `mlflow server` that stops answering: the scoring tasks raise for a retry, the last
  try scores with the locally cached champion (logged, metric), and the cache follows the
  registry while it answers;
* no champion: the scoring task fails at once, saying to run retrain;
* a retrain killed halfway: the champion alias has not moved;
* an output folder that cannot be written (file size limit, a file where a folder belongs):
  a clear error, the previous partition intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from mlsys import bi, pipeline, registry, score
from mlsys.settings import REPO_ROOT, Settings
from tests.live import free_port

AS_OF = date(2026, 6, 1)
PY = sys.executable
COMPARED = ["lead_id", "score", "score_band", "score_percentile", "top_reasons", "model_version", "as_of"]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _table(folder: Path) -> Any:
    return pq.read_table(folder).select(COMPARED).sort_by("lead_id")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MLSYS_HOME": str(settings.home),
        "MLSYS_DATA_DIR": str(settings.data_dir),
        "MLSYS_WAREHOUSE": str(settings.warehouse),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.update(extra)
    return env


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[Any] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process ended (rc {proc.returncode}) before the fault point:\n{out}")
        if time.monotonic() > deadline:
            pytest.fail("the fault point never came")
        time.sleep(0.005)


SCORE_SCRIPT = (
    "import sys; from datetime import date; from mlsys import pipeline; from mlsys.settings import Settings; "
    "print(pipeline.score_and_publish(date.fromisoformat(sys.argv[1]), run_id=sys.argv[2], "
    "settings=Settings.from_env()))"
)


# -- SIGKILL in the middle of writing ------------------------------------------------------------


@pytest.mark.parametrize("kill_at", ["scoring a shard", "writing the ranked partition"])
def test_sigkill_while_writing_keeps_the_partition_and_the_rerun_is_exact(
    night_restored: Path, settings: Settings, kill_at: str
) -> None:
    published = night_restored
    uninterrupted = pipeline.score_and_publish(AS_OF, run_id="before-kill", settings=settings)
    before = _digest(published)
    expected = _table(published)
    pattern = "unranked-*.parquet.tmp" if kill_at == "scoring a shard" else score.PART_FILE
    # Small batches: the write takes a few hundred batches, so the kill lands in the middle.
    proc = subprocess.Popen(
        [PY, "-c", SCORE_SCRIPT, AS_OF.isoformat(), "killed"],
        env=_env(settings, MLSYS_SCORE_BATCH_SIZE="8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: any(settings.staging_dir.glob(f"score_date={AS_OF}.*/{pattern}")), proc, 120)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # Readers: the files and the BI view still show the previous partition, whole.
    assert _digest(published) == before
    with bi.connect(settings) as con:
        run_ids = con.execute(
            "select distinct run_id from scored_leads where score_date = ?", [AS_OF]
        ).fetchall()
    assert run_ids == [("before-kill",)]
    # The re-run: exactly one row per lead, the same rows as the uninterrupted run.
    rerun = pipeline.score_and_publish(AS_OF, run_id="rerun", settings=settings)
    table = _table(published)
    leads = pq.read_table(settings.lead_features_path(AS_OF), columns=["lead_id"]).column("lead_id")
    assert table.num_rows == len(set(table.column("lead_id").to_pylist())) == len(leads)
    assert rerun["rows"] == uninterrupted["rows"] == table.num_rows
    assert table.equals(expected)
    # The killed run's staging folder was removed by the re-run's plan.
    assert [p.name for p in settings.staging_dir.iterdir() if p.name.startswith(f"score_date={AS_OF}")] == []


# -- two runs want the warehouse -------------------------------------------------------------------


def test_builds_on_one_warehouse_queue_instead_of_failing(isolated_settings: Settings) -> None:
    """The test holds the warehouse lock as a running build would; two more builds (a backfill
    date and the nightly date, separate processes) wait for it, then run one after the other."""
    from mlsys import dbt

    s = isolated_settings
    dates = [date(2026, 5, 1), AS_OF]
    logs = [s.home / f"build-{d}.log" for d in dates]
    procs: list[subprocess.Popen[Any]] = []
    with dbt.warehouse_lock(s):
        for d, log in zip(dates, logs, strict=True):
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        [PY, "-m", "mlsys.cli", "features", "--as-of", d.isoformat()],
                        env=_env(s),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for proc, log in zip(procs, logs, strict=True):
            _wait_for(lambda log=log: "is being built by" in log.read_text(), proc, 120)
        # Both are waiting, neither has touched the warehouse file.
        assert all(p.poll() is None for p in procs)
    for proc in procs:
        assert proc.wait(300) == 0
    text = "".join(log.read_text() for log in logs)
    assert "Could not set lock" not in text
    for d in dates:
        assert pq.ParquetFile(s.lead_features_path(d)).metadata.num_rows > 0


def test_the_warehouse_pool_has_one_slot_and_holds_every_writer(airflow_db: dict[str, str]) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.pool import Pool

    assert Pool.get_pool("warehouse").slots == 1
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    writers = {("score_leads", "build_features"), ("retrain", "build_training_snapshots")}
    for dag_id, task_id in writers:
        assert bag.dags[dag_id].get_task(task_id).pool == "warehouse"
    # Nothing else writes the warehouse: every other task reads Parquet or in-memory DuckDB.
    for dag in bag.dags.values():
        for task in dag.tasks:
            if (dag.dag_id, task.task_id) not in writers:
                assert task.pool != "warehouse" or task.task_id.startswith("build_")


# -- MLflow unreachable ------------------------------------------------------------------------------


class MlflowServer:
    """A real `mlflow server` over a copy of the session's tracking store."""

    def __init__(self, store: Path, port: int, log: Path) -> None:
        self.store, self.port, self.log = store, port, log
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [
                    str(Path(PY).with_name("mlflow")),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.store}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        _wait_for(healthy, self.proc, 120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self.proc = None


class StatsdListener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])

    def lines(self) -> list[str]:
        out = []
        while True:
            try:
                out.extend(self.sock.recv(65535).decode().splitlines())
            except TimeoutError:
                return out


@pytest.fixture(scope="module")
def remote(published: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A home whose MLflow is a live server (a copy of the session's store) and whose features
    are the session's; the server can be stopped and started again."""
    home = tmp_path_factory.mktemp("remote-home")
    store = home / "mlflow.db"
    shutil.copyfile(settings.home / "mlflow.db", store)
    server = MlflowServer(store, free_port(), home / "mlflow-server.log")
    statsd = StatsdListener()
    data = home / "data"
    features = data / "features" / "lead_features"
    features.mkdir(parents=True)
    shutil.copyfile(settings.lead_features_path(AS_OF), features / f"{AS_OF}.parquet")
    remote_settings = dataclasses.replace(
        settings,
        home=home,
        data_dir=data,
        warehouse=home / "warehouse.duckdb",
        mlflow_tracking_uri=server.url,
        statsd_port=statsd.port,
    )
    server.start()
    try:
        yield SimpleNamespace(settings=remote_settings, server=server, statsd=statsd)
    finally:
        server.stop()
        statsd.sock.close()
        registry.configure(settings)  # MLflow's process-wide URIs back on the session's store


@pytest.fixture
def no_http_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's client retries a refused connection 7 times over ~4 min; the policy under test
    # is ours (Airflow's retries), so the client gives up at once here.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _score_remote(s: Settings, run_id: str, *, last_try: bool) -> dict[str, Any]:
    plan = pipeline.plan_scoring(AS_OF, run_id=run_id, settings=s, allow_cached_champion=last_try)
    shards = [
        pipeline.score_shard(plan, i["shard"], s, allow_cached_champion=last_try)
        for i in pipeline.shards_of(plan)
    ]
    return {"plan": plan, "published": pipeline.publish_scores(plan, shards, s)}


def test_mlflow_unreachable_retries_then_scores_with_the_cached_champion(
    remote: Any, no_http_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    s, server = remote.settings, remote.server
    if server.proc is None:
        server.start()
    up = _score_remote(s, "registry-up", last_try=False)
    assert up["plan"]["champion_cached"] is False
    partition = s.partition_dir(AS_OF)
    expected = _table(partition)
    assert "mlsys.score.champion_from_cache:0.0|g" in remote.statsd.lines()

    server.stop()
    # Not the last try: a clear error, Airflow retries with backoff; nothing is published.
    before = _digest(partition)
    with pytest.raises(registry.RegistryUnavailableError, match=r"cannot be reached.*retries"):
        pipeline.plan_scoring(AS_OF, run_id="try-1", settings=s, allow_cached_champion=False)
    assert _digest(partition) == before
    # The last try: the cached champion scores, loudly.
    with caplog.at_level("ERROR", logger="mlsys.registry"):
        down = _score_remote(s, "registry-down", last_try=True)
    assert down["plan"]["champion_cached"] is True
    assert down["plan"]["model_version"] == up["plan"]["model_version"]
    assert any("REGISTRY UNREACHABLE" in r.getMessage() for r in caplog.records)
    assert "mlsys.score.champion_from_cache:1.0|g" in remote.statsd.lines()
    assert _table(partition).equals(expected)
    assert set(pq.read_table(partition, columns=["run_id"]).column("run_id").to_pylist()) == {"registry-down"}


def test_the_cache_follows_the_registry_and_is_never_trusted_blindly(
    remote: Any, no_http_retries: None
) -> None:
    s, server = remote.settings, remote.server
    if server.proc is None:
        server.start()
    client = registry.client(s)
    current = client.get_model_version_by_alias(s.model_name, registry.CHAMPION)
    # A new version (same model files) becomes champion while the registry answers...
    model_id = str(current.source).rsplit("/", 1)[-1]
    moved = client.create_model_version(
        s.model_name, current.source, run_id=current.run_id, model_id=model_id
    )
    client.set_registered_model_alias(s.model_name, registry.CHAMPION, moved.version)
    plan = _score_remote(s, "alias-moved", last_try=False)["plan"]
    assert plan["model_version"] == str(moved.version) and plan["champion_cached"] is False
    pointer = json.loads((registry.cache_dir(s) / "champion.json").read_text())
    assert pointer["version"] == str(moved.version)

    server.stop()
    # ...so the fallback scores with that version, not the one cached before it.
    plan = _score_remote(s, "after-move", last_try=True)["plan"]
    assert plan["model_version"] == str(moved.version) and plan["champion_cached"] is True
    # A cached copy that was altered is refused: no score beats a wrong score.
    entry = next(p for p in registry.cache_dir(s).glob(f"v{moved.version}-*") if p.is_dir())
    pickle = next(p for p in (entry / "model").rglob("*.pkl"))
    pickle.write_bytes(pickle.read_bytes() + b"tampered")
    with pytest.raises(registry.RegistryUnavailableError, match="no cached copy"):
        pipeline.plan_scoring(AS_OF, run_id="tampered", settings=s, allow_cached_champion=True)
    # Without any cache (a new machine) there is nothing to fall back on.
    shutil.rmtree(registry.cache_dir(s))
    with pytest.raises(registry.RegistryUnavailableError, match="no cached copy"):
        pipeline.plan_scoring(AS_OF, run_id="no-cache", settings=s, allow_cached_champion=True)
    server.start()
    plan = _score_remote(s, "back-up", last_try=False)["plan"]
    assert plan["model_version"] == str(moved.version) and plan["champion_cached"] is False


def test_scoring_tasks_retry_with_exponential_backoff(airflow_db: dict[str, str]) -> None:
    """The policy (config); the behaviour per try is the test above."""
    from airflow.dag_processing.dagbag import DagBag

    from mlsys.airflow_support import is_last_try

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["score_leads"]
    for task_id in ("plan_scoring", "score"):
        task = dag.get_task(task_id)
        assert task.retries >= 3, task_id
        assert task.retry_exponential_backoff >= 2.0, task_id  # Airflow 3.3: True would be 1.0
        assert task.max_retry_delay is not None and task.max_retry_delay > task.retry_delay
    for dag_id in ("score_leads", "retrain"):
        for task in DagBag(dag_folder=str(REPO_ROOT / "dags")).dags[dag_id].tasks:
            assert task.retry_exponential_backoff != 1.0, f"{dag_id}.{task.task_id}: no backoff"
    retries = dag.get_task("plan_scoring").retries
    tries = [
        is_last_try({"ti": SimpleNamespace(try_number=n, max_tries=retries)}) for n in range(1, retries + 2)
    ]
    assert tries == [False] * retries + [True]


# -- no champion ---------------------------------------------------------------------------------------


def test_no_champion_fails_the_scoring_task_at_once_saying_run_retrain(
    published: Path, settings: Settings, isolated_settings: Settings, airflow_db: dict[str, str]
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    features_file = isolated_settings.lead_features_path(AS_OF)
    features_file.parent.mkdir(parents=True)
    shutil.copyfile(settings.lead_features_path(AS_OF), features_file)
    task = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["score_leads"].get_task("plan_scoring")
    context = {
        "dag_run": SimpleNamespace(run_id="no-champion"),
        "ti": SimpleNamespace(try_number=1, max_tries=task.retries),
    }
    with pytest.raises(AirflowFailException, match=r"retrain"):
        task.python_callable({"as_of": AS_OF.isoformat()}, {}, **context)


# -- a retrain killed halfway ----------------------------------------------------------------------


TRAIN_SCRIPT = (
    "from datetime import date; from mlsys import pipeline; from mlsys.settings import Settings; "
    "print(pipeline.train_challenger(date(2026, 6, 1), settings=Settings.from_env()))"
)


def test_a_retrain_killed_halfway_leaves_the_champion_alias(
    published: Path, settings: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "data" / "features" / "training_snapshots").mkdir(parents=True)
    shutil.copyfile(settings.home / "mlflow.db", home / "mlflow.db")
    shutil.copytree(settings.home / "dbt", home / "dbt")
    shutil.copyfile(
        settings.training_snapshots_path(AS_OF),
        home / "data" / "features" / "training_snapshots" / f"{AS_OF}.parquet",
    )
    s = dataclasses.replace(
        settings,
        home=home,
        data_dir=home / "data",
        warehouse=home / "warehouse.duckdb",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
    )
    champion = registry.alias_version(s, registry.CHAMPION)
    assert champion is not None
    db = home / "mlflow.db"

    def training_run_started() -> bool:
        with sqlite3.connect(db, timeout=5) as con:
            return bool(
                con.execute(
                    "select count(*) from runs where status = 'RUNNING' and name like 'retrain-%'"
                ).fetchone()[0]
            )

    proc = subprocess.Popen(
        [PY, "-c", TRAIN_SCRIPT], env=_env(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        # Fitted and evaluated; now logging artifacts and registering: kill it there.
        _wait_for(training_run_started, proc, 300)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    after = registry.alias_version(s, registry.CHAMPION)
    assert after is not None
    assert (after.version, after.source) == (champion.version, champion.source)
    # Whatever got registered before the kill holds no alias that scores.
    client = registry.client(s)
    for mv in client.search_model_versions(f"name='{s.model_name}'"):
        if int(mv.version) > int(champion.version):
            assert registry.CHAMPION not in (mv.aliases or [])


# -- disk and permission errors on the output folder -------------------------------------------------


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        # Writing past the limit then fails with EFBIG ("File too large") instead of a signal:
        # the same failure path as a full disk (ENOSPC) for the writer.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_while_writing_is_a_clear_failure_and_keeps_the_partition(
    night_restored: Path, settings: Settings
) -> None:
    published = night_restored
    pipeline.score_and_publish(AS_OF, run_id="before-disk-full", settings=settings)  # caches the model
    before = _digest(published)
    done = subprocess.run(
        [PY, "-c", SCORE_SCRIPT, AS_OF.isoformat(), "disk-full"],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(8 * 1024),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "OutputWriteError" in last and "cannot write the scored partition of 2026-06-01" in last
    assert "File too large" in last and "previously published partition is unchanged" in last
    assert _digest(published) == before


def test_an_unusable_output_folder_is_a_clear_failure_and_keeps_the_partition(
    published: Path, settings: Settings
) -> None:
    before = _digest(published)
    staging = settings.staging_dir
    aside = staging.with_name(".staging-aside")
    if staging.exists():
        staging.rename(aside)
    staging.write_text("not a folder")
    try:
        with pytest.raises(
            pipeline.OutputWriteError, match="cannot write the scored partition of 2026-06-01"
        ):
            pipeline.score_and_publish(AS_OF, run_id="bad-folder", settings=settings)
    finally:
        staging.unlink()
        if aside.exists():
            aside.rename(staging)
    assert _digest(published) == before
