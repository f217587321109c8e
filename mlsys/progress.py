"""Progress of long work, where a person waits: a bar on a terminal, a line every few
seconds in a log (an Airflow task log, a redirected CLI run), so nothing looks hung.

    with Progress("scoring", total=n_rows, unit="leads") as progress:
        for batch in batches:
            ...
            progress.advance(batch.num_rows)

On a terminal (the stream is a TTY) the bar is redrawn in place at most 5 times a second;
elsewhere a line ``<what>: 45% (4,500/10,000 leads), 12s elapsed, about 15s left`` goes to
the logger every ``interval`` seconds, and once at the end. Without a total the count and the
rate are shown instead of a share. Pure standard library; import it anywhere.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

log = logging.getLogger("mlsys.progress")

# A line in a log every this many seconds: often enough that a waiting person sees movement,
# rare enough that an hour's task log stays readable (720 lines).
LOG_INTERVAL_SECONDS = 5.0
_BAR_REDRAW_SECONDS = 0.2
_BAR_WIDTH = 30


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts work done out of ``total`` (None: unknown) and reports it (see the module)."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        unit: str = "",
        interval: float = LOG_INTERVAL_SECONDS,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
        clock: object = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.logger = logger or log
        self._clock = clock if callable(clock) else time.monotonic
        self.done_count = 0
        self.detail = ""
        self._start = self._clock()
        self._last_report = self._start
        self._finished = False
        isatty = getattr(self.stream, "isatty", None)
        self.bar = bool(isatty and isatty())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> Progress:
        return self

    def start_heartbeat(self) -> Progress:
        """Report every ``interval`` seconds even when nothing advances (one long step, such
        as a dbt model that runs for minutes), until `finish`."""
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name=f"progress {self.what}", daemon=True)
            self._heartbeat.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                now = self._clock()
                if now - self._last_report >= self.interval:
                    self._last_report = now
                    self._report(now)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(failed=exc_type is not None)

    def advance(self, n: int = 1, detail: str | None = None) -> None:
        """``n`` more units done; ``detail`` (a model's name, a file) is shown with the count."""
        with self._lock:
            self.done_count += n
            if detail is not None:
                self.detail = detail
            now = self._clock()
            due = _BAR_REDRAW_SECONDS if self.bar else self.interval
            if now - self._last_report >= due:
                self._last_report = now
                self._report(now)

    def describe(self, detail: str) -> None:
        """Change what the next report says is going on, without counting anything."""
        with self._lock:
            self.detail = detail

    def line(self, now: float | None = None) -> str:
        """The progress as one line of text."""
        elapsed = (self._clock() if now is None else now) - self._start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            share = min(self.done_count / self.total, 1.0)
            count = f"{self.done_count:,}/{self.total:,}{unit}"
            text = f"{self.what}: {share:.0%} ({count}), {_duration(elapsed)} elapsed"
            if 0 < share < 1:
                text += f", about {_duration(elapsed * (1 - share) / share)} left"
        else:
            rate = self.done_count / elapsed if elapsed > 0 else 0.0
            text = f"{self.what}: {self.done_count:,}{unit} in {_duration(elapsed)} ({rate:,.0f}/s)"
        return f"{text}; {self.detail}" if self.detail else text

    def _report(self, now: float) -> None:
        if self.bar:
            filled = int(_BAR_WIDTH * min(self.done_count / self.total, 1.0)) if self.total else 0
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled) if self.total else ""
            self.stream.write(f"\r[{bar}] {self.line(now)}\033[K" if bar else f"\r{self.line(now)}\033[K")
            self.stream.flush()
        else:
            self.logger.info("%s", self.line(now))

    def finish(self, *, failed: bool = False) -> None:
        """The last report (always written, however short the work was)."""
        if self._finished:
            return
        self._finished = True
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        now = self._clock()
        if self.bar:
            self._report(now)
            self.stream.write("\n")
            self.stream.flush()
        else:
            self.logger.info("%s%s", self.line(now), " (stopped)" if failed else " (done)")
