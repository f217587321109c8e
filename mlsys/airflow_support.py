"""What DAG files share, kept out of them so they stay thin and parse fast.

Nothing here imports Airflow at module level.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

WAREHOUSE_POOL = "warehouse"
OWNER = "mlsys"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 1,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
}


class ConfError(ValueError):
    """A malformed `conf`/params value; the message says which key and what is expected."""


def as_of_from_context(context: dict[str, Any]) -> date:
    """The feature cut-off of a run: `params.as_of` when given, else the logical date (a
    scheduled or backfill run), else the moment the run was triggered (manual, no date)."""
    params = context.get("params") or {}
    override = params.get("as_of")
    if override:
        try:
            return date.fromisoformat(str(override))
        except ValueError as exc:
            raise ConfError(f"params.as_of must be a date YYYY-MM-DD, got {override!r}") from exc
    logical: datetime | None = context.get("logical_date")
    if logical is None:
        dag_run = context.get("dag_run")
        logical = getattr(dag_run, "run_after", None)
    if logical is None:
        raise ConfError("the run has neither params.as_of nor a logical date")
    return logical.date()


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
    raise ConfError(f"params.{key} must be true or false, got {value!r}")


def quiet_logs() -> None:
    """GX floods Airflow's task log at INFO; MLflow and alembic are chatty too."""
    for name in ("great_expectations", "mlflow", "alembic", "matplotlib", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
