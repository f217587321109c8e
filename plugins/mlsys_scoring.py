"""Synchronous on-demand scoring on the Airflow api-server: `POST /mlsys/score`, `GET /mlsys/model`.

Both need Airflow authentication (a JWT from `POST /auth/token` as `Authorization: Bearer`, or
the UI's session cookie): Airflow does not protect plugin apps by itself, so the app carries
`mlsys.access.requires_on_demand_access()`, a permission check. The scorer is the one the
`score_on_demand` DAG uses (`mlsys.on_demand.Scorer`), kept hot in the api-server process:
champion, compiled feature SQL and published features stay in memory between requests.

Every Airflow process imports plugin modules, task processes included, so this module
imports nothing heavy: the FastAPI app is built on the first request the api-server routes
to it.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures, and
# `Request`, imported inside build_app, must be a class there, not an unresolvable string.
import os
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from mlsys.airflow_support import LazyApp

# 100 leads with their activities fit in well under 1 MiB; a bigger body is refused (413)
# without being kept in memory: it is read and dropped up to DRAIN_BYTES so the client gets the
# answer instead of a broken pipe, and beyond that the connection is simply not read further.
MAX_BODY_BYTES = int(os.environ.get("MLSYS_ON_DEMAND_MAX_BODY_BYTES", str(2 * 1024 * 1024)))
DRAIN_BYTES = 16 * MAX_BODY_BYTES


async def read_body(request: Any, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request body, or None when it is larger than `limit` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            return None
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


def build_app() -> Any:
    import gc
    import json
    import logging

    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from mlsys import on_demand
    from mlsys.access import requires_on_demand_access

    log = logging.getLogger("mlsys.plugin")
    scorer = on_demand.get_scorer()
    app = FastAPI(
        title="mlsys on-demand scoring",
        description="Scores leads with the champion model, synchronously (see mlsys/on_demand.py).",
        dependencies=[Depends(requires_on_demand_access())],
    )

    def error_response(exc: on_demand.ScoringError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.post("/score")
    async def score(request: Request) -> Any:
        """Body: `{"leads": [...], "as_of": optional}`; returns `{"results": [...]}`."""
        body = await read_body(request)
        if body is None:
            return error_response(
                on_demand.RequestError(
                    "request_too_large",
                    f"the body is larger than {MAX_BODY_BYTES:,} bytes",
                    {"max_bytes": MAX_BODY_BYTES},
                    status=413,
                )
            )
        try:
            conf = json.loads(body) if body else None
        except ValueError as exc:
            return error_response(on_demand.RequestError("invalid_json", f"the body is not JSON: {exc}"))
        try:
            # Scoring is CPU work in numpy/DuckDB: keep it off the event loop.
            results = await run_in_threadpool(scorer.score, conf)
        except on_demand.ScoringError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("on-demand scoring failed")
            return JSONResponse(
                {"error": "internal", "message": f"{type(exc).__name__}: {exc}", "details": {}},
                status_code=500,
            )
        # Serialized here: FastAPI's generic encoder walks every nested value (2 ms at 100 leads).
        return Response(json.dumps({"results": results}).encode(), media_type="application/json")

    @app.get("/model")
    async def model() -> Any:
        """The champion this api-server scores with, its features and band cut-offs."""
        try:
            return await run_in_threadpool(scorer.describe)
        except on_demand.ScoringError as exc:
            return error_response(exc)

    def warm_up() -> None:
        # Load the champion and compile the feature SQL now, not inside the first request's
        # latency; failures here are reported by the requests that need the missing part.
        on_demand.warm_up(scorer)
        # From now on the alias, the dbt project and the partitions are checked off the
        # request path; a promotion reaches this server within MLSYS_ON_DEMAND_REFRESH_SECONDS.
        scorer.start_refresher()
        # What is loaded by now (Airflow, the model, the compiled SQL) lives as long as the
        # server: out of the collector's generations, full collections inside a request no
        # longer walk it (a one-lead request's p99 roughly halves here).
        gc.freeze()

    threading.Thread(target=warm_up, name="mlsys-warm-up", daemon=True).start()
    return app


class MlsysScoringPlugin(AirflowPlugin):
    name = "mlsys_scoring"
    fastapi_apps = [  # noqa: RUF012 - the attribute Airflow's plugin manager reads
        {"app": LazyApp(build_app), "url_prefix": "/mlsys", "name": "mlsys on-demand scoring"},
    ]
