"""Airflow hands the Spark work to a Spark Connect server (docs/spark.md, "Airflow submits").

The commands of docs/spark.md's Spark Connect block run as typed there, from a clone's root
(the repository's `.venv`), with a free port instead of 15002: the server from the PySpark
distribution (`spark-submit --class ...SparkConnectServer`), then `export MLSYS_ENGINE=spark
MLSYS_SPARK_REMOTE=...` and `.venv/bin/airflow dags test score_leads 2026-06-01` on the test
session's Airflow metadata DB and a home of its own. That shell has **no Java**: `java` on
its PATH and `JAVA_HOME` lead to a stub that records any call and fails. The raw gate, the
dbt build, the features gate, the scoring job and the publish succeed, so the task process
ran no JVM: the server built the features and scored the leads. The outputs equal the DuckDB
night's, row for row and to 1e-9; the night is published in the pointer mode
(`MLSYS_PUBLISH_MODE=pointer`: a committed version, nothing renamed).
"""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlsys import scored_table
from mlsys.settings import REPO_ROOT, Settings
from tests.engines import assert_same_scores, differing_rows, spark_environ
from tests.live import Procs, free_port, wait_for

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 1)
SPARK_DOC = REPO_ROOT / "docs" / "spark.md"
DOC_PORT = "15002"


def _documented_commands() -> tuple[str, str]:
    """docs/spark.md's Spark Connect block: (the server's command, the client's lines)."""
    text = SPARK_DOC.read_text()
    block = text[text.index("## Airflow submits: Spark Connect") :]
    block = block[block.index("```bash\n") + len("```bash\n") :]
    block = block[: block.index("```")]
    server, client = block.split("&\n", 1)
    return server.strip(), client.strip()


def _no_java(root: Path) -> tuple[Path, Path]:
    """A JAVA_HOME and a bin folder whose `java` writes a marker and fails; the marker."""
    marker = root / "java-was-called"
    java_home = root / "no-java"
    (java_home / "bin").mkdir(parents=True)
    stub = java_home / "bin" / "java"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    stub.chmod(0o755)
    return java_home, marker


def test_the_nightly_dag_submits_to_a_spark_connect_server(
    published: Path, airflow_db: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    server_command, client_lines = _documented_commands()
    assert "SparkConnectServer" in server_command and "airflow dags test" in client_lines
    port = str(free_port())
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(REPO_ROOT / ".venv")
    procs = Procs(tmp_path)
    java_home, marker = _no_java(tmp_path)
    try:
        # The shell and the server share a process group, which the test stops.
        procs.spawn(
            "spark-connect",
            ["bash", "-c", f"cd {clone} && " + server_command.replace(DOC_PORT, port)],
            {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))},
        )
        wait_for(
            "the Spark Connect server",
            lambda: "Spark Connect server started" in procs.tail("spark-connect", 400),
            180,
            procs,
        )
        engine = spark_environ(settings, tmp_path)
        # The shell of an Airflow worker: the session's Airflow home, a home of its own.
        task_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))},
            **airflow_db,
            **engine,
            # Published as on storage without atomic rename (mlsys.scored_table).
            "MLSYS_PUBLISH_MODE": "pointer",
            "JAVA_HOME": str(java_home),
            "PATH": f"{java_home / 'bin'}:{os.environ['PATH']}",
        }
        task_env.pop("MLSYS_WAREHOUSE")  # the session's DuckDB file; the home's own instead
        done = subprocess.run(
            ["bash", "-c", client_lines.replace(DOC_PORT, port)],
            cwd=clone,
            env=task_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        server_log = procs.tail("spark-connect", 100_000)
    finally:
        procs.stop_all()

    assert not marker.exists(), f"the task process started Java: {marker.read_text()}"
    # The work ran in the server: client sessions, and the tasks of their jobs on its executors.
    assert "SessionHolder: Session with" in server_log
    assert server_log.count("Finished task") > 10
    spark_settings = Settings(
        **{**settings.__dict__, "data_dir": Path(engine["MLSYS_DATA_DIR"]), "publish_mode": "pointer"}
    )
    rows, differing = differing_rows(
        spark_settings.lead_features_path(AS_OF), settings.lead_features_path(AS_OF)
    )
    assert rows > 1000 and differing == 0
    (spark_part,) = scored_table.current_files(spark_settings, AS_OF)
    assert spark_part.parent.name == "v=1" and scored_table.committed_versions(spark_settings, AS_OF) == [1]
    assert assert_same_scores(spark_part, settings.partition_dir(AS_OF) / "part-00000.parquet") == rows
    run_ids = set(pq.read_table(spark_part, columns=["run_id"]).column("run_id").to_pylist())
    assert len(run_ids) == 1 and run_ids != {"manual"}, "scored by the DAG run"
