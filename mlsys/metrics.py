"""StatsD metrics of the contract in DESIGN section 6 (prefix ``mlsys``).

Metrics are fire-and-forget UDP: a task must never fail because nobody listens, so every
send is wrapped and a broken client is logged once, not raised.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from time import perf_counter
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def metric_safe(name: str) -> str:
    """A name part safe inside a dotted StatsD name (feature names become ``a_b``)."""
    return _UNSAFE.sub("_", name)


@lru_cache(maxsize=8)
def _client(host: str, port: int, prefix: str) -> Any:
    import statsd

    return statsd.StatsClient(host=host, port=port, prefix=prefix)


def _send(method: str, name: str, value: float, settings: Settings | None) -> None:
    s = settings or Settings.from_env()
    try:
        getattr(_client(s.statsd_host, s.statsd_port, s.statsd_prefix), method)(name, value)
    except Exception as exc:  # noqa: BLE001 - metrics must never break the pipeline
        log.debug("statsd %s %s failed: %s", method, name, exc)


def gauge(name: str, value: float, settings: Settings | None = None) -> None:
    _send("gauge", name, float(value), settings)


def incr(name: str, count: int = 1, settings: Settings | None = None) -> None:
    _send("incr", name, count, settings)


def timing(name: str, seconds: float, settings: Settings | None = None) -> None:
    """StatsD timers are in milliseconds; callers think in seconds."""
    _send("timing", name, seconds * 1000.0, settings)


@contextmanager
def timed(name: str, settings: Settings | None = None) -> Iterator[None]:
    start = perf_counter()
    try:
        yield
    finally:
        timing(name, perf_counter() - start, settings)
