"""What DAG files and plugins share, kept out of them so they stay thin and parse fast.

Of Airflow, only the task SDK is imported at module level (for the notifier of
`PIPELINE_ARGS`; every DAG file imports it anyway); nothing heavy is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

from mlsys import notify
from mlsys.settings import Settings


def cron_schedule(expression: str) -> Any:
    """The DAGs' schedule: `expression` in UTC, whose first scheduled run is the next tick.

    A plain cron string gives a CronTriggerTimetable with ``run_immediately=False``, which
    Airflow 3.3 treats like None: a DAG activated within a tenth of the interval after a tick
    (2.4 h for a nightly schedule) runs that past tick at once. A zero timedelta means "only a
    tick that is now", so activating a DAG never runs a past night (docs/operating.md)."""
    from airflow.sdk import CronTriggerTimetable

    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=timedelta(0))


WAREHOUSE_POOL = "warehouse"
OWNER = "mlsys"

# The assets the DAGs update, by URI (the DAG files build `Asset(uri)`): what consumers
# schedule on. The `extra` of each event is built by the functions below (docs/operating.md).
SCORED_LEADS_URI = "mlsys://scored_leads"
LEAD_FEATURES_URI = "mlsys://features/lead_features"
TRAINING_SNAPSHOTS_URI = "mlsys://features/training_snapshots"
MODEL_URI = "mlsys://models/lead_scoring"
# Updated only by a retrain that moved the champion alias.
CHAMPION_URI = "mlsys://models/lead_scoring/champion"

# Airflow 3.3 reads retry_exponential_backoff as a multiplier: True is 1.0, a constant delay.
# 2.0 doubles the delay at each retry (Airflow adds up to as much again as deterministic jitter).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 1,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}

# Every task of the scheduled pipelines (score_leads, retrain): one that failed for good (no
# try left) posts a notification naming the DAG, task, run and the first line of the error
# (mlsys/notify.py; off without MLSYS_ALERT_WEBHOOK_URL). Airflow calls on_failure_callback only
# then; a try that will be retried does not notify, nor does a task that never ran (upstream
# failed). score_on_demand keeps DEFAULT_ARGS: a bad request fails its task by design and its
# caller gets the error.
PIPELINE_ARGS: dict[str, Any] = {
    **DEFAULT_ARGS,
    "on_failure_callback": [notify.WebhookNotifier(notify.TASK_FAILED)],
}


def nightly_deadline() -> Any:
    """The Deadline Alert of `score_leads`: a run not finished MLSYS_NIGHTLY_DEADLINE_MINUTES
    (60) after it was queued posts a notification while it still runs (the 02:00 run: by
    about 03:00, before the `NightlyPartitionLate` alert and the run's 2 h timeout). Counted
    from when the run was queued, not from its logical date, so a backfill of an old date is
    not late at once. The scheduler finds missed deadlines; the executor runs the callback.

    0 means no deadline, and so does no MLSYS_ALERT_WEBHOOK_URL (the laptop's default): its
    callback only posts there, and Airflow 3.3's `dag.test()` - `airflow dags test
    score_leads`, `make demo` - cannot finish a successful run of a DAG that has one
    (`mlsys_local.demo.run_dag` drops it for its own runs)."""
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    settings = Settings.from_env()
    minutes = settings.nightly_deadline_minutes
    if minutes < 0:
        raise ValueError(f"MLSYS_NIGHTLY_DEADLINE_MINUTES must be positive (0: none), got {minutes}")
    if minutes == 0 or not settings.alert_webhook_url:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=SyncCallback(notify.WebhookNotifier, kwargs={"event": notify.DEADLINE_MISSED}),
        name="nightly scoring not finished",
    )


# Tasks that need the MLflow registry (scoring's plan and shards): more tries, so an MLflow
# restart or a network blip is ridden out: waits of about 1-2, 2-4, 4-8 min between the 4
# tries, each try also retrying its HTTP requests (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7,
# about 4 min). Only the last try may score with the cached champion (docs/reliability.md).
REGISTRY_RETRY_ARGS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}


class ConfError(ValueError):
    """A malformed `conf`/params value; the message says which key and what is expected."""


@contextmanager
def fail_now() -> Iterator[None]:
    """Errors a retry cannot mend fail the task at once, their message the whole story: bad
    conf, data the gate refused, no champion to score with. Any other error keeps the task's
    retries (an unreachable registry, a killed worker)."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlsys.registry import NoChampionError
    from mlsys.validation import DataValidationError

    try:
        yield
    except (ConfError, DataValidationError, NoChampionError) as exc:
        # The readable summary is the task's final message; a chained traceback would only
        # print it again.
        raise AirflowFailException(str(exc)) from None


def as_of_from_context(context: dict[str, Any], settings: Settings) -> date:
    """The feature cut-off of a run: `params.as_of` when given, else the logical date (a
    scheduled or backfill run), else - a manual run without a date - the day it was triggered,
    or the landing's ``complete_as_of`` when that is earlier (`Settings.default_as_of`)."""
    from mlsys import input_rules

    params = context.get("params") or {}
    override = params.get("as_of")
    if override is not None:
        try:
            # The rule every door applies to a date (the Param's `format: date` checks it first).
            return input_rules.iso_date(override)
        except ValueError as exc:
            raise ConfError(f"params.as_of {exc}") from None
    logical: datetime | None = context.get("logical_date")
    if logical is not None:
        return logical.date()
    run_after: datetime | None = getattr(context.get("dag_run"), "run_after", None)
    if run_after is None:
        raise ConfError("the run has neither params.as_of nor a logical date")
    return settings.default_as_of(run_after.date())


def not_landed(as_of: date, settings: Settings) -> str | None:
    """Why a DAG run of `as_of` has nothing to do, or None: its date is after the landing
    manifest's ``complete_as_of`` (Settings.landing_manifest). The DAGs skip such a run: on a
    frozen export (the demo's) the nightly tick of a laptop left running, and the latest night
    that Airflow runs after a backfill (catchup=False), would otherwise score or train on weeks
    that never landed. Without a manifest every date counts as landed."""
    complete = settings.landing_complete_as_of()
    if complete is None or as_of <= complete:
        return None
    return (
        f"nothing landed for {as_of}: {settings.landing_manifest} says the export is complete as of "
        f"{complete} (give params.as_of, or land newer data)"
    )


def is_last_try(context: dict[str, Any]) -> bool:
    """True on a task's last try: no retry is left after this one (always true for a task
    without retries, and outside Airflow's task runner)."""
    ti = context.get("ti")
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int):
        return True
    return try_number > max_tries


def check_conf_keys(context: dict[str, Any], allowed: set[str]) -> None:
    """Refuse a run whose conf has keys the DAG does not know: a typo (`as-of`) would otherwise
    be ignored silently and the run would use its default."""
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None)
    if conf is None:
        return
    if not isinstance(conf, dict):
        raise ConfError(f"conf must be a JSON object, got {type(conf).__name__}")
    unknown = sorted(str(k) for k in conf if k not in allowed)
    if unknown:
        shown = ", ".join(repr(k[:60]) for k in unknown[:5])
        raise ConfError(f"unknown conf key(s) {shown}; this DAG takes {', '.join(sorted(allowed)) or 'none'}")


def scored_leads_event(published: dict[str, Any]) -> dict[str, Any]:
    """The `extra` of a scored_leads event, from `pipeline.publish_scores`' result: which night,
    which model, how many rows - what a consumer keys on without reading the table."""
    return {
        "score_date": published["as_of"],
        "model_name": published["model_name"],
        "model_version": str(published["model_version"]),
        "rows": int(published["rows"]),
        "partition": published["partition_relative"],
    }


def model_event(trained: dict[str, Any]) -> dict[str, Any]:
    """The `extra` of a model event (every registered challenger), from
    `pipeline.train_challenger`' result."""
    return {
        "model_name": trained["model_name"],
        "version": str(trained["version"]),
        "promoted": bool(trained["promoted"]),
        "champion_version": trained["champion_version"],
        "as_of": trained["as_of"],
    }


def score_dates_of_events(events: Any) -> list[date]:
    """The distinct score dates of triggering scored_leads events, oldest first (several
    publishes can land in one consumer run). An event without one is refused by name."""
    dates = set()
    for event in events:
        extra = getattr(event, "extra", None) or {}
        raw = extra.get("score_date")
        try:
            dates.add(date.fromisoformat(str(raw)))
        except ValueError:
            raise ConfError(
                f"a scored_leads event from {getattr(event, 'source_dag_id', '?')} has no score_date "
                f"in its extra ({str(extra)[:120]})"
            ) from None
    return sorted(dates)


def run_id_from_context(context: dict[str, Any]) -> str:
    dag_run = context.get("dag_run")
    return str(getattr(dag_run, "run_id", None) or context.get("run_id") or "unknown")


def is_scheduled(context: dict[str, Any]) -> bool:
    dag_run = context.get("dag_run")
    return str(getattr(dag_run, "run_type", "")).lower().endswith("scheduled")


def bool_param(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if isinstance(value, bool):
        return value
    raise ConfError(f"params.{key} must be true or false, got {str(value)[:60]!r}")


def quiet_logs() -> None:
    """GX floods Airflow's task log at INFO; MLflow and alembic are chatty too."""
    for name in ("great_expectations", "mlflow", "alembic", "matplotlib", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


class LazyApp:
    """An ASGI app that builds the real one (``build()``) on its first request.

    Every Airflow process imports plugin modules, task processes included; a plugin's FastAPI
    app (and what it imports: FastAPI, the scorer, the settings) is only needed by the
    api-server, and only once a request reaches it."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._build()
        await self._app(scope, receive, send)
