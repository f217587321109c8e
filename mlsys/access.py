"""Who may call the mlsys HTTP endpoints on the Airflow api-server: a permission checked by
Airflow's auth manager, not only a login (docs/deployment.md, "Roles").

`/mlsys/score` scores leads now, as a run of the `score_on_demand` DAG would: it needs the
right to trigger that DAG (POST on its runs); `/mlsys/model` only describes the champion: it
needs the right to read that DAG's runs. With the FAB auth manager of the compose stack that
is Op or Admin for scoring, any role from Viewer up for the model. With the simple auth manager
of the laptop path the one user is admin and may do both.

No `from __future__ import annotations` here: FastAPI reads the dependency's signature, and
the classes imported inside the factory must be real objects there, not strings.
"""

from collections.abc import Callable
from typing import Any

ON_DEMAND_DAG_ID = "score_on_demand"

# Methods that only read; anything else changes something or runs work.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def requires_on_demand_access(dag_id: str = ON_DEMAND_DAG_ID) -> Callable[..., None]:
    """A FastAPI dependency for a whole plugin app: a reading request needs read access to
    `dag_id`'s runs, any other request the right to trigger it (Airflow's own check,
    `requires_access_dag`, so 401 without a valid login and 403 without the permission)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import Request

    read = requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id)
    trigger = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=dag_id)

    def on_demand_access(request: Request, user: GetUserDep) -> None:
        check: Any = read if request.method in READ_METHODS else trigger
        check(request, user)

    return on_demand_access
