"""The embedded Airflow of the demo and the tests: SQLite metadata, LocalExecutor, this
repo's dags/ and plugins/, all state under $MLSYS_HOME/airflow.

Airflow reads its configuration when first imported, so `airflow_environ` is applied to
os.environ (or a subprocess's env) before anything imports airflow.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from mlsys.settings import REPO_ROOT, Settings


def _secret(path: Path, nbytes: int = 32) -> str:
    """A random secret generated on first use and kept out of git (under $MLSYS_HOME).

    A secret shorter than `nbytes` characters (written by an older version) is replaced:
    only running Airflow processes share it, so a new one costs nothing but a restart."""
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= nbytes:
            return value
        path.unlink()
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
        # HS512 wants a 64-byte key; PyJWT warns on every request below that.
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / ".jwt_secret", 64),
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(home / ".fernet_key"),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": settings.statsd_host,
        "AIRFLOW__METRICS__STATSD_PORT": str(settings.statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLSYS_HOME": str(settings.home),
        "MLSYS_DATA_DIR": str(settings.data_dir),
        "MLSYS_WAREHOUSE": str(settings.warehouse),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    return env


UI_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def passwords_file(settings: Settings) -> Path:
    return settings.home / "airflow" / "simple_auth_manager_passwords.json"


def ui_login(settings: Settings) -> tuple[str, str]:
    """The UI's user and its password, generated on first start into the simple auth manager's
    passwords file (mode 0600, under $MLSYS_HOME, never in git) and kept across restarts."""
    path = passwords_file(settings)
    try:
        passwords = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        passwords = {}
    if not isinstance(passwords, dict):
        passwords = {}
    password = passwords.get(UI_USER)
    if isinstance(password, str) and password:
        return UI_USER, password
    passwords[UI_USER] = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle)
    os.replace(tmp, path)
    return UI_USER, passwords[UI_USER]


def server_environ(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080) -> dict[str, str]:
    """`airflow_environ` plus what long-running components need: the api-server's address
    (tasks reach the execution API there) and authentication with the simple auth manager."""
    env = airflow_environ(settings)
    # Tasks run on this machine: a wildcard bind is still reached through the loopback.
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    env.update(
        {
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{reach}:{port}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{UI_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        }
    )
    return env


def dbt_docs_dir(settings: Settings) -> Path:
    """Where the local Airflow writes `dbt docs generate`: beside dbt's target/, not in it, so
    the pipeline's manifest (the feature catalogue's source) is never rewritten by the docs."""
    return settings.home / "dbt" / "docs"


def gx_data_docs_dir(settings: Settings) -> Path:
    """The Data Docs site the GX checkpoints update (see the context config in mlsys.validation)."""
    from mlsys.validation.engine import DATA_DOCS_SITE

    return settings.gx_runtime_dir / "data_docs" / DATA_DOCS_SITE


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
    subprocess.run([airflow, "db", "migrate"], env=full_env, check=True, capture_output=True)  # noqa: S603 - our venv's airflow, fixed arguments
    subprocess.run(  # noqa: S603 - our venv's airflow, fixed arguments
        [airflow, "pools", "set", "warehouse", "1", "Single writer of the DuckDB warehouse file"],
        env=full_env,
        check=True,
        capture_output=True,
    )
    return full_env
