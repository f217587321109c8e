"""The row counts of previous successful runs, per suite, for the row-drop check."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

logger = logging.getLogger(__name__)


def _state_path(settings: Settings) -> Path:
    return settings.gx_runtime_dir / "state" / "row_counts.json"


# state[suite]["runs"][key] = {"row_count", "validated_at", "source"}: the last successful run
# per key. The key is the as_of date (ISO) of a mart and "undated" for a raw table, whose
# rows do not depend on the run's date (the landing folder is the whole export).
_UNDATED = "undated"
_MAX_RUNS_PER_SUITE = 1000  # about three years of nightly dates; oldest dropped first


def state_key(dated: bool, as_of: date | None) -> str:
    return as_of.isoformat() if dated and as_of is not None else _UNDATED


def baseline_row_count(suite_state: Any, key: str) -> int | None:
    """Row count of the run to compare with: the same key, else the latest earlier as_of.

    A backfill of an older date therefore compares with a run of an even older (or the same)
    date, never with today's larger mart.
    """
    runs = suite_state.get("runs") if isinstance(suite_state, dict) else None
    if not isinstance(runs, dict):
        return None  # first run, or the per-suite state of older versions: start afresh
    if key == _UNDATED:
        candidates = [k for k in runs if k == _UNDATED]
    else:
        candidates = [k for k in runs if k != _UNDATED and k <= key]
    if not candidates:
        return None
    run = runs[max(candidates)]
    count = run.get("row_count") if isinstance(run, dict) else None
    return count if isinstance(count, int) else None


def read_state(settings: Settings) -> dict[str, Any]:
    path = _state_path(settings)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        logger.warning("ignoring unreadable GX state file %s", path)
        return {}
    return data if isinstance(data, dict) else {}


def write_state(settings: Settings, suite: str, key: str, row_count: int, source: str) -> None:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The scoring and retrain DAGs may finish a suite at the same moment: without the lock
    # one read-modify-write would drop the other's entry.
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update_state(path, settings, suite, key, row_count, source)


def _update_state(path: Path, settings: Settings, suite: str, key: str, row_count: int, source: str) -> None:
    state = read_state(settings)
    suite_state = state.get(suite)
    runs = suite_state.get("runs") if isinstance(suite_state, dict) else None
    runs = dict(runs) if isinstance(runs, dict) else {}
    runs[key] = {
        "row_count": row_count,
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
    }
    for stale in sorted(k for k in runs if k != _UNDATED)[:-_MAX_RUNS_PER_SUITE]:
        del runs[stale]
    state[suite] = {"runs": runs}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def row_count_floor(previous: Any, max_drop_share: float) -> int:
    if not isinstance(previous, int) or previous <= 0:
        return 1
    share = min(max(max_drop_share, 0.0), 1.0)
    return max(1, math.ceil(previous * (1.0 - share)))


# --------------------------------------------------------------------------------------------
