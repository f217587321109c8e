"""Synchronous on-demand scoring on the Airflow api-server: `POST /mlsys/score`,
`GET /mlsys/model`, `GET /mlsys/openapi.json`, and the readiness probe `GET /mlsys-health/ready`.

The `/mlsys` routes need an Airflow login with a permission (a JWT from `POST /auth/token` as
`Authorization: Bearer`, or the UI's session cookie): Airflow does not protect plugin apps by
itself, so the app carries `mlsys.access.requires_on_demand_access()`, a permission check, on
every route, the OpenAPI schema included (FastAPI's own docs routes are off: they would skip
it). The probe is public on purpose, like Airflow's `/api/v2/monitor/health`: it answers only
whether the warm-up has finished and a champion is loaded, so a container healthcheck needs
no secret.

The scorer is the one the `score_on_demand` DAG uses (`mlsys.on_demand.scorer.Scorer`), kept hot in
the api-server process. It is loaded at start-up: Airflow 3.3's api-server enters the
lifespan of every mounted FastAPI app, and this app's lifespan starts the warm-up
(`mlsys.on_demand.serving.WarmUp`: champion, compiled feature SQL, published features) on a
thread, so the server answers at once and the first request is as fast as the next.

Every Airflow process imports plugin modules, task processes included, so this module
imports nothing heavy: the apps are built when the plugin manager reads `fastapi_apps`,
which only the api-server (and `airflow plugins`) does.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures, and
# `Request`, imported inside build_apps, must be a class there, not an unresolvable string.
import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/mlsys"
HEALTH_PREFIX = "/mlsys-health"
# A body larger than MLSYS_ON_DEMAND_MAX_BODY_BYTES is refused (413) without being kept in
# memory: it is read and dropped up to DRAIN_FACTOR times the limit so the client gets the
# answer instead of a broken pipe, and beyond that the connection is simply not read further.
DRAIN_FACTOR = 16


async def read_body(request: Any, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` (declared or streamed)."""
    drain = DRAIN_FACTOR * limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > drain:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > drain:
            return None
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


@functools.cache
def build_apps() -> tuple[Any, Any]:
    """(the scoring app, the readiness app), once per process."""
    import contextlib

    from fastapi import Depends, FastAPI, Request
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from mlsys.access import requires_on_demand_access
    from mlsys.on_demand import schema as on_demand_schema
    from mlsys.on_demand import serving as on_demand_serving
    from mlsys.on_demand.scorer import Scorer
    from mlsys.settings import Settings

    # The api-server process owns one scorer for its lifetime (built here, at the edge).
    settings = Settings.from_env()
    scorer = Scorer(settings)
    max_body = settings.on_demand_max_body_bytes
    warm_up = on_demand_serving.WarmUp(scorer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        warm_up.start()  # on a thread: the api-server starts answering meanwhile
        yield
        scorer.stop_refresher()

    app = FastAPI(
        title="mlsys on-demand scoring",
        description="Scores leads with the champion model, synchronously (docs/on-demand.md).",
        version="1",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(requires_on_demand_access())],
    )

    def answer(status_and_body: tuple[int, bytes], rid: str) -> Response:
        status, body = status_and_body
        return Response(
            body, status_code=status, media_type="application/json", headers={"X-Request-ID": rid}
        )

    errors = {
        status: {"model": on_demand_schema.ErrorBody, "description": text}
        for status, text in on_demand_schema.ERROR_STATUSES.items()
    }
    errors[401] = {"description": "No or an invalid token (Airflow's answer: {detail})."}
    errors[403] = {
        "description": "A login without the permission (mlsys.access; Airflow's answer: {detail})."
    }

    @app.post(
        "/score",
        response_model=on_demand_schema.ScoreResponse,
        responses=errors,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
            }
        },
    )
    async def score(request: Request) -> Any:
        """Score up to MLSYS_ON_DEMAND_MAX_LEADS leads: lead ids and/or full lead payloads.
        Results in request order; every refusal is an ErrorBody naming each problem's path."""
        rid = on_demand_serving.request_id(request.headers)
        warm_up.start()  # no-op once the lifespan started it
        body = await read_body(request, max_body)
        # Parsing and scoring are CPU work (JSON, numpy, DuckDB): off the event loop.
        return answer(
            await run_in_threadpool(on_demand_serving.answer_score, scorer, body, rid, max_body), rid
        )

    @app.get(
        "/model",
        response_model=on_demand_schema.ModelInfo,
        responses={status: errors[status] for status in (401, 403, 500, 503)},
    )
    async def model(request: Request) -> Any:
        """The champion this api-server scores with, its features, band cut-offs and readiness."""
        rid = on_demand_serving.request_id(request.headers)
        return answer(await run_in_threadpool(on_demand_serving.answer_model, scorer, warm_up, rid), rid)

    def openapi_document(server: str = URL_PREFIX) -> dict[str, Any]:
        """This app's OpenAPI schema, with the request model's real constraints."""
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            servers=[{"url": server}],
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(on_demand_schema.openapi_components(scorer.settings.on_demand_max_leads))
        return schema

    app.openapi = openapi_document  # what app.openapi() returns, in tests too

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Any:
        # Behind the login like every route here; `servers` is where this app is mounted.
        return JSONResponse(openapi_document(request.scope.get("root_path") or URL_PREFIX))

    health = FastAPI(
        title="mlsys readiness", openapi_url=None, docs_url=None, redoc_url=None
    )  # public: a probe, see the module doc

    @health.get("/ready")
    async def ready() -> Any:
        status, body = warm_up.public_readiness()
        return JSONResponse(body, status_code=status)

    return app, health


class MlsysScoringPlugin(AirflowPlugin):
    name = "mlsys_scoring"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:
        # A property, not a list built at import: only a process that asks (the api-server)
        # builds the apps. Airflow mounts them in this order.
        app, health = build_apps()
        return [
            {"app": app, "url_prefix": URL_PREFIX, "name": "mlsys on-demand scoring"},
            {"app": health, "url_prefix": HEALTH_PREFIX, "name": "mlsys readiness"},
        ]
