"""Nightly scoring into the scored-leads table (its contract: docs/contracts.md, docs/bi.md).

Two steps, so a failure or a kill at any moment leaves readers on the last good partition:

1. ``score``: stream the lead_features Parquet in Arrow record batches, score each batch
   with the champion (version pinned at the start) on MLSYS_SCORE_THREADS threads, write a
   staging folder outside the table. Memory is a batch per thread plus 8 bytes per lead for
   the score ranks.
2. ``publish``: swap the staging folder into ``scored_leads/score_date=D/`` atomically
   (Linux renameat2 RENAME_EXCHANGE; a rename when the partition is new); the BI view file
   (mlsys.bi) needs no refresh: its views glob the partitions at every query.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlsys import registry, scored_table
from mlsys.champion import Champion, band_of
from mlsys.progress import Progress
from mlsys.scored_table import PART_FILE, fsync_dir
from mlsys.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Rows per Parquet row group of a published partition, whatever MLSYS_SCORE_BATCH_SIZE is:
# DuckDB's own row-group size (120 x 2048 rows), the unit its scans run in parallel and skip
# by min/max statistics, and above the ~100k rows DuckDB, Polars and Arrow read efficiently
# (docs/bi.md).
ROW_GROUP_ROWS = 122_880
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
# lead_id keeps the source's type: an integer id of any width is BIGINT, a text id (UUIDs,
# 18-character Salesforce ids) VARCHAR; nothing else is allowed (docs/contracts.md).
LEAD_ID_TYPES: dict[str, pa.DataType] = {"BIGINT": pa.int64(), "VARCHAR": pa.string()}


def scored_schema(id_type: pa.DataType | None = None) -> pa.Schema:
    """The scored table's schema for a source whose ids are ``id_type`` (int64, the default,
    or string)."""
    types = {**_TYPES, "lead_id": id_type or pa.int64()}
    return pa.schema(
        [pa.field(name, typ, metadata={"description": COLUMN_DOCS[name]}) for name, typ in types.items()],
        metadata={"mlsys.contract": "scored_leads v1 (docs/contracts.md and docs/bi.md of mlsys)"},
    )


SCORED_SCHEMA = scored_schema()  # integer-keyed sources (the synthetic CRM, the bank export)


def lead_id_type(features_schema: pa.Schema, path: Path | str = "lead_features") -> pa.DataType:
    """The scored table's lead_id type for a features file: int64 for any integer, string for
    text; an error naming the file for any other type."""
    if "lead_id" not in features_schema.names:
        raise KeyError(f"{path} has no lead_id column (the marts' output contract, docs/contracts.md)")
    found = features_schema.field("lead_id").type
    if pa.types.is_integer(found):
        return pa.int64()
    if pa.types.is_string(found) or pa.types.is_large_string(found):
        return pa.string()
    raise TypeError(
        f"{path}: lead_id is {found}; the scored table allows {' or '.join(LEAD_ID_TYPES)} "
        "(cast it in the marts' SQL)"
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


@dataclass(frozen=True)
class ScorePlan:
    """What every shard of one run shares: the date, the staging folder, the pinned model
    version (the champion when the run started) and the scoring time."""

    as_of: date
    staging_dir: Path
    model_version: str
    n_shards: int
    run_id: str
    scored_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "staging_dir": str(self.staging_dir),
            "model_version": self.model_version,
            "n_shards": self.n_shards,
            "run_id": self.run_id,
            "scored_at": self.scored_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScorePlan:
        return cls(
            date.fromisoformat(raw["as_of"]),
            Path(raw["staging_dir"]),
            str(raw["model_version"]),
            int(raw["n_shards"]),
            str(raw["run_id"]),
            datetime.fromisoformat(raw["scored_at"]),
        )


def shard_of(lead_ids: np.ndarray | pa.Array | pa.ChunkedArray, n_shards: int) -> np.ndarray:
    """A stable shard per lead: a multiplicative hash of lead_id (Fibonacci hashing), so
    consecutive ids spread evenly and every run agrees on the split. Text ids are first
    folded to 64 bits by a polynomial hash of their UTF-8 bytes (`text_id_hash`)."""
    if isinstance(lead_ids, pa.Array | pa.ChunkedArray):
        if pa.types.is_string(lead_ids.type) or pa.types.is_large_string(lead_ids.type):
            lead_ids = text_id_hash(lead_ids)
        else:
            lead_ids = lead_ids.to_numpy()
    mixed = (lead_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return (mixed % np.uint64(n_shards)).astype(np.int64)


_TEXT_HASH_BASE = np.uint64(1_099_511_628_211)  # the 64-bit FNV prime, an odd multiplier


def text_id_hash(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per text id, the same in every process and on every machine (Python's
    hash() is salted per process): sum of (byte + 1) * B^position, modulo 2^64, vectorised
    over the Arrow buffers of a batch."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    binary = ids.cast(pa.large_binary())
    if binary.null_count:
        raise ValueError("lead_id is null in the features: every lead needs an id")
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[
        binary.offset : binary.offset + len(binary) + 1
    ]
    data = np.frombuffer(binary.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    lengths = np.diff(offsets)
    starts = offsets[:-1] - offsets[0]
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    powers = np.ones(int(lengths.max(initial=0)) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(1, len(powers)):
            powers[i] = powers[i - 1] * _TEXT_HASH_BASE
        terms = (data.astype(np.uint64) + np.uint64(1)) * powers[position]
    if len(terms) == 0:
        return np.zeros(len(lengths), dtype=np.uint64)
    # reduceat sums each id's terms; an empty id would take its neighbour's first term: 0.
    sums = np.add.reduceat(terms, np.minimum(starts, len(terms) - 1))
    return np.where(lengths > 0, sums, np.uint64(0)).astype(np.uint64)


def _streamed(path: Path) -> pq.ParquetFile:
    """A Parquet file to read batch by batch. pre_buffer off: with it (pyarrow's default),
    iter_batches keeps what it read ahead for the whole file, and memory grows by about
    3 MB per 100k-row batch (5M leads: +190 MB), against a flat line without."""
    return pq.ParquetFile(path, pre_buffer=False)


def _batches(path: Path, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    parquet = _streamed(path)
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        raise KeyError(
            f"{path} lacks feature columns the champion needs: {', '.join(missing)} "
            "(retrain after changing the feature catalogue)"
        )
    yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


def _in_order(func: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``func`` of each item on ``threads`` worker threads, yielded in the items' order.

    Items are taken (read) and results consumed (written) in the calling thread while the
    workers score; at most threads + 1 items are submitted and not yet consumed, so memory
    stays a few batches whatever the file's size. One thread: a plain loop, no pool."""
    if threads <= 1:
        yield from map(func, items)
        return
    pending: deque[Future[R]] = deque()
    # catch_warnings: scikit-learn's check_array enters warnings.catch_warnings in every
    # transform, and before Python 3.14 concurrent ones can leave a filter of another thread
    # behind in the process-wide list; it is put back as it was once the workers are done.
    with ThreadPoolExecutor(threads, thread_name_prefix="mlsys-score") as pool, warnings.catch_warnings():
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # a failed batch or write: no more work on the rest
                future.cancel()


def _features_path(as_of: date, settings: Settings) -> Path:
    path = settings.lead_features_path(as_of)
    if not path.exists():
        raise FeaturesMissingError(
            f"no features for {as_of} at {path}: run `mlsys features --as-of {as_of}` first"
        )
    return path


def plan(
    as_of: date, settings: Settings, *, run_id: str = "manual", n_shards: int | None = None
) -> ScorePlan:
    """Pin the champion, clear what killed runs left, and make this run's staging folder."""
    _features_path(as_of, settings)
    n_shards = settings.score_shards if n_shards is None else n_shards
    if settings.engine == "spark" and n_shards > 1:
        log.info("MLSYS_ENGINE=spark: one shard, a Spark job that partitions the leads itself")
        n_shards = 1
    if n_shards < 1:
        raise ValueError(f"the number of scoring shards must be >= 1, got {n_shards}")
    version = registry.alias_version(settings, registry.CHAMPION)
    if version is None:
        registry.load_champion(settings)  # raises NoChampionError with the how-to message
        raise AssertionError("unreachable")  # pragma: no cover
    _clean_stale_staging(settings, as_of)
    staging = settings.staging_dir / f"score_date={as_of.isoformat()}.{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    return ScorePlan(
        as_of, staging, str(version.version), n_shards, run_id, datetime.now(UTC).replace(tzinfo=None)
    )


def unranked_schema(scored: pa.Schema) -> pa.Schema:
    """A shard's file: the scored schema before the percentile ranks."""
    return pa.schema([f for f in scored if f.name != "score_percentile"])


UNRANKED_SCHEMA = unranked_schema(SCORED_SCHEMA)


def score_shard(
    score_plan: ScorePlan,
    shard: int,
    settings: Settings,
    *,
    champion: registry.LoadedModel | None = None,
) -> dict[str, Any]:
    """Score the leads of one shard into `unranked-<shard>.parquet` in the staging folder.

    Written under a temporary name and renamed, so a retried shard replaces its own file
    and a killed one leaves nothing a later step would pick up."""
    if not 0 <= shard < score_plan.n_shards:
        raise ValueError(f"shard {shard} is outside 0..{score_plan.n_shards - 1}")
    champion = champion or registry.load_version(settings, score_plan.model_version)
    if settings.engine == "spark":
        return _score_shard_on_spark(score_plan, shard, champion, settings)
    start = perf_counter()
    cutoffs = champion.metadata["score_bands"]
    # Transforms each batch once for the probability and the reasons (checked at load time
    # against the pipeline's own predict_proba on probe rows; see mlsys.champion). One for
    # all threads: scoring only reads its fitted transformers, model and explainer.
    scorer = Champion(champion)
    as_of, n_shards = score_plan.as_of, score_plan.n_shards
    final = score_plan.staging_dir / f"unranked-{shard:05d}.parquet"
    partial = final.with_suffix(".parquet.tmp")
    rows, total = 0, 0.0
    band_counts = dict.fromkeys("ABCD", 0)
    columns = ["lead_id", *champion.features]
    features_path = _features_path(as_of, settings)
    schema = unranked_schema(
        scored_schema(lead_id_type(_streamed(features_path).schema_arrow, features_path))
    )
    # Counts the leads read (all shards' rows pass by every shard), so the share is of the file.
    progress = Progress(
        f"score shard {shard + 1}/{n_shards}",
        total=pq.read_metadata(features_path).num_rows,
        unit="leads read",
    )
    # Each thread scores whole batches, the ones one thread would: cut into smaller slices, a
    # few scores could change in their last bit (BLAS treats the last rows of a matrix apart).
    threads = settings.scoring_threads()
    # What every row shares, repeated by Arrow (a Python list per batch would hold the GIL).
    shared = {
        "model_name": pa.scalar(champion.name, pa.string()),
        "model_version": pa.scalar(champion.version, pa.string()),
        "as_of": pa.scalar(as_of, pa.date32()),
        "scored_at": pa.scalar(score_plan.scored_at, pa.timestamp("us")),
        "run_id": pa.scalar(score_plan.run_id, pa.string()),
    }

    def read() -> Iterator[pa.RecordBatch]:
        for batch in _batches(features_path, columns, settings.score_batch_size):
            progress.advance(batch.num_rows)
            yield batch

    def score_batch(batch: pa.RecordBatch) -> tuple[pa.Table, float, dict[str, int]] | None:
        """One batch's rows of the shard's file, their score sum and band counts (on a worker)."""
        if n_shards > 1:
            mine = shard_of(batch.column("lead_id"), n_shards) == shard
            batch = batch.filter(pa.array(mine))
            if batch.num_rows == 0:
                return None
        p, reasons = scorer.score_arrow(batch)
        bands = band_of(p, cutoffs)
        counts = dict.fromkeys("ABCD", 0)
        _count_bands(counts, bands)
        scored = {
            "lead_id": batch.column("lead_id").cast(schema.field("lead_id").type),
            "score": pa.array(p, pa.float64()),
            "score_band": pa.array(bands, pa.string()),
            "top_reasons": reasons,
            **{name: pa.repeat(value, len(p)) for name, value in shared.items()},
        }
        return pa.table(scored, schema=schema), float(p.sum()), counts

    with pq.ParquetWriter(partial, schema) as writer, progress:
        for scored in _in_order(score_batch, read(), threads):
            if scored is None:
                continue
            table, score_sum, counts = scored
            writer.write_table(table)
            rows += table.num_rows
            total += score_sum
            for band, count in counts.items():
                band_counts[band] += count
    os.replace(partial, final)
    seconds = perf_counter() - start
    log.info("shard %d/%d: scored %d leads in %.1fs (%d threads)", shard, n_shards, rows, seconds, threads)
    return _shard_result(shard, rows, total, band_counts, seconds, champion)


def _count_bands(band_counts: dict[str, int], bands: np.ndarray) -> None:
    for band, count in zip(*np.unique(bands, return_counts=True), strict=True):
        band_counts[str(band)] += int(count)


def _shard_result(
    shard: int,
    rows: int,
    score_sum: float,
    band_counts: dict[str, int],
    seconds: float,
    champion: registry.LoadedModel,
) -> dict[str, Any]:
    """What a scored shard tells `combine` (an XCom in the DAG)."""
    return {
        "shard": shard,
        "rows": rows,
        "score_sum": score_sum,
        "band_counts": band_counts,
        "seconds": seconds,
        "model_name": champion.name,
        "model_version": champion.version,
    }


def combine(score_plan: ScorePlan, shard_results: list[dict[str, Any]], settings: Settings) -> ScoreResult:
    """Rank all shards' scores and write the partition's file in the staging folder."""
    expected = {f"unranked-{i:05d}" for i in range(score_plan.n_shards)}
    # A shard is one file, or the part files of a Spark job (unranked-<shard>-part-<j>).
    parts = sorted(score_plan.staging_dir.glob("unranked-*.parquet"))
    present = {p.name[: len("unranked-00000")] for p in parts}
    if present != expected:
        raise FileNotFoundError(
            f"staging {score_plan.staging_dir} has shards {sorted(present)}, expected {sorted(expected)}"
        )
    rows = sum(int(r["rows"]) for r in shard_results)
    if rows == 0:
        raise ValueError(f"no leads to score as of {score_plan.as_of}: lead_features is empty")
    # 8 bytes per lead, filled batch by batch and sorted in place: the only state that grows
    # with the number of leads (no whole-column table, no concatenated copy, no sorted copy).
    sorted_scores = np.empty(rows, dtype=np.float64)
    filled = 0
    for part in parts:
        batches = _streamed(part).iter_batches(batch_size=settings.score_batch_size, columns=["score"])
        for batch in batches:
            sorted_scores[filled : filled + batch.num_rows] = batch.column(0).to_numpy()
            filled += batch.num_rows
    if filled != rows:
        raise ValueError(f"the shards hold {filled} scores, their results say {rows}")
    sorted_scores.sort()
    _write_ranked(parts, score_plan.staging_dir / PART_FILE, sorted_scores, settings.score_batch_size)
    for part in parts:
        part.unlink()
    band_counts = dict.fromkeys("ABCD", 0)
    for r in shard_results:
        for band, count in r["band_counts"].items():
            band_counts[band] += int(count)
    return ScoreResult(
        score_plan.as_of,
        rows,
        float(sorted_scores.mean()),
        band_counts,
        str(shard_results[0]["model_name"]),
        score_plan.model_version,
        score_plan.staging_dir,
        sum(float(r["seconds"]) for r in shard_results),
    )


def score(
    as_of: date,
    settings: Settings,
    *,
    run_id: str = "manual",
    n_shards: int = 1,
) -> ScoreResult:
    """Plan, score every shard in this process, and combine: the whole step without Airflow."""
    start = perf_counter()
    score_plan = plan(as_of, settings, run_id=run_id, n_shards=n_shards)
    champion = registry.load_version(settings, score_plan.model_version)
    results = [score_shard(score_plan, i, settings, champion=champion) for i in range(score_plan.n_shards)]
    result = combine(score_plan, results, settings)
    result.seconds = perf_counter() - start
    log.info(
        "scored %d leads as of %s with %s v%s in %.1fs (mean score %.4f, bands %s)",
        result.rows,
        as_of,
        result.model_name,
        result.model_version,
        result.seconds,
        result.mean_score,
        result.band_counts,
    )
    return result


def _score_shard_on_spark(
    score_plan: ScorePlan, shard: int, champion: registry.LoadedModel, settings: Settings
) -> dict[str, Any]:
    """The shard's scoring as a Spark job (`mlsys.spark.score_unranked`, MLSYS_ENGINE=spark):
    one shard (Spark partitions the work itself), written as the job's part files,
    `unranked-<shard>-part-<j>.parquet`, which `combine` ranks like any shard's."""
    from mlsys import spark

    start = perf_counter()
    features_path = _features_path(score_plan.as_of, settings)
    job = {
        "as_of": score_plan.as_of,
        "scored_at": score_plan.scored_at,
        "run_id": score_plan.run_id,
        "model_name": champion.name,
        "model_version": champion.version,
        "cutoffs": dict(champion.metadata["score_bands"]),
        "id_type": lead_id_type(_streamed(features_path).schema_arrow, features_path),
    }
    job["schema"] = unranked_schema(scored_schema(job["id_type"]))
    out = score_plan.staging_dir / f"spark-{shard:05d}"
    parts = spark.score_unranked(features_path, out, Champion(champion), job, settings)
    rows, total = 0, 0.0
    band_counts = dict.fromkeys("ABCD", 0)
    for j, part in enumerate(parts):
        # Counted from the files, as written: what combine ranks is what the result says.
        for batch in _streamed(part).iter_batches(columns=["score", "score_band"]):
            rows += batch.num_rows
            total += float(np.sum(batch.column(0).to_numpy()))
            _count_bands(band_counts, batch.column(1).to_numpy(zero_copy_only=False))
        os.replace(part, score_plan.staging_dir / f"unranked-{shard:05d}-part-{j:05d}.parquet")
    shutil.rmtree(out)
    seconds = perf_counter() - start
    log.info(
        "shard %d/%d: Spark scored %d leads in %d parts in %.1fs",
        shard,
        score_plan.n_shards,
        rows,
        len(parts),
        seconds,
    )
    return _shard_result(shard, rows, total, band_counts, seconds, champion)


def _write_ranked(parts: list[Path], out: Path, sorted_scores: np.ndarray, batch_size: int) -> None:
    """Add score_percentile in a second streaming pass: the share of that night's leads
    scoring at or below this one, x100 (ties share a percentile; the best lead is 100)."""
    denominator = max(1, len(sorted_scores))
    pending: list[pa.Table] = []
    pending_rows = 0
    schema = scored_schema(_streamed(parts[0]).schema_arrow.field("lead_id").type)
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for part in parts:
            for batch in _streamed(part).iter_batches(batch_size=batch_size):
                scores = batch.column("score").to_numpy()
                rank = np.searchsorted(sorted_scores, scores, side="right")
                # cast: a Spark-written part names its list items `element`, not `item`.
                columns = {
                    name: batch.column(name).cast(schema.field(name).type)
                    for name in batch.schema.names
                    if name in schema.names
                }
                columns["score_percentile"] = pa.array(rank / denominator * 100.0, pa.float64())
                pending.append(pa.table([columns[f.name] for f in schema], schema=schema))
                pending_rows += batch.num_rows
                # Whole row groups of ROW_GROUP_ROWS; at most one group (+ a batch) in memory.
                while pending_rows >= ROW_GROUP_ROWS:
                    buffered = pa.concat_tables(pending)
                    writer.write_table(buffered.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                    rest = buffered.slice(ROW_GROUP_ROWS)
                    pending, pending_rows = [rest], rest.num_rows
        if pending_rows:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)


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


def publish(as_of: date, staging: Path, settings: Settings) -> Path:
    """Make the staging folder the partition of `as_of`, replacing any previous one at once:
    a swap of folders, or in the pointer mode a new committed version (mlsys.scored_table);
    returns the folder readers now read (the partition, or the committed version's)."""
    staging = Path(staging)
    if not (staging / PART_FILE).exists():
        raise FileNotFoundError(f"staging folder {staging} has no {PART_FILE}: score first")
    scored_table.check_mode(settings)
    if settings.publish_mode == "pointer":
        version_file = scored_table.publish_version(as_of, staging / PART_FILE, settings)
        shutil.rmtree(staging, ignore_errors=True)
        _view_file(settings)
        return version_file.parent  # the committed version's folder, what readers follow
    target = settings.partition_dir(as_of)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
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
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        raise OSError(
            exc.errno,
            f"cannot swap {staging} into {target}: the scored table is on another file system "
            "than the data folder (a mounted bucket?). The swap renames within one POSIX volume; "
            "on an object-store mount set MLSYS_PUBLISH_MODE=pointer (docs/spark.md)",
        ) from exc
    fsync_dir(target.parent)
    _view_file(settings)
    log.info("published %s", target)
    return target


def _view_file(settings: Settings) -> None:
    from mlsys import bi

    # Never opens the file BI readers hold; writes it (aside, then renamed) only when missing.
    bi.ensure_view_file(settings)


def read_partition(settings: Settings, as_of: date) -> Any:
    """The published partition of `as_of` as an Arrow table (tests, CLI summaries)."""
    files = scored_table.current_files(settings, as_of)
    if not files:
        raise FileNotFoundError(f"no published partition of {as_of} under {settings.scored_dir}")
    return pa.concat_tables(pq.read_table(f) for f in files)
