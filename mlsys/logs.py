"""One log line format for mlsys, with the Airflow run it belongs to on every line.

    ts=2026-06-01T02:00:03.120Z level=INFO logger=mlsys.score dag_id=score_leads
    run_id=scheduled__2026-06-01T02:00:00+00:00 task_id=publish msg="published ..."

(one line; logfmt: `key=value`, values with spaces or quotes are quoted), so a log shipper
or `grep run_id=...` finds every line of one run. Outside Airflow (the CLI) the three ids
are "-".

Where the ids come from, in order:
1. structlog's context variables. Airflow 3's task runner binds dag_id, task_id and run_id
   there before a task starts, and its task-log handler writes them as JSON keys on every
   line, mlsys lines included: inside a real task Airflow's own format already carries them,
   and nothing here replaces Airflow's handlers.
2. Airflow's current task context, for tasks run in this process (`dag.test()`, the demo),
   where the task runner above does not run.
3. "-".
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FIELDS = ("dag_id", "run_id", "task_id")
UNKNOWN = "-"
_HANDLER_NAME = "mlsys"


def _from_structlog() -> dict[str, str]:
    module = sys.modules.get("structlog.contextvars")
    if module is None:
        return {}
    bound = module.get_contextvars()
    return {k: str(bound[k]) for k in FIELDS if bound.get(k) is not None}


def _from_airflow() -> dict[str, str]:
    # Only when Airflow is already loaded: importing it costs seconds and the CLI never needs it.
    if "airflow.sdk" not in sys.modules:
        return {}
    try:
        from airflow.sdk import get_current_context

        context: Any = get_current_context()
    except Exception:  # noqa: BLE001 - no task is running in this process
        return {}
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    found = {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "run_id": getattr(dag_run, "run_id", None) or context.get("run_id"),
        "task_id": getattr(ti, "task_id", None),
    }
    return {k: str(v) for k, v in found.items() if v}


def run_context() -> dict[str, str]:
    """dag_id, run_id and task_id of the Airflow task running now, "-" for each one unknown."""
    found = _from_structlog()
    if len(found) < len(FIELDS):
        found = {**_from_airflow(), **found}
    return {k: found.get(k, UNKNOWN) for k in FIELDS}


class RunContextFilter(logging.Filter):
    """Adds `dag_id`, `run_id` and `task_id` to every record it sees (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = run_context()
        for key in FIELDS:
            if not isinstance(getattr(record, key, None), str):
                setattr(record, key, context[key])
        return True


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t\\'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """`ts level logger dag_id run_id task_id msg [exc]` as logfmt, one record per line."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        pairs = [
            ("ts", ts.replace("+00:00", "Z")),
            ("level", record.levelname),
            ("logger", record.name),
            *((key, str(getattr(record, key, UNKNOWN))) for key in FIELDS),
            ("msg", record.getMessage()),
        ]
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        elif record.exc_text:
            pairs.append(("exc", record.exc_text))
        return " ".join(f"{key}={_quote(value)}" for key, value in pairs)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (a test's capture too),
    not the object it was when the handler was made."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of this process to `stream` (default: stderr) in the mlsys
    format.

    For entry points mlsys owns (the CLI); never call it inside an Airflow task, whose
    handlers Airflow owns. Calling it again replaces the handler it installed before.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RunContextFilter())
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler
