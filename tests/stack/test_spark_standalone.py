"""A standalone Spark cluster on this machine: a master and one worker started from the PySpark
distribution (`bin/spark-class`, what `start-master.sh`/`start-worker.sh` run), and the CLI
exactly as docs/spark.md types it with `MLSYS_SPARK_MASTER=spark://...`. The features build
and the scoring job run on the worker's executors, and give the DuckDB night's rows."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from mlsys.settings import Settings
from tests.engines import assert_same_scores, differing_rows, spark_environ
from tests.live import Procs, free_port, wait_for

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 1)


def test_features_and_scores_on_a_standalone_master(
    published: Path, settings: Settings, tmp_path: Path
) -> None:
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOG_DIR": str(tmp_path)}
    port = free_port()
    master = f"spark://127.0.0.1:{port}"
    procs = Procs(tmp_path)
    try:
        procs.spawn(
            "master",
            [
                *(spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"),
                *("--port", str(port), "--webui-port", str(free_port())),
            ],
            env,
        )
        wait_for("the master", lambda: "Starting Spark master" in procs.tail("master", 200), 120, procs)
        work = tmp_path / "work"
        procs.spawn(
            "worker",
            [
                *(spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1"),
                *(
                    "--cores",
                    "2",
                    "--memory",
                    "3g",
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(work),
                ),
            ],
            env,
        )
        wait_for(
            "the worker",
            lambda: "Successfully registered with master" in procs.tail("worker", 200),
            120,
            procs,
        )

        engine = spark_environ(settings, tmp_path)
        data = Path(engine["MLSYS_DATA_DIR"])
        cli = {
            **os.environ,
            **engine,
            "MLSYS_SPARK_MASTER": master,
            # The master's executors need less than the local driver's default.
            "MLSYS_SPARK_DRIVER_MEMORY": "1g",
        }
        mlsys = str(Path(sys.executable).with_name("mlsys"))
        for step in ("features", "score"):
            done = subprocess.run(
                [mlsys, step, "--as-of", AS_OF.isoformat()],
                env=cli,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        procs.stop_all()

    # The executors ran on the worker: each application left its executor's log there.
    applications = sorted(p.name for p in work.iterdir()) if work.exists() else []
    assert len(applications) >= 2, applications  # the features build and the scoring job
    spark_settings = Settings(**{**settings.__dict__, "data_dir": data})
    rows, differing = differing_rows(
        spark_settings.lead_features_path(AS_OF), settings.lead_features_path(AS_OF)
    )
    assert rows > 1000 and differing == 0
    part = "part-00000.parquet"
    assert (
        assert_same_scores(spark_settings.partition_dir(AS_OF) / part, settings.partition_dir(AS_OF) / part)
        == rows
    )
