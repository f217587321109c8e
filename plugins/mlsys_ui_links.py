"""The Airflow UI's way to what the pipeline writes beside it: dbt docs, GX Data Docs, MLflow.

Nav entries open the dbt docs and the GX Data Docs inside the UI (iframes over files this
plugin serves from `/mlsys-docs/`) and the MLflow UI (`make mlflow`) in a tab of its own.
The files are served only to a logged-in user: Airflow does not protect plugin apps by itself,
so every route carries `requires_authenticated()` (the UI's session cookie satisfies it).

Where the files come from: `make airflow` runs `dbt docs generate` into `$MLSYS_HOME/dbt/docs`
at each start; the GX checkpoints of every DAG run update
`$MLSYS_DATA_DIR/gx/data_docs/local_site`.

Every Airflow process imports plugin modules, so this one imports nothing heavy: the app is
built on the first request the api-server routes to it.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import os
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from mlsys.airflow_support import LazyApp

URL_PREFIX = "/mlsys-docs"


def build_app() -> Any:
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    from mlsys.settings import Settings

    settings = Settings.from_env()
    sites = {
        "dbt": (
            "dbt docs",
            settings.dbt_docs_dir,
            "`make airflow` generates them at start (`dbt docs generate`); this start skipped or failed it",
        ),
        "gx": (
            "GX Data Docs",
            settings.gx_data_docs_dir,
            "the Great Expectations gate writes them on the first DAG run (or `mlsys validate`)",
        ),
    }
    app = FastAPI(
        title="mlsys docs",
        description="dbt docs and GX Data Docs of this MLSYS_HOME",
        dependencies=[Depends(requires_authenticated())],
        # FastAPI's own schema and docs routes skip the app's dependencies: they would be public.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    def serve(site: str, path: str) -> Any:
        title, root, how = sites[site]
        root = root.resolve()
        target = (root / path).resolve()
        # resolve() folds `..` and symlinks: anything outside the site's folder is refused.
        if not target.is_relative_to(root):
            raise HTTPException(status_code=404)
        if target.is_dir():
            target = target / "index.html"
        if target.is_file():
            return FileResponse(target)
        if target == root / "index.html":
            return HTMLResponse(
                f"<h3>{title}: not there yet</h3><p>{how}.</p><p>Expected at <code>{target}</code>.</p>",
                status_code=404,
            )
        raise HTTPException(status_code=404)

    @app.get("/dbt/{path:path}")
    def dbt_docs(path: str) -> Any:
        return serve("dbt", path)

    @app.get("/gx/{path:path}")
    def gx_docs(path: str) -> Any:
        return serve("gx", path)

    return app


class MlsysUiLinksPlugin(AirflowPlugin):
    name = "mlsys_ui_links"
    fastapi_apps = [  # noqa: RUF012 - the attributes Airflow's plugin manager reads
        {"app": LazyApp(build_app), "url_prefix": URL_PREFIX, "name": "mlsys docs"},
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "dbt docs",
            "href": f"{URL_PREFIX}/dbt/index.html",
            "url_route": "dbt-docs",
            "destination": "nav",
            "category": "docs",
        },
        {
            "name": "GX Data Docs",
            "href": f"{URL_PREFIX}/gx/index.html",
            "url_route": "gx-data-docs",
            "destination": "nav",
            "category": "docs",
        },
        {
            # MLflow forbids framing; without url_route the UI opens it as a plain link.
            "name": "MLflow",
            "href": os.environ.get("MLSYS_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
            "destination": "nav",
            "category": "docs",
        },
    ]
