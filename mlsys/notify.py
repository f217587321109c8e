"""Airflow tells someone itself: a pipeline task that failed for good, a nightly run past its
deadline, posted to a chat's incoming webhook (docs/deployment.md, "Airflow notifications").

`WebhookNotifier` is an Airflow notifier (`BaseNotifier`). `mlsys.airflow_support` wires it:
`on_failure_callback` of every `score_leads` and `retrain` task (Airflow calls it once a task
has no try left; a try that will be retried calls `on_retry_callback`, which stays unset), and
the Deadline Alert of `score_leads`. It posts one JSON message to `MLSYS_ALERT_WEBHOOK_URL`
and does nothing when that variable is unset or empty.

The body carries `text`, the one line chat incoming webhooks (Slack, Mattermost, Rocket.Chat,
...) show, and `mlsys`, the same facts as fields for anything that routes on them:
`{"event", "dag_id", "task_id", "run_id", "try_number", "reason", "log_url"}`.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseNotifier

from mlsys.settings import Settings

log = logging.getLogger(__name__)

TASK_FAILED = "task_failed"
DEADLINE_MISSED = "deadline_missed"
EVENTS = (TASK_FAILED, DEADLINE_MISSED)
POST_TIMEOUT_SECONDS = 10
REASON_MAX_CHARS = 300


def first_line(error: object) -> str:
    """The one-line reason of a failure: the first line of its message (a gate's summary starts
    with the suite, its verdict and the count of failed expectations), cut short."""
    text = str(error or "").strip()
    line = text.splitlines()[0].strip() if text else ""
    if not line:
        line = type(error).__name__ if error is not None else "no error message"
    return line if len(line) <= REASON_MAX_CHARS else line[: REASON_MAX_CHARS - 3] + "..."


def _field(source: Any, *names: str) -> Any:
    """The first of `names` set on an object or a mapping (the task runner's context holds
    objects, a Deadline Alert's context plain dicts)."""
    for name in names:
        value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
        if value not in (None, ""):
            return value
    return None


def message(event: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body for `event` in an Airflow callback `context`."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}")
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    dag_id = _field(ti, "dag_id") or _field(dag_run, "dag_id") or "?"
    run_id = _field(ti, "run_id") or _field(dag_run, "run_id", "dag_run_id") or context.get("run_id") or "?"
    fields: dict[str, Any] = {"event": event, "dag_id": str(dag_id), "run_id": str(run_id)}
    if event == TASK_FAILED:
        task_id = str(_field(ti, "task_id") or "?")
        map_index = _field(ti, "map_index")
        if isinstance(map_index, int) and map_index >= 0:
            task_id = f"{task_id}[{map_index}]"
        reason = first_line(context.get("exception"))
        fields |= {"task_id": task_id, "try_number": _field(ti, "try_number"), "reason": reason}
        text = f"[mlsys] {dag_id} task {task_id} FAILED (run {run_id}): {reason}"
    else:
        deadline = context.get("deadline") or {}
        when = _field(deadline, "deadline_time")
        fields |= {"deadline": str(when) if when else None, "reason": "not finished by its deadline"}
        text = f"[mlsys] {dag_id} run {run_id} is not finished by its deadline ({when or '?'}): still running"
    log_url = _field(ti, "log_url")  # a task's page in the UI ([api] base_url); none for a run
    if log_url:
        fields["log_url"] = str(log_url)
        text += f" - {log_url}"
    return {"text": text, "mlsys": fields}


def post_json(url: str, body: Mapping[str, Any], timeout: float = POST_TIMEOUT_SECONDS) -> int:
    """POST `body` as JSON; the status, or an exception when the receiver refused it."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"MLSYS_ALERT_WEBHOOK_URL must be an http(s) URL, got scheme {scheme!r}")
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked above
        return int(response.status)


class WebhookNotifier(BaseNotifier):
    """Posts `message(event, context)` to `MLSYS_ALERT_WEBHOOK_URL`; off when it is unset.

    Usable as a task callback (`WebhookNotifier(TASK_FAILED)`) and as a Deadline Alert's
    `SyncCallback(WebhookNotifier, kwargs={"event": DEADLINE_MISSED})`, which Airflow builds with
    the kwargs and the context, then calls with the context."""

    def __init__(self, event: str = TASK_FAILED, context: Any = None) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}")
        super().__init__(context)
        self.event = event

    def notify(self, context: Any) -> None:
        url = Settings.from_env().alert_webhook_url
        if not url:
            log.debug("MLSYS_ALERT_WEBHOOK_URL is not set: no %s notification", self.event)
            return
        body = message(self.event, context)
        status = post_json(url, body)
        log.info("sent the %s notification (HTTP %s): %s", self.event, status, body["text"])
