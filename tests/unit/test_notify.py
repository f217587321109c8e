"""Airflow's own notifications (mlsys/notify.py) and how the DAGs wire them.

Live runs: tests/integration/test_e2e.py (a failed gate under `dag.test()` posts exactly one notification
with the gate's reason, a successful run and a refused on-demand request post none) and
tests/stack/test_postgres_celery.py::test_a_run_past_its_deadline_notifies (the Deadline Alert,
found by a real scheduler and run by its executor). Here: the wiring, the message for each
callback's context, and "off when unset".
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mlsys import notify
from mlsys.airflow_support import DEFAULT_ARGS, PIPELINE_ARGS, nightly_deadline
from tests.live import WebhookReceiver


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    from mlsys.settings import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors
    return bag.dags


def test_every_pipeline_task_notifies_once_it_failed_for_good(dags: dict[str, Any]) -> None:
    for dag_id in ("score_leads", "retrain"):
        for task in dags[dag_id].tasks:
            notifiers = [c for c in task.on_failure_callback if isinstance(c, notify.WebhookNotifier)]
            assert [n.event for n in notifiers] == [notify.TASK_FAILED], (dag_id, task.task_id)
            # A try that will be retried tells nobody.
            assert not task.on_retry_callback, (dag_id, task.task_id)
    # score_on_demand's failures are answers to its caller, not incidents.
    for task in dags["score_on_demand"].tasks:
        assert not task.on_failure_callback
    assert "on_failure_callback" not in DEFAULT_ARGS and PIPELINE_ARGS["retries"] == DEFAULT_ARGS["retries"]


def test_the_nightly_run_has_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.deadline import DeadlineReference

    from mlsys.settings import REPO_ROOT

    # Without a webhook the deadline would notify no one: none is set (the laptop's default,
    # where `airflow dags test score_leads` must work).
    assert not DagBag(dag_folder=str(REPO_ROOT / "dags" / "score_leads.py")).dags["score_leads"].deadline
    monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    dags = DagBag(dag_folder=str(REPO_ROOT / "dags" / "score_leads.py")).dags
    (alert,) = dags["score_leads"].deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(minutes=60)
    assert alert.callback.path == "mlsys.notify.WebhookNotifier"
    assert alert.callback.kwargs == {"event": notify.DEADLINE_MISSED}
    assert dags["score_leads"].dagrun_timeout > alert.interval
    monkeypatch.setenv("MLSYS_NIGHTLY_DEADLINE_MINUTES", "0.5")
    assert nightly_deadline().interval == timedelta(seconds=30)
    monkeypatch.setenv("MLSYS_NIGHTLY_DEADLINE_MINUTES", "0")
    assert nightly_deadline() is None
    monkeypatch.setenv("MLSYS_NIGHTLY_DEADLINE_MINUTES", "-5")
    with pytest.raises(ValueError, match="MLSYS_NIGHTLY_DEADLINE_MINUTES must be positive"):
        nightly_deadline()


def test_the_deadline_message_from_the_context_airflow_gives_it() -> None:
    # The shape of airflow.models.deadline.Deadline.handle_miss's context: JSON, no objects.
    context = {
        "dag_run": {"dag_id": "score_leads", "dag_run_id": "scheduled__2026-06-02T02:00:00+00:00"},
        "deadline": {"id": "0192", "deadline_time": "2026-06-02T03:00:00+00:00"},
    }
    body = notify.message(notify.DEADLINE_MISSED, context)
    assert body["mlsys"] == {
        "event": "deadline_missed",
        "dag_id": "score_leads",
        "run_id": "scheduled__2026-06-02T02:00:00+00:00",
        "deadline": "2026-06-02T03:00:00+00:00",
        "reason": "not finished by its deadline",
    }
    assert "score_leads run scheduled__2026-06-02T02:00:00+00:00 is not finished" in body["text"]


def test_the_reason_is_one_line() -> None:
    assert notify.first_line(RuntimeError("GX suite 'raw_leads': FAILED - 1 blocking\n  ERROR x")) == (
        "GX suite 'raw_leads': FAILED - 1 blocking"
    )
    assert notify.first_line(KeyError()) == "KeyError"
    assert notify.first_line(None) == "no error message"
    long = notify.first_line(ValueError("x" * 1000))
    assert len(long) == notify.REASON_MAX_CHARS and long.endswith("...")


def test_off_when_unset_and_refused_when_not_http(monkeypatch: pytest.MonkeyPatch) -> None:
    context = {"dag_run": {"dag_id": "retrain", "run_id": "r"}, "deadline": {}}
    with WebhookReceiver() as hook:
        monkeypatch.delenv("MLSYS_ALERT_WEBHOOK_URL", raising=False)
        notify.WebhookNotifier(notify.DEADLINE_MISSED)(context)
        assert hook.received() == []
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", hook.url)
        notify.WebhookNotifier(notify.DEADLINE_MISSED)(context)
        assert [p["mlsys"]["run_id"] for p in hook.received()] == ["r"]
    monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", "file:///etc/passwd")
    with pytest.raises(ValueError, match="must be an http"):
        notify.WebhookNotifier(notify.DEADLINE_MISSED)(context)
    with pytest.raises(ValueError, match="unknown notification event"):
        notify.WebhookNotifier("task_retried")
