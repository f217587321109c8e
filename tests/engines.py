"""What the Spark engine's tests compare with DuckDB's outputs (docs/spark.md): mart files
row for row after casting to the contract's types, and scored partitions to 1e-9."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from mlsys.settings import Settings


def differing_rows(left: Path, right: Path) -> tuple[int, int]:
    """(rows of `right`, rows in one file and not in the other): `EXCEPT ALL` both ways, every
    column cast to its type in `right` (the DuckDB-built file: the marts' output contract)."""
    con = duckdb.connect()
    a, b = f"read_parquet('{left}')", f"read_parquet('{right}')"
    columns = con.sql(f"describe select * from {b}").fetchall()
    cols = ", ".join(f'cast("{name}" as {kind}) as "{name}"' for name, kind, *_ in columns)
    differing = con.sql(
        f"select count(*) from ((select {cols} from {a} except all select {cols} from {b}) "
        f"union all (select {cols} from {b} except all select {cols} from {a}))"
    ).fetchall()[0][0]
    rows = con.sql(f"select count(*) from {b}").fetchall()[0][0]
    return int(rows), int(differing)


def assert_same_scores(spark_part: Path, duckdb_part: Path) -> int:
    """The two partitions hold the same leads with the same schema, bands and reasons, and
    scores and percentiles within 1e-9; returns the number of leads."""
    assert pq.read_schema(spark_part) == pq.read_schema(duckdb_part)
    a, b = f"read_parquet('{spark_part}')", f"read_parquet('{duckdb_part}')"
    joined, score_gap, percentile_gap, other = duckdb.sql(
        "select count(*), max(abs(x.score - y.score)), max(abs(x.score_percentile - y.score_percentile)), "
        "count(*) filter (where x.score_band != y.score_band or x.top_reasons != y.top_reasons) "
        f"from {a} as x join {b} as y using (lead_id)"
    ).fetchall()[0]
    rows = pq.read_metadata(duckdb_part).num_rows
    assert joined == rows == pq.read_metadata(spark_part).num_rows
    assert score_gap <= 1e-9 and percentile_gap <= 1e-9
    assert other == 0
    return int(rows)


def spark_environ(settings: Settings, root: Path) -> dict[str, str]:
    """`MLSYS_ENGINE=spark` on a home of its own under `root` (its own Spark metastore: Derby
    lets one process open it) with a copy of the session's raw landing, and the session's
    MLflow registry (its champion scores)."""
    home = root / "home"
    shutil.copytree(settings.raw_dir, home / "data" / "raw")
    return {
        "MLSYS_ENGINE": "spark",
        "MLSYS_HOME": str(home),
        "MLSYS_DATA_DIR": str(home / "data"),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLSYS_MLFLOW_ARTIFACTS": str(settings.mlflow_artifact_root),
    }
