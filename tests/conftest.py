"""Shared test state: one MLSYS_HOME, one Airflow metadata DB and one generated CRM for the
whole session (Airflow start-up and data generation are the slow parts).

Airflow reads its configuration when first imported, so the environment is set here, at
import time of conftest, before any test module can import airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

SESSION_HOME = Path(tempfile.mkdtemp(prefix="mlsys-test-"))
for _name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLSYS_MLFLOW_ARTIFACTS", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_name, None)
os.environ["MLSYS_HOME"] = str(SESSION_HOME)
# Nobody listens on this port: metrics must be harmless (they are fire-and-forget UDP).
os.environ.setdefault("MLSYS_STATSD_PORT", "18125")
os.environ["MLSYS_SNAPSHOT_WEEKS"] = "8"

from mlsys.settings import Settings  # noqa: E402
from mlsys_local.airflow_env import airflow_environ  # noqa: E402

# Writes the session home's airflow.cfg (what Airflow reads) and points this process at it.
os.environ.update(airflow_environ(Settings.from_env()))
os.environ.pop("AIRFLOW_CONFIG", None)

AS_OF = date(2026, 6, 1)
TEST_LEADS = 3000


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def crm(settings: Settings) -> Path:
    """A small synthetic CRM in the raw landing contract, generated once."""
    from mlsys_local.generate import generate

    if not (settings.raw_dir / "leads").exists():
        generate(settings.data_dir, n_leads=TEST_LEADS, seed=7, end_date=AS_OF)
    return settings.data_dir


@pytest.fixture(scope="session")
def airflow_db(settings: Settings) -> dict[str, str]:
    """The session's Airflow metadata DB, migrated, with the warehouse pool."""
    from mlsys_local.airflow_env import init_airflow

    return init_airflow(settings)


@pytest.fixture(scope="session")
def published(crm: Path, airflow_db: dict[str, str], settings: Settings) -> Path:
    """A champion (forced retrain) and the partition of AS_OF, both through Airflow."""
    from mlsys_local.demo import run_dag

    run_dag("retrain", AS_OF, {"force": True})
    run_dag("score_leads", AS_OF)
    return settings.partition_dir(AS_OF)


@pytest.fixture
def night_restored(published: Path, settings: Settings, tmp_path: Path) -> Iterator[Path]:
    """For a test that re-publishes the session's night: the DAG's partition is copied aside
    and published back afterwards (the same way), so tests that read its run id or rows do
    not depend on the order tests run in."""
    from mlsys import score

    original = settings.staging_dir / f"restore-{tmp_path.name}"
    shutil.copytree(published, original)
    try:
        yield published
    finally:
        score.publish(AS_OF, original, settings)


@pytest.fixture
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: Path) -> Iterator[Settings]:
    """A home of its own with a copy of the session's raw data, for tests that break things."""
    home = tmp_path / "home"
    shutil.copytree(crm / "raw", home / "data" / "raw")
    monkeypatch.setenv("MLSYS_HOME", str(home))
    for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    import mlflow

    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield Settings.from_env()
    # MLflow keeps its URIs in process globals: a test that trained in this home must not
    # leave later tests reading this home's store.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("MLSYS_KEEP_TEST_HOME") != "1":
        shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def score_openapi() -> dict[str, Any]:
    """The OpenAPI document `GET /mlsys/openapi.json` serves, built in this process from the
    plugin's own app (what the generators of the fuzz tests start from)."""
    from plugins.mlsys_scoring import build_apps

    app, _ = build_apps()
    return dict(app.openapi())
