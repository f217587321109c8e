"""StatsD metrics, prefix ``mlsys``.

Metrics are fire-and-forget UDP: a task must never fail because nobody listens, so every
send is wrapped and a broken client is logged once, not raised.

`CONTRACT` lists every name mlsys sends. `docker/statsd/mapping.yml` turns each into a
labelled Prometheus metric, the dashboards and alert rules use only those, and
tests/integration/test_observability.py holds the three together: add a metric here, in the mapping, and
(when an operator should see it) on a dashboard.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache
from time import perf_counter
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")

# Name (without the prefix) -> StatsD type. `*` is one dot-free segment: a mart, model,
# suite, feature, band or status.
CONTRACT: dict[str, str] = {
    # features (dbt)
    "features.rows": "gauge",
    "features.rows.*": "gauge",
    "features.build_seconds": "timer",
    "features.model_seconds.*": "timer",
    "features.model_rows.*": "gauge",
    # the Great Expectations gate
    "validation.success": "gauge",
    "validation.failed_expectations": "gauge",
    "validation.*.success": "gauge",
    "validation.*.failed_expectations": "gauge",
    "validation.*.warnings": "gauge",
    # training, drift and the champion in production
    "train.roc_auc": "gauge",
    "train.pr_auc": "gauge",
    "train.brier": "gauge",
    "train.promoted": "gauge",
    "train.model_version": "gauge",
    "drift.psi.*": "gauge",
    "drift.detected": "gauge",
    "realized.roc_auc": "gauge",
    "realized.degraded": "gauge",
    # nightly scoring
    "score.rows": "counter",
    "score.duration": "timer",
    "score.mean": "gauge",
    "score.band.*": "gauge",
    "score.latest_partition_timestamp": "gauge",
    "score.last_success_timestamp": "gauge",
    # 1 while nightly scoring runs on the locally cached champion (MLflow unreachable), else 0
    "score.champion_from_cache": "gauge",
    # on-demand scoring
    "predictions.*": "counter",
    "prediction.duration": "timer",
    "prediction.batch_size": "histogram",
}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """statsd_exporter's glob: `*` is exactly one dot-free, non-empty segment."""
    parts = ("[^.]+" if part == "*" else re.escape(part) for part in pattern.split("."))
    return re.compile("^" + r"\.".join(parts) + "$")


_CONTRACT_RES = [(glob_regex(name), kind) for name, kind in CONTRACT.items()]
# statsd_exporter turns timers and histograms alike into one observer (histogram) metric.
_FAMILY = {"gauge": "gauge", "counter": "counter", "timer": "observer", "histogram": "observer"}


def contract_type(name: str) -> str | None:
    """The StatsD type the contract gives `name` (without prefix), None when it is not in it."""
    for pattern, kind in _CONTRACT_RES:
        if pattern.match(name):
            return kind
    return None


def metric_safe(name: str) -> str:
    """A name part safe inside a dotted StatsD name (feature names become ``a_b``)."""
    return _UNSAFE.sub("_", name)


@lru_cache(maxsize=8)
def _client(host: str, port: int, prefix: str) -> Any:
    """One client per destination, or None when it cannot be built (an unresolvable host):
    cached, so a missing DNS name costs one lookup per process, not one per metric."""
    import statsd

    class _StatsClient(statsd.StatsClient):
        def histogram(self, stat: str, value: float, rate: float = 1) -> None:
            # `|h` is a plain observation: statsd_exporter does not divide it by 1000 as it
            # does `|ms`, so a batch size stays a count.
            self._send_stat(stat, f"{value}|h", rate)

    try:
        return _StatsClient(host=host, port=port, prefix=prefix)
    except Exception as exc:  # noqa: BLE001 - metrics must never break the pipeline
        log.warning("metrics off in this process: no StatsD client for %s:%s (%s)", host, port, exc)
        return None


@lru_cache(maxsize=256)
def _check_contract(name: str, kind: str) -> None:
    """Warn once per name that is not in CONTRACT: the mapping would not label it."""
    expected = contract_type(name)
    if expected is None or _FAMILY[expected] != _FAMILY[kind]:
        log.warning("metric %s (%s) is not in mlsys.metrics.CONTRACT (%s)", name, kind, expected)


def _send(method: str, kind: str, name: str, value: float, settings: Settings) -> None:
    try:
        _check_contract(name, kind)
        client = _client(settings.statsd_host, settings.statsd_port, settings.statsd_prefix)
        if client is not None:
            getattr(client, method)(name, value)
    except Exception as exc:  # noqa: BLE001 - metrics must never break the pipeline
        log.debug("statsd %s %s failed: %s", method, name, exc)


def gauge(name: str, value: float, settings: Settings) -> None:
    _send("gauge", "gauge", name, float(value), settings)


def incr(name: str, count: int = 1, *, settings: Settings) -> None:
    _send("incr", "counter", name, count, settings)


def timing(name: str, seconds: float, settings: Settings) -> None:
    """StatsD timers are in milliseconds; callers think in seconds."""
    _send("timing", "timer", name, seconds * 1000.0, settings)


def histogram(name: str, value: float, settings: Settings) -> None:
    """An observation that is not a duration (a batch size): the mapping buckets it as is."""
    _send("histogram", "histogram", name, float(value), settings)


@contextmanager
def timed(name: str, settings: Settings) -> Iterator[None]:
    start = perf_counter()
    try:
        yield
    finally:
        timing(name, perf_counter() - start, settings)


def scored_table_freshness(settings: Settings) -> date | None:
    """After a publish: the newest partition's date and the time of this success, as Unix
    seconds. The newest date on disk, not the date just published, so that a backfill of an
    old date does not look like the nightly partition went missing."""
    from mlsys.scored_table import published_dates

    s = settings
    dates = published_dates(s)
    newest = dates[-1] if dates else None
    if newest is not None:
        midnight = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
        gauge("score.latest_partition_timestamp", midnight.timestamp(), s)
    gauge("score.last_success_timestamp", time.time(), s)
    return newest
