"""The two scripts benchmark (e) compares the CLI's night with (run by bench_nightly.py).

    .venv/bin/python benchmarks/bench_night_baselines.py pandas 2026-06-01 out.parquet
    .venv/bin/python benchmarks/bench_night_baselines.py duckdb_stream 2026-06-01 out.parquet

* pandas: a plain pandas script doing the same features and scoring: both raw tables into
  memory, de-duplicate, groupby windows, the champion's predict_proba, to_parquet
  (`bench_scoring.child_reference`, the script most tutorials show).
* duckdb_stream: the compiled lead_features SQL of the last build (dbt's target folder)
  straight through DuckDB on the warehouse, streamed in record batches through the champion's
  predict_proba into a Parquet writer: no gate, no reasons, no atomic publish. The floor the
  score step (`mlsys score`) is held to.
Both need MLSYS_HOME (and MLFLOW_TRACKING_URI when the champion lives elsewhere).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def duckdb_stream(as_of: str, out: Path) -> dict:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlsys import registry
    from mlsys.model import prepare_frame
    from mlsys.settings import Settings

    settings = Settings.from_env()
    champion = registry.load_champion(settings)
    compiled = next(settings.dbt_target_dir.glob("compiled/**/marts/lead_features.sql")).read_text()
    assert f"date '{as_of}'" in compiled, "the last build was of another date"
    start = time.perf_counter()
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    con.execute("set preserve_insertion_order = false")
    reader = con.sql(compiled).to_arrow_reader(settings.score_batch_size)
    schema = pa.schema([("lead_id", pa.int64()), ("score", pa.float64())])
    rows = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in reader:
            frame = batch.to_pandas()
            x = prepare_frame(frame, champion.numeric, champion.categorical)
            p = champion.model.predict_proba(x)[:, 1]
            writer.write_table(pa.table({"lead_id": frame["lead_id"], "score": p}, schema=schema))
            rows += len(p)
    return {"rows": rows, "wall_s": time.perf_counter() - start}


def pandas(as_of: str, out: Path) -> dict:
    import bench_scoring

    assert as_of == bench_scoring.AS_OF.isoformat(), f"the pandas script scores {bench_scoring.AS_OF}"
    return bench_scoring.child_reference(out)


if __name__ == "__main__":
    mode, as_of, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    import logging

    logging.disable(logging.WARNING)
    result = {"pandas": pandas, "duckdb_stream": duckdb_stream}[mode](as_of, out)
    print("RESULT " + json.dumps(result))
