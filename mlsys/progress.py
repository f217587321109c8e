"""Progress on long work, so nothing looks hung: a bar on a terminal, a line every few seconds
in a log (an Airflow task log, a redirected CLI).

    with Progress("fitting logreg + SMOTE on 400,000 rows") :
        pipeline.fit(x, y)                      # a line every INTERVAL_SECONDS meanwhile

    for candidate in track(candidates, "tuning"):
        ...                                     # "tuning: 3/6 (50%), 41 s"

A heartbeat thread writes while the work runs, so even one long call (a dbt model, a fit)
reports; the work itself is not touched. The last line says how long it took.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from types import TracebackType
from typing import IO, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds between two lines in a log; a terminal's bar is redrawn every second.
INTERVAL_SECONDS = 10.0
BAR_WIDTH = 24


class Progress:
    """A context manager reporting `what` until the block ends; `advance` counts steps of
    `total` (if known) and `note` says what is being done now."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        interval: float | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._interval = interval if interval is not None else (1.0 if self._tty else INTERVAL_SECONDS)
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name=f"progress: {self.what}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        verdict = "done" if kind is None else f"failed ({kind.__name__})"
        self._emit(f"{self.what}: {verdict} in {self.elapsed():.0f} s", final=True)

    def advance(self, steps: int = 1, note: str = "") -> None:
        with self._lock:
            self.done += steps
            self.note = note or self.note

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def line(self) -> str:
        """`what: 3/6 (50%), 41 s: note` (the parts that are known)."""
        with self._lock:
            done, total, note = self.done, self.total, self.note
        parts = [self.what + ":"]
        if total:
            parts.append(f"{done}/{total} ({done / total:.0%}),")
        elif done:
            parts.append(f"{done} done,")
        parts.append(f"{self.elapsed():.0f} s")
        text = " ".join(parts)
        return f"{text}: {note}" if note else text

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            self._emit(self.line())

    def _emit(self, text: str, *, final: bool = False) -> None:
        if not self._tty:
            log.info(text)
            return
        with self._lock:
            done, total = self.done, self.total
        if total and not final:
            filled = int(BAR_WIDTH * min(done, total) / total)
            text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"
        self._stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        self._stream.flush()


def track(
    items: Iterable[T], what: str, total: int | None = None, *, interval: float | None = None
) -> Iterator[T]:
    """Yield `items`, reporting `what` with how many are done (`total`: len(items) if it has one)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with Progress(what, total, interval=interval) as progress:
        for item in items:
            yield item
            progress.advance()
