"""Progress where a person waits: a bar on a terminal, a line every few seconds in a log."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from mlsys.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_interval_and_one_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with (
        caplog.at_level(logging.INFO, logger="mlsys.progress"),
        Progress("scoring", total=1000, unit="leads", interval=5, stream=io.StringIO(), clock=clock) as p,
    ):
        for _ in range(10):
            clock.now += 2
            p.advance(100)
    lines = [r.getMessage() for r in caplog.records if r.name == "mlsys.progress"]
    # 20 s of work, a line at 6, 12 and 18 s (the first due after 5 s), then the last.
    assert lines[:3] == [
        "scoring: 30% (300/1,000 leads), 6s elapsed, about 14s left",
        "scoring: 60% (600/1,000 leads), 12s elapsed, about 8s left",
        "scoring: 90% (900/1,000 leads), 18s elapsed, about 2s left",
    ]
    assert lines[3] == "scoring: 100% (1,000/1,000 leads), 20s elapsed (done)"
    assert len(lines) == 4


def test_a_terminal_gets_a_bar_redrawn_in_place() -> None:
    clock, terminal = Clock(), Terminal()
    with Progress("generate", total=4, stream=terminal, clock=clock) as p:
        for _ in range(4):
            clock.now += 1
            p.advance(1)
    out = terminal.getvalue()
    assert out.count("\r") == 5 and out.endswith("\n")  # four redraws and the last
    assert "[" + "#" * 30 + "] generate: 100% (4/4), 4s elapsed" in out
    assert "[#######-----------------------] generate: 25% (1/4)" in out


def test_without_a_total_count_and_rate_and_a_failure_says_stopped(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    work = Progress("dbt build", unit="nodes", stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="mlsys.progress"), pytest.raises(RuntimeError), work as p:
        clock.now = 10
        p.advance(5, detail="running stg_activities")
        raise RuntimeError("boom")
    assert (
        caplog.records[-1].getMessage() == "dbt build: 5 nodes in 10s (0/s); running stg_activities (stopped)"
    )


def test_a_heartbeat_reports_while_nothing_advances(caplog: pytest.LogCaptureFixture) -> None:
    reported = threading.Event()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reported.set()

    logger = logging.getLogger("mlsys.progress.test")
    logger.addHandler(handler := Handler())
    logger.setLevel(logging.INFO)
    try:
        p = Progress("dbt build", unit="nodes", interval=0.05, stream=io.StringIO(), logger=logger)
        p.describe("running stg_activities")
        p.start_heartbeat()
        assert reported.wait(5), "no heartbeat line"
        p.finish()
    finally:
        logger.removeHandler(handler)
