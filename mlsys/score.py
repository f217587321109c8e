"""Nightly scoring into the scored-leads table (DESIGN section 3).

Two steps, so a failure or a kill at any moment leaves readers on the last good partition:

1. ``score``: stream the lead_features Parquet in Arrow record batches, score each batch
   with the champion (version pinned at the start), write a staging folder outside the
   table. Memory is one batch plus 8 bytes per lead for the score ranks.
2. ``publish``: swap the staging folder into ``scored_leads/score_date=D/`` atomically
   (Linux renameat2 RENAME_EXCHANGE; a rename when the partition is new) and refresh the
   BI view file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlsys import registry
from mlsys.model import linear_contributions, prepare_frame, top_reasons
from mlsys.settings import Settings

log = logging.getLogger(__name__)

PART_FILE = "part-00000.parquet"
REASON_TYPE = pa.list_(pa.struct([("feature", pa.string()), ("contribution", pa.float64())]))
COLUMN_DOCS = {
    "lead_id": "CRM identifier of the lead.",
    "score": "Calibrated probability of converting within the horizon, in [0, 1].",
    "score_band": "A (best) .. D, from the probability cut-offs stored with the model version.",
    "score_percentile": "Rank of the score among that night's leads, 0..100.",
    "top_reasons": "Up to 3 features that raised the score most, with their logit contribution.",
    "model_name": "Registered MLflow model that scored.",
    "model_version": "Version of that model (the champion when the run started).",
    "as_of": "Feature cut-off date (= score_date).",
    "scored_at": "When the partition was scored (UTC).",
    "run_id": "Airflow dag_run id (or 'manual' from the CLI).",
}
_TYPES: dict[str, pa.DataType] = {
    "lead_id": pa.int64(),
    "score": pa.float64(),
    "score_band": pa.string(),
    "score_percentile": pa.float64(),
    "top_reasons": REASON_TYPE,
    "model_name": pa.string(),
    "model_version": pa.string(),
    "as_of": pa.date32(),
    "scored_at": pa.timestamp("us"),
    "run_id": pa.string(),
}
SCORED_SCHEMA = pa.schema(
    [pa.field(name, typ, metadata={"description": COLUMN_DOCS[name]}) for name, typ in _TYPES.items()],
    metadata={"mlsys.contract": "scored_leads v1 (DESIGN section 3)"},
)


class FeaturesMissingError(FileNotFoundError):
    pass


@dataclass
class ScoreResult:
    as_of: date
    rows: int
    mean_score: float
    band_counts: dict[str, int]
    model_name: str
    model_version: str
    staging_dir: Path
    seconds: float


def band_of(scores: np.ndarray, cutoffs: dict[str, float]) -> np.ndarray:
    return np.where(
        scores >= cutoffs["A"],
        "A",
        np.where(scores >= cutoffs["B"], "B", np.where(scores >= cutoffs["C"], "C", "D")),
    )


def _batches(path: Path, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(path)
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        raise KeyError(
            f"{path} lacks feature columns the champion needs: {', '.join(missing)} "
            "(retrain after changing the feature catalogue)"
        )
    yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


def score(
    as_of: date,
    settings: Settings | None = None,
    *,
    run_id: str = "manual",
    champion: registry.LoadedModel | None = None,
) -> ScoreResult:
    """Score every lead of the lead_features file of `as_of` into a staging folder."""
    settings = settings or Settings.from_env()
    features_path = settings.lead_features_path(as_of)
    if not features_path.exists():
        raise FeaturesMissingError(
            f"no features for {as_of} at {features_path}: run `mlsys features --as-of {as_of}` first"
        )
    start = perf_counter()
    champion = champion or registry.load_champion(settings)
    cutoffs = champion.metadata["score_bands"]
    reason_spec = champion.metadata.get("reasons")
    from mlsys.model import ReasonSpec

    spec = ReasonSpec(**reason_spec) if reason_spec else None
    scored_at = datetime.now(UTC).replace(tzinfo=None)

    _clean_stale_staging(settings, as_of)
    staging = settings.staging_dir / f"score_date={as_of.isoformat()}.{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    unranked = staging / "unranked.parquet"
    score_chunks: list[np.ndarray] = []
    rows = 0
    band_counts = dict.fromkeys("ABCD", 0)
    unranked_schema = pa.schema([f for f in SCORED_SCHEMA if f.name != "score_percentile"])
    with pq.ParquetWriter(unranked, unranked_schema) as writer:
        for batch in _batches(features_path, ["lead_id", *champion.features], settings.score_batch_size):
            frame = batch.to_pandas()
            x = prepare_frame(frame, champion.numeric, champion.categorical)
            p = champion.model.predict_proba(x)[:, 1]
            if spec is not None:
                contributions, names = linear_contributions(champion.model, x, spec)
                reasons = top_reasons(contributions, names)
            else:
                reasons = [[] for _ in range(len(p))]
            bands = band_of(p, cutoffs)
            for b, n in zip(*np.unique(bands, return_counts=True), strict=True):
                band_counts[str(b)] += int(n)
            n = len(p)
            table = pa.table(
                {
                    "lead_id": batch.column("lead_id"),
                    "score": pa.array(p, pa.float64()),
                    "score_band": pa.array(bands, pa.string()),
                    "top_reasons": pa.array(reasons, REASON_TYPE),
                    "model_name": pa.array([champion.name] * n, pa.string()),
                    "model_version": pa.array([champion.version] * n, pa.string()),
                    "as_of": pa.array([as_of] * n, pa.date32()),
                    "scored_at": pa.array([scored_at] * n, pa.timestamp("us")),
                    "run_id": pa.array([run_id] * n, pa.string()),
                },
                schema=unranked_schema,
            )
            writer.write_table(table)
            score_chunks.append(p)
            rows += n
    if rows == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"{features_path} has no leads: nothing to score for {as_of}")

    all_scores = np.sort(np.concatenate(score_chunks))
    del score_chunks
    _write_ranked(unranked, staging / PART_FILE, all_scores, settings.score_batch_size)
    unranked.unlink()
    seconds = perf_counter() - start
    mean_score = float(all_scores.mean())
    result = ScoreResult(
        as_of, rows, mean_score, band_counts, champion.name, champion.version, staging, seconds
    )
    log.info(
        "scored %d leads as of %s with %s v%s in %.1fs (mean score %.4f, bands %s)",
        rows,
        as_of,
        champion.name,
        champion.version,
        seconds,
        mean_score,
        band_counts,
    )
    return result


def _write_ranked(unranked: Path, out: Path, sorted_scores: np.ndarray, batch_size: int) -> None:
    """Add score_percentile in a second streaming pass: the share of that night's leads
    scoring at or below this one, x100 (ties share a percentile; the best lead is 100)."""
    denominator = max(1, len(sorted_scores))
    with pq.ParquetWriter(out, SCORED_SCHEMA, compression="zstd") as writer:
        for batch in pq.ParquetFile(unranked).iter_batches(batch_size=batch_size):
            scores = batch.column("score").to_numpy()
            rank = np.searchsorted(sorted_scores, scores, side="right")
            percentile = pa.array(rank / denominator * 100.0, pa.float64())
            columns = {name: batch.column(name) for name in batch.schema.names}
            columns["score_percentile"] = percentile
            writer.write_table(pa.table([columns[f.name] for f in SCORED_SCHEMA], schema=SCORED_SCHEMA))


def _clean_stale_staging(settings: Settings, as_of: date) -> None:
    """A killed run leaves its staging folder behind; it was never visible, remove it."""
    if not settings.staging_dir.exists():
        return
    for stale in settings.staging_dir.glob(f"score_date={as_of.isoformat()}.*"):
        shutil.rmtree(stale, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the kernel or libc lacks it."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"renameat2 exchange {a} <-> {b}: {os.strerror(err)}")


def publish(as_of: date, staging: Path, settings: Settings | None = None) -> Path:
    """Make the staging folder the partition of `as_of`, replacing any previous one at once."""
    settings = settings or Settings.from_env()
    staging = Path(staging)
    if not (staging / PART_FILE).exists():
        raise FileNotFoundError(f"staging folder {staging} has no {PART_FILE}: score first")
    target = settings.partition_dir(as_of)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if not _exchange(staging, target):
            # Fallback: two renames; readers may briefly see no partition, never a partial one.
            old = staging.with_name(staging.name + ".old")
            os.rename(target, old)
            os.rename(staging, target)
            staging = old
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous partition
    else:
        os.rename(staging, target)
    _fsync_dir(target.parent)
    refresh_bi_views(settings)
    log.info("published %s", target)
    return target


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refresh_bi_views(settings: Settings) -> Path:
    """A DuckDB file with views over every partition, for BI tools to attach."""
    import duckdb

    glob = str(settings.scored_dir / "*" / "*.parquet").replace("'", "''")
    with duckdb.connect(str(settings.bi_database)) as con:
        con.execute(
            f"create or replace view scored_leads as select * from read_parquet('{glob}', "
            "hive_partitioning = true, hive_types = {'score_date': date})"
        )
        con.execute(
            "create or replace view scored_leads_latest as select * from scored_leads "
            "where score_date = (select max(score_date) from scored_leads)"
        )
    return settings.bi_database


def read_partition(settings: Settings, as_of: date) -> Any:
    """The published partition of `as_of` as an Arrow table (tests, CLI summaries)."""
    return pq.read_table(settings.partition_dir(as_of))
