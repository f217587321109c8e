"""The Spark engine (docs/spark.md): the same dbt project, gate and nightly scoring on Apache
Spark in local mode give DuckDB's rows.

Spark runs in this process (dbt-spark's `session` method, local[2]) against a copy of the
session's raw landing; the DuckDB side is the session's own night (`published`, through
Airflow), built from the same files with the same vars. The JVM start is part of the first
test's time (about 20 s here).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlsys import features
from mlsys.settings import Settings
from tests.engines import assert_same_scores, differing_rows, spark_environ

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


def test_a_spark_folder_with_several_parts_is_refused(tmp_path: Path) -> None:
    from mlsys import spark

    folder = tmp_path / "2026-06-01.parquet"
    folder.mkdir()
    for name in ("part-00000-a.snappy.parquet", "part-00001-a.snappy.parquet"):
        (folder / name).write_bytes(b"x")
    with pytest.raises(spark.SparkOutputError, match="2 part files"):
        spark.flatten_mart(folder)
    assert folder.is_dir()
