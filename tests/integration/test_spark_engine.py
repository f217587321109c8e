"""The Spark engine (docs/spark.md): the same dbt project, gate and nightly scoring on Apache
Spark in local mode give DuckDB's rows.

Spark runs in this process (dbt-spark's `session` method, local[2]) against a copy of the
session's raw landing; the DuckDB side is the session's own night (`published`, through
Airflow), built from the same files with the same vars. The JVM start is part of the first
test's time (about 20 s here).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlsys import features
from mlsys.settings import Settings
from tests.engines import assert_same_scores, differing_rows, spark_environ
from tests.gates import assert_stopped_at_the_gate, rewrite

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 1)


@pytest.fixture(scope="module")
def spark_settings(
    published: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """MLSYS_ENGINE=spark on a home of its own (`tests.engines.spark_environ`)."""
    patch = pytest.MonkeyPatch()
    for name, value in spark_environ(settings, tmp_path_factory.mktemp("spark")).items():
        patch.setenv(name, value)
    try:
        yield Settings.from_env()
    finally:
        patch.undo()


def test_settings_choose_the_spark_target(spark_settings: Settings) -> None:
    assert spark_settings.engine == "spark"
    assert spark_settings.dbt_target == "spark"
    assert spark_settings.spark_master == "local[2]"


def test_training_snapshots_on_spark_equal_duckdbs(spark_settings: Settings, settings: Settings) -> None:
    built = features.build(AS_OF, spark_settings, selector=features.TRAINING_SELECTOR)
    path = built.outputs["training_snapshots"]
    assert path.is_file(), "the Spark folder is flattened to the contract's one file"
    assert pq.read_schema(path).names == pq.read_schema(settings.training_snapshots_path(AS_OF)).names
    rows, differing = differing_rows(path, settings.training_snapshots_path(AS_OF))
    assert rows > 1000
    assert differing == 0


def test_the_nightly_dag_on_spark_equals_duckdbs_night(spark_settings: Settings, settings: Settings) -> None:
    """score_leads through Airflow with MLSYS_ENGINE=spark: raw gate, features on Spark, the
    features gate, the champion scoring as a Spark job, the atomic publish."""
    from mlsys_local.demo import run_dag

    run_dag("score_leads", AS_OF)

    lead_features = spark_settings.lead_features_path(AS_OF)
    rows, differing = differing_rows(lead_features, settings.lead_features_path(AS_OF))
    assert rows > 1000
    assert differing == 0

    spark_part = spark_settings.partition_dir(AS_OF) / "part-00000.parquet"
    assert assert_same_scores(spark_part, settings.partition_dir(AS_OF) / "part-00000.parquet") == rows
    run_ids = set(pq.read_table(spark_part, columns=["run_id"]).column("run_id").to_pylist())
    assert len(run_ids) == 1 and run_ids != {"manual"}, "scored by the DAG run"


def test_a_bad_spark_built_mart_stops_the_night_with_duckdbs_report(
    spark_settings: Settings, settings: Settings
) -> None:
    """The gate on Spark's marts: the features gate validates the file Spark wrote (GX pushed
    down to DuckDB over it, docs/spark.md). A mart with the same defect, written by Spark or
    by DuckDB, stops the night with the same report, and the gated file stays in place.
    (Uses the features the nightly DAG test above built on Spark.)"""
    from pyspark.sql import functions as F

    from mlsys import pipeline, spark
    from mlsys.validation import DataValidationError

    spark_built = spark_settings.lead_features_path(AS_OF)  # the nightly DAG test's, gated
    staged = spark_settings.mart_path("lead_features", AS_OF, staged=True)
    staged.parent.mkdir(parents=True, exist_ok=True)
    gated = spark_built.read_bytes()

    def spark_defect() -> None:
        """Spark writes the defect (a bug in the SQL would): its own Parquet file, flattened."""
        frame = spark.session(spark_settings).read.parquet(str(spark_built))
        count_type = frame.schema["n_activities_total"].dataType
        frame = frame.withColumn("n_activities_total", F.lit(-1).cast(count_type))
        frame.coalesce(1).write.mode("overwrite").parquet(str(staged))
        spark.flatten_mart(staged)
        assert "duckdb" not in (pq.read_metadata(staged).created_by or "").lower()

    def duckdb_defect() -> None:
        shutil.copyfile(settings.lead_features_path(AS_OF), staged)
        rewrite(staged, "SELECT * REPLACE (-1 AS n_activities_total) FROM {src}")

    messages = []
    for make_defect in (spark_defect, duckdb_defect):
        make_defect()
        with pytest.raises(DataValidationError) as excinfo:
            pipeline.gate_scoring(AS_OF, spark_settings, raw=False)
        assert_stopped_at_the_gate(
            excinfo.value, "lead_features", "expect_column_values_to_be_between", "n_activities_total", "[-1]"
        )
        messages.append(str(excinfo.value))
        assert spark_built.read_bytes() == gated, "the gated file stays in place"
    # The same lines; the example values of a check may come in another row order.
    examples = re.compile(r"e\.g\. \[.*\]")
    assert examples.sub("e.g. [...]", messages[0]) == examples.sub("e.g. [...]", messages[1])
    staged.unlink()


def test_a_spark_folder_with_several_parts_is_refused(tmp_path: Path) -> None:
    from mlsys import spark

    folder = tmp_path / "2026-06-01.parquet"
    folder.mkdir()
    for name in ("part-00000-a.snappy.parquet", "part-00001-a.snappy.parquet"):
        (folder / name).write_bytes(b"x")
    with pytest.raises(spark.SparkOutputError, match="2 part files"):
        spark.flatten_mart(folder)
    assert folder.is_dir()
