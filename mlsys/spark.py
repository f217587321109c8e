"""The Spark engine (``MLSYS_ENGINE=spark``, docs/spark.md): what differs from DuckDB's path.

The dbt project is the same (profiles.yml's ``spark`` target, the engine macros in
``sql/macros/engines/``); here are the two steps around it that need Spark itself:

* `flatten_mart`: Spark writes a mart's location as a folder with one part file (the
  ``external`` materialization on Spark); the file is moved to the location itself, the
  single-file layout every reader of the marts expects.
* `score_unranked`: the champion scores the features as a Spark job (``mapInArrow``): the
  model travels with the job as pickled bytes, each Python worker unpickles it once (a cache
  keyed by the run) and scores its Arrow batches with the same `Champion` code the DuckDB
  path runs. The job writes the unranked rows; `mlsys.score.combine` ranks them and writes
  the partition, and `mlsys.score.publish` swaps it in, as on DuckDB.

Spark runs in this process (``MLSYS_SPARK_MASTER``: local mode, or the driver of a
standalone cluster) or behind a Spark Connect server (``MLSYS_SPARK_REMOTE``): then this
process is a thin gRPC client, no JVM, and the same DataFrame and SQL calls run on the server.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger(__name__)

# Noise in every Spark task's log, filtered where mlsys imports the engine (before dbt-spark
# or PySpark is): PySpark's import-time warning about pandas 3 concerns its pandas APIs, and
# mlsys hands Spark Arrow batches only; dbt-spark's session asks for Hive support, which a
# Spark Connect server fixes at its own start (its catalog is the server's).
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
warnings.filterwarnings(
    "ignore", message="Failed to set spark.sql.catalogImplementation", category=UserWarning
)


class SparkOutputError(RuntimeError):
    """A Spark-written folder does not hold the one part file a mart or a score job writes."""


def session(settings: Settings) -> Any:
    """The process's Spark session (dbt-spark's, when a build ran in this process before),
    configured as the profile's ``spark`` and ``spark_connect`` targets are: UTC,
    microsecond Parquet timestamps."""
    from pyspark.sql import SparkSession

    if settings.spark_remote:
        # A Spark Connect client: the server has its master, memory and Python workers.
        spark = SparkSession.builder.remote(settings.spark_remote).getOrCreate()
        log.info("Spark Connect session at %s", settings.spark_remote)
    else:
        # The executors' Python workers run this interpreter (the project's environment)
        # unless the deployment says otherwise: PySpark's default is `python3` on the PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            SparkSession.builder.master(settings.spark_master)
            .appName("mlsys")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
        spark = builder.getOrCreate()
    # Runtime settings: applied to a session dbt-spark started before as well as a new one.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    return spark


def part_files(folder: Path) -> list[Path]:
    """The data files of a folder Spark wrote (not its _SUCCESS or .crc files), by name."""
    return sorted(p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")


def flatten_mart(location: Path) -> Path:
    """Replace the folder Spark wrote at a mart's location by its one part file.

    The part file is moved next to the folder first and renamed over it last, so the
    location is never missing for longer than the folder's removal. A location that is
    already a file (DuckDB's, or flattened before) is left as it is."""
    if not location.is_dir():
        return location
    parts = part_files(location)
    if len(parts) != 1:
        raise SparkOutputError(
            f"{location}: Spark wrote {len(parts)} part files, the mart's contract is one file "
            "(the external materialization coalesces to one: sql/macros/engines/spark_external.sql)"
        )
    pending = location.with_name(location.name + ".flattening")
    os.replace(parts[0], pending)
    shutil.rmtree(location)
    os.replace(pending, location)
    return location


def remove(location: Path) -> None:
    """Remove a mart location, a file or a folder Spark wrote."""
    if location.is_dir():
        shutil.rmtree(location)
    else:
        location.unlink(missing_ok=True)


def _spark_type(arrow_type: Any) -> str:
    import pyarrow as pa

    return "string" if pa.types.is_string(arrow_type) else "bigint"


def unranked_ddl(id_type: Any) -> str:
    """The Spark schema of the score job's rows: `mlsys.score.unranked_schema` in Spark DDL
    (scored_at without a time zone, as the scored table stores it)."""
    return (
        f"lead_id {_spark_type(id_type)}, score double, score_band string, "
        "top_reasons array<struct<feature:string,contribution:double>>, "
        "model_name string, model_version string, as_of date, scored_at timestamp_ntz, run_id string"
    )


# The champion each Python worker unpickled, by run: a worker that scores several partitions
# of a job (spark.python.worker.reuse, on by default) unpickles the model once.
_SCORERS: dict[str, Any] = {}


def _scorer(key: str, pickled: bytes) -> Any:
    scorer = _SCORERS.get(key)
    if scorer is None:
        _SCORERS.clear()  # one model per worker: the previous run's is not needed again
        scorer = _SCORERS[key] = pickle.loads(pickled)  # noqa: S301 - this run's driver pickled the registry's champion
    return scorer


def _score_batches(batches: Iterator[Any], scorer: Any, job: dict[str, Any]) -> Iterator[Any]:
    """Score one Spark partition's Arrow batches (runs in the executors' Python workers)."""
    import numpy as np
    import pyarrow as pa

    from mlsys.champion import band_of

    schema = job["schema"]
    for batch in batches:
        if batch.num_rows == 0:
            continue
        p, reasons = scorer.score_arrow(batch)
        n = len(p)
        yield pa.RecordBatch.from_arrays(
            [
                batch.column("lead_id").cast(schema.field("lead_id").type),
                pa.array(p, pa.float64()),
                pa.array(band_of(p, job["cutoffs"]), pa.string()),
                reasons,
                pa.array(np.full(n, job["model_name"], dtype=object), pa.string()),
                pa.array(np.full(n, job["model_version"], dtype=object), pa.string()),
                pa.array([job["as_of"]] * n, pa.date32()),
                pa.array([job["scored_at"]] * n, pa.timestamp("us")),
                pa.array(np.full(n, job["run_id"], dtype=object), pa.string()),
            ],
            schema=schema,
        )


def score_unranked(
    features: Path, out: Path, champion: Any, job: dict[str, Any], settings: Settings
) -> list[Path]:
    """Score the features file as a Spark job into part files under ``out`` (one per Spark
    partition of the input); returns them, by name.

    ``champion`` is the `mlsys.champion.Champion` to score with, ``job`` what every row
    shares (as_of, scored_at, run_id, model name and version, band cut-offs, lead_id type)
    and the Arrow schema of the rows (`mlsys.score.unranked_schema`)."""
    spark = session(settings)
    # Pickled bytes in the function's closure rather than a broadcast variable: Spark Connect
    # has no SparkContext to broadcast with, and both modes ship a large function once per
    # job (PySpark broadcasts a pickled command over 1 MB itself).
    pickled = pickle.dumps(champion, protocol=pickle.HIGHEST_PROTOCOL)
    key = f"{job['run_id']}/{job['scored_at']}"
    columns = ["lead_id", *champion.loaded.features]

    def score_partition(batches: Iterator[Any]) -> Iterator[Any]:
        return _score_batches(batches, _scorer(key, pickled), job)

    frame = spark.read.parquet(str(features)).select(*columns)
    scored = frame.mapInArrow(score_partition, unranked_ddl(job["id_type"]))
    scored.write.mode("overwrite").parquet(str(out))
    return part_files(out)
