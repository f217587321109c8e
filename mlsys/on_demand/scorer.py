"""The scorer behind both on-demand doors: the champion, the feature SQL and the published
features kept hot, each refreshed when the registry alias, the dbt project or the published
partitions change (see the package's doc for what a request is)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from time import monotonic, perf_counter
from typing import Any

import numpy as np

from mlsys import metrics, registry
from mlsys.champion import Champion
from mlsys.input_rules import type_name
from mlsys.on_demand.feature_sql import FeatureSQL, load_feature_sql, project_hash
from mlsys.on_demand.request import (
    LEAD_FIELDS,
    LeadPayload,
    LeadRef,
    Problems,
    RequestError,
    ScoringError,
    UnavailableError,
    parse_request,
)
from mlsys.scored_table import published_dates
from mlsys.settings import Settings

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Published features (lead_id items)
# --------------------------------------------------------------------------------------------


@dataclass
class _FeatureFile:
    """One lead_features file in memory, indexed by lead_id."""

    stamp: tuple[int, int]
    table: Any  # pyarrow.Table, the champion's columns + lead_id
    sorted_ids: np.ndarray
    order: np.ndarray

    def take(self, ids: list[Any]) -> tuple[Any, list[Any]]:
        if len(self.sorted_ids) == 0:
            return self.table.slice(0, 0), list(ids)
        # Text ids sort and compare as Python strings (an object array), integers as int64.
        wanted = np.asarray(ids, dtype=self.sorted_ids.dtype)
        pos = np.searchsorted(self.sorted_ids, wanted)
        pos = np.minimum(pos, len(self.sorted_ids) - 1)
        found = self.sorted_ids[pos] == wanted
        unknown = [i for i, hit in zip(ids, found, strict=True) if not hit]
        return self.table.take(self.order[pos[found]]), unknown


def _check_id_type(refs: list[LeadRef], id_type: Any) -> None:
    """Refuse ids of the other kind than the source's: a text id never matches an integer
    key, and an integer never matches a text key (``123`` is not ``"00123"``)."""
    import pyarrow as pa

    text = pa.types.is_string(id_type) or pa.types.is_large_string(id_type)
    rule = (
        "must be a string: this source's lead ids are text (VARCHAR)"
        if text
        else "must be an integer: this source's lead ids are integers (BIGINT)"
    )
    problems = Problems()
    for ref in refs:
        if isinstance(ref.lead_id, str) != text:
            problems.add(f"leads[{ref.index}].lead_id", f"{rule}, got {type_name(ref.lead_id)}")
    problems.raise_if_any()


# --------------------------------------------------------------------------------------------
# The scorer
# --------------------------------------------------------------------------------------------


@dataclass
class _Cached:
    value: Any = None
    checked: float = float("-inf")
    key: Any = None
    failed: tuple[Any, ScoringError] | None = None  # (key, error) of the last failed load
    lock: threading.Lock = field(default_factory=threading.Lock)


class Scorer:
    """Scores requests with the champion; safe to share between threads.

    Hot state is kept between requests: the champion (reloaded when the alias moves), the
    compiled feature SQL (recompiled when the dbt project's files change), the newest
    published partition, one in-memory DuckDB connection per thread, and, with
    ``cache_features``, the published lead_features file in memory (about 8 bytes per lead
    and numeric feature) so a lead_id lookup reads no file. By default a request checks the
    alias, project and partitions itself when the last check is older than
    ``refresh_seconds``; a server calls :meth:`start_refresher` to have a thread do it.
    A one-shot caller (the DAG task) passes ``cache_features=False`` and reads only the
    requested rows.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        refresh_seconds: float | None = None,
        cache_features: bool = True,
        model_version: str | None = None,
    ) -> None:
        self.settings = settings
        self.refresh_seconds = (
            self.settings.on_demand_refresh_seconds if refresh_seconds is None else refresh_seconds
        )
        self.cache_features = cache_features
        self.pinned_version = model_version
        self._champion = _Cached()
        self._sql = _Cached()
        self._published = _Cached()
        self._files: dict[Path, _FeatureFile] = {}
        self._files_lock = threading.Lock()
        self._local = threading.local()
        self._client: Any = None
        self._refresher: threading.Thread | None = None
        self._refresher_lock = threading.Lock()
        self._stop = threading.Event()

    # -- champion --------------------------------------------------------------------------

    def _alias_version(self) -> str | None:
        if self._client is None:
            # A client of its own, both URIs explicit: the refresh asks every few seconds, and
            # MLflow's process-wide registry URI may belong to another store by then.
            self._client = registry.client(self.settings)
        version = registry.alias_version(self.settings, registry.CHAMPION, mlflow_client=self._client)
        return None if version is None else str(version.version)

    def _fresh(self, state: _Cached) -> bool:
        """Whether a cached value may be used without checking it: always while the refresher
        thread runs (it checks), else for refresh_seconds after the last check."""
        return self._refresher is not None or monotonic() - state.checked < self.refresh_seconds

    def champion(self) -> Champion:
        """The current champion, loaded once per version."""
        state = self._champion
        current: Champion | None = state.value
        if current is not None and self._fresh(state):
            return current
        with state.lock:
            current = state.value
            if current is not None and self._fresh(state):
                return current  # another request checked while this one waited
            version = self.pinned_version or self._alias_version()
            state.checked = monotonic()
            if version is None:
                raise UnavailableError(
                    "no_champion",
                    f"no version of {self.settings.model_name!r} holds the {registry.CHAMPION!r} alias: "
                    "run the retrain DAG first",
                )
            if current is None or current.version != version:
                # Loading takes seconds; under the lock on purpose, so concurrent requests
                # wait for one load instead of each loading the same version.
                log.info("loading %s version %s for on-demand scoring", self.settings.model_name, version)
                state.value = Champion(registry.load_version(self.settings, version))
            return state.value

    def _refresh_champion(self) -> None:
        state = self._champion
        version = self.pinned_version or self._alias_version()
        current = state.value
        if version is None:
            with state.lock:
                state.value = None  # requests now check inline and answer no_champion
        elif current is None or current.version != version:
            log.info("champion moved to %s version %s: loading", self.settings.model_name, version)
            # Loaded outside the lock: requests keep scoring with the previous version meanwhile.
            loaded = Champion(registry.load_version(self.settings, version))
            with state.lock:
                state.value = loaded
                state.checked = monotonic()

    # -- feature SQL ------------------------------------------------------------------------

    def feature_sql(self) -> FeatureSQL:
        state = self._sql
        current: FeatureSQL | None = state.value
        if current is not None and current.project_hash == state.key and self._fresh(state):
            return current
        with state.lock:
            if state.key is None or not self._fresh(state):
                state.key = project_hash(self.settings)
                state.checked = monotonic()
            if state.value is not None and state.value.project_hash == state.key:
                return state.value
            # A project that does not compile fails fast until its files change, instead of
            # starting two dbt processes per request.
            if state.failed is not None and state.failed[0] == state.key:
                raise state.failed[1]
            try:
                state.value = load_feature_sql(self.settings)
            except ScoringError as exc:
                state.failed = (state.key, exc)
                raise
            return state.value

    def _refresh_sql(self) -> None:
        state = self._sql
        if state.value is None:
            return  # compiled on the first payload request, not for servers that get none
        digest = project_hash(self.settings)
        if digest == state.value.project_hash or (state.failed is not None and state.failed[0] == digest):
            return
        try:
            compiled = load_feature_sql(self.settings)
        except ScoringError as exc:
            with state.lock:
                state.failed = (digest, exc)
            # The nightly run will fail on this project too; payloads keep the last SQL that
            # compiled rather than start failing in the middle of the day.
            log.error("the changed dbt project does not compile; payloads keep the previous SQL: %s", exc)
            return
        with state.lock:
            state.value = compiled
            state.key = compiled.project_hash
            state.checked = monotonic()

    def _connection(self) -> Any:
        con = getattr(self._local, "con", None)
        if con is None:
            import duckdb

            con = duckdb.connect(config={"threads": 1})
            # The compiled SQL only ever reads the registered payload tables.
            con.execute("set enable_external_access = false")
            self._local.con = con
        return con

    def payload_features(self, payloads: list[LeadPayload], as_of: date) -> Any:
        """lead_features rows of the payloads as of `as_of`, from the nightly SQL."""
        import pyarrow as pa

        feature_sql = self.feature_sql()
        ts = pa.timestamp("us")
        leads = pa.table(
            {
                "lead_id": pa.array([p.lead_id for p in payloads], pa.int64()),
                "created_at": pa.array([p.attributes["created_at"] for p in payloads], ts),
                "source": pa.array([p.attributes["source"] for p in payloads], pa.string()),
                "industry": pa.array([p.attributes["industry"] for p in payloads], pa.string()),
                "country": pa.array([p.attributes["country"] for p in payloads], pa.string()),
                "company_size": pa.array([p.attributes["company_size"] for p in payloads], pa.int64()),
                "job_level": pa.array([p.attributes["job_level"] for p in payloads], pa.string()),
            }
        )
        activities = pa.table(
            {
                "lead_id": pa.array([p.lead_id for p in payloads for _ in p.activities], pa.int64()),
                "occurred_at": pa.array([a[0] for p in payloads for a in p.activities], ts),
                "activity_type": pa.array([a[1] for p in payloads for a in p.activities], pa.string()),
            }
        )
        con = self._connection()
        con.register(feature_sql.sources["leads"], leads)
        con.register(feature_sql.sources["activities"], activities)
        try:
            return con.sql(feature_sql.render(as_of)).to_arrow_table()
        finally:
            con.unregister(feature_sql.sources["leads"])
            con.unregister(feature_sql.sources["activities"])

    # -- published features -----------------------------------------------------------------

    def latest_published(self) -> date:
        state = self._published
        current: date | None = state.value
        if current is not None and self._fresh(state):
            return current
        with state.lock:
            if state.value is None or not self._fresh(state):
                self._refresh_published_locked()
            if state.value is None:
                raise UnavailableError(
                    "no_features",
                    "no scored partition is published yet, so there are no features to look lead ids "
                    "up in: run the score_leads DAG first (or send full lead payloads)",
                )
            return state.value

    def _refresh_published_locked(self) -> None:
        dates = published_dates(self.settings)
        self._published.value = dates[-1] if dates else None
        self._published.checked = monotonic()

    def _refresh_published(self) -> None:
        with self._published.lock:
            self._refresh_published_locked()

    # -- the refresher thread --------------------------------------------------------------

    def start_refresher(self) -> None:
        """Check the champion alias, the dbt project and the published partitions on a
        thread of their own every refresh_seconds, so requests never wait for those checks
        (a long-running server's choice; one-shot callers check inline, which is the default)."""
        with self._refresher_lock:
            if self._refresher is not None:
                return
            self._stop.clear()
            self._refresher = threading.Thread(
                target=self._refresh_loop, name="mlsys-scorer-refresh", daemon=True
            )
            self._refresher.start()

    def stop_refresher(self) -> None:
        with self._refresher_lock:
            thread, self._refresher = self._refresher, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=60)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(max(self.refresh_seconds, 0.05)):
            for step in (self._refresh_champion, self._refresh_sql, self._refresh_published):
                try:
                    step()
                except Exception:  # keep refreshing; requests report their own errors
                    log.exception("on-demand scorer: %s failed", step.__name__)

    def lookup(
        self, ids: list[Any], as_of: date, columns: list[str], refs: list[LeadRef] | None = None
    ) -> tuple[Any, list[Any]]:
        """Rows of `ids` in the lead_features file of `as_of`, and the ids it lacks; `refs`,
        the request's items of those ids, are first held to the file's id type."""
        path = self.settings.lead_features_path(as_of)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise RequestError(
                "no_features",
                f"no lead_features for as_of {as_of}: look leads up as of a published date "
                "(omit as_of for the latest) or send full payloads",
                {"as_of": as_of.isoformat()},
                status=404,
            ) from None
        wanted = ["lead_id", *columns]
        import pyarrow.parquet as pq

        if not self.cache_features:
            import duckdb

            if refs is not None:
                _check_id_type(refs, pq.read_schema(path).field("lead_id").type)

            sql_type = "varchar" if ids and isinstance(ids[0], str) else "bigint"
            with duckdb.connect() as con:
                # Ids travel as a bound parameter, never formatted into the SQL text.
                table = con.sql(
                    f"select * from read_parquet($path) where lead_id in (select unnest($ids::{sql_type}[]))",  # noqa: S608 - one of two type names
                    params={"path": str(path), "ids": ids},
                ).to_arrow_table()
            table = table.select([c for c in wanted if c in table.column_names])
            found = set(table.column("lead_id").to_pylist())
            return _align(table, ids), [i for i in ids if i not in found]
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._files_lock:
            cached = self._files.get(path)
            if cached is None or cached.stamp != stamp or not set(wanted) <= set(cached.table.column_names):
                available = pq.read_schema(path).names
                table = pq.read_table(path, columns=[c for c in wanted if c in available])
                lead_ids = table.column("lead_id").to_numpy(zero_copy_only=False)
                order = np.argsort(lead_ids, kind="stable")
                cached = _FeatureFile(stamp, table, lead_ids[order], order)
                # Keep the latest few files; older dates are rare lookups.
                self._files = dict(list(self._files.items())[-2:])
                self._files[path] = cached
        if refs is not None:  # the file in memory knows its id type: no extra read per request
            _check_id_type(refs, cached.table.schema.field("lead_id").type)
        return cached.take(ids)

    # -- scoring ----------------------------------------------------------------------------

    def score(self, conf: Any, *, record: bool = True) -> list[dict[str, Any]]:
        """Score a request; emits the on-demand metrics whatever happens (unless not `record`:
        a server's own warm-up probe is no client's request)."""
        if not record:
            return self._score(conf)
        start = perf_counter()
        try:
            results = self._score(conf)
        except Exception:
            metrics.incr("predictions.error", settings=self.settings)
            raise
        finally:
            metrics.timing("prediction.duration", perf_counter() - start, self.settings)
        metrics.incr("predictions.success", settings=self.settings)
        metrics.histogram("prediction.batch_size", len(results), self.settings)
        return results

    def _score(self, conf: Any) -> list[dict[str, Any]]:
        request = parse_request(conf, self.settings.on_demand_max_leads)
        champion = self.champion()
        results: dict[int, dict[str, Any]] = {}
        if request.refs:
            as_of = request.as_of or self.latest_published()
            ids = [r.lead_id for r in request.refs]
            table, unknown = self.lookup(ids, as_of, [*champion.numeric, *champion.categorical], request.refs)
            if unknown:
                raise RequestError(
                    "unknown_leads",
                    f"{len(unknown)} lead id(s) not in the features as of {as_of}: send full payloads "
                    "for leads the nightly run has not seen",
                    {"lead_ids": unknown[:20], "as_of": as_of.isoformat()},
                    status=404,
                )
            self._emit(champion, table, request.refs, as_of, results)
        if request.payloads:
            as_of = request.as_of or datetime.now(UTC).date() + timedelta(days=1)
            payloads = request.payloads
            table = self.payload_features(payloads, as_of)
            ids = [p.lead_id for p in payloads]
            present = set(table.column("lead_id").to_pylist())
            late = [p for p in payloads if p.lead_id not in present]
            if late:
                raise RequestError(
                    "lead_not_known_at_as_of",
                    f"{len(late)} lead(s) created on or after as_of {as_of}: features as of a date use only "
                    "what happened before it; pass a later as_of",
                    {"lead_ids": [p.lead_id for p in late][:20], "as_of": as_of.isoformat()},
                )
            self._emit(champion, _align(table, ids), payloads, as_of, results)
        return [results[i] for i in range(len(request.items))]

    @staticmethod
    def _emit(
        champion: Champion,
        table: Any,
        items: Iterable[LeadRef | LeadPayload],
        as_of: date,
        out: dict[int, dict[str, Any]],
    ) -> None:
        present = set(table.column_names)
        missing = [c for c in [*champion.numeric, *champion.categorical] if c not in present]
        if missing:
            raise UnavailableError(
                "feature_mismatch",
                f"the features as of {as_of} lack columns champion v{champion.version} needs: "
                f"{', '.join(missing)} (retrain after changing the feature catalogue)",
                {"missing": missing},
            )
        p, reasons, bands = champion.predict(table)
        for item, score, reason, band in zip(items, p.tolist(), reasons, bands.tolist(), strict=True):
            out[item.index] = {
                "lead_id": item.lead_id,
                "score": score,
                "score_band": str(band),
                "top_reasons": reason,
                "model_name": champion.name,
                "model_version": champion.version,
                "as_of": as_of.isoformat(),
            }

    def loaded_version(self) -> str | None:
        """The champion version in memory now: None before the first load, or once the alias
        is gone (readiness reports it without touching the registry)."""
        current = self._champion.value
        return None if current is None else str(current.version)

    def describe(self) -> dict[str, Any]:
        """The champion being served (GET /mlsys/model)."""
        info = self.champion().describe()
        info["max_leads_per_request"] = self.settings.on_demand_max_leads
        try:
            info["lead_id_features_as_of"] = self.latest_published().isoformat()
        except UnavailableError:
            info["lead_id_features_as_of"] = None
        return info


def _align(table: Any, ids: list[Any]) -> Any:
    """`table`'s rows in the order of `ids` (each id once in the table)."""
    import pyarrow as pa

    position = {lead_id: i for i, lead_id in enumerate(table.column("lead_id").to_pylist())}
    index = [position[i] for i in ids if i in position]
    return table.take(pa.array(index, pa.int64()))


def score_leads(conf: Any, settings: Settings, *, cache_features: bool = True) -> list[dict[str, Any]]:
    """Score one request with a scorer of its own (the DAG task and the CLI: one request per
    process; a server keeps its Scorer instead)."""
    return Scorer(settings, cache_features=cache_features).score(conf)


def payloads_from_raw(settings: Settings, lead_ids: list[int], before: date) -> list[dict[str, Any]]:
    """Request items for `lead_ids` built from the raw landing tables: the lead's attributes and
    its activities before `before`, as a CRM would send them (the parity test and the
    benchmark use this; it is also a way to see what a payload looks like)."""
    import duckdb

    raw = settings.raw_dir
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        leads = con.sql(
            f"select {', '.join(LEAD_FIELDS)} from read_parquet($leads, union_by_name = true) "  # noqa: S608 - column names are constants; ids are bound
            "where lead_id in (select unnest($ids::bigint[])) "
            "qualify row_number() over (partition by lead_id order by created_at) = 1",
            params={"leads": str(raw / "leads" / "*.parquet"), "ids": lead_ids},
        ).fetchall()
        activities = con.sql(
            "select lead_id, occurred_at, activity_type from read_parquet($acts, union_by_name = true) "
            "where lead_id in (select unnest($ids::bigint[])) and occurred_at < $before "
            "order by lead_id, occurred_at",
            params={"acts": str(raw / "activities" / "*.parquet"), "ids": lead_ids, "before": before},
        ).fetchall()
    by_lead: dict[int, list[dict[str, Any]]] = {}
    for lead_id, occurred_at, kind in activities:
        by_lead.setdefault(lead_id, []).append(
            {"occurred_at": occurred_at.isoformat(), "activity_type": kind}
        )
    found: dict[int, dict[str, Any]] = {}
    for row in leads:
        item: dict[str, Any] = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in zip(LEAD_FIELDS, row, strict=True)
        }
        item["activities"] = by_lead.get(row[0], [])
        found[row[0]] = item
    return [found[i] for i in lead_ids if i in found]
