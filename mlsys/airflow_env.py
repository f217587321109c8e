"""The embedded Airflow of the demo and the tests: SQLite metadata, LocalExecutor, this
repo's dags/ and plugins/, all state under $MLSYS_HOME/airflow.

Airflow reads its configuration when first imported, so `airflow_environ` is applied to
os.environ (or a subprocess's env) before anything imports airflow.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from mlsys.settings import REPO_ROOT, Settings


def _secret(path: Path, nbytes: int = 32) -> str:
    """A random secret generated on first use and kept out of git (under $MLSYS_HOME)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def airflow_environ(settings: Settings) -> dict[str, str]:
    home = settings.home / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / ".jwt_secret"),
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(home / ".fernet_key"),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": settings.statsd_host,
        "AIRFLOW__METRICS__STATSD_PORT": str(settings.statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLSYS_HOME": str(settings.home),
        "MLSYS_DATA_DIR": str(settings.data_dir),
        "MLSYS_WAREHOUSE": str(settings.warehouse),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    return env


def _fernet_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def init_airflow(settings: Settings) -> dict[str, str]:
    """Apply the environment, migrate the metadata DB and create the warehouse pool
    (idempotent). Returns the environment for subprocesses."""
    env = airflow_environ(settings)
    os.environ.update(env)
    full_env = {**os.environ, **env}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=full_env, check=True, capture_output=True)
    subprocess.run(
        [airflow, "pools", "set", "warehouse", "1", "Single writer of the DuckDB warehouse file"],
        env=full_env,
        check=True,
        capture_output=True,
    )
    return full_env
