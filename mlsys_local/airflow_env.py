"""The embedded Airflow of the demo, `make airflow` and the tests: SQLite metadata,
LocalExecutor, this repo's dags/ and plugins/, all state under $MLSYS_HOME/airflow.

Its configuration lives where Airflow reads it: `$MLSYS_HOME/airflow/airflow.cfg`, written
(and brought up to date, keeping whatever else the file holds) by `write_airflow_cfg` at every
`make demo` and `make airflow`, mode 0600 because it carries the home's generated secrets. So
after `export AIRFLOW_HOME=$PWD/var/airflow` every `airflow` CLI command - `dags trigger`,
`backfill create`, `dags test`, `tasks test` - works on the same metadata, DAGs and settings
as `make airflow` (docs/operating.md). Its `[mlsys]` section records the MLSYS_* settings for
processes that do not inherit them (mlsys.settings).
"""

from __future__ import annotations

import configparser
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from mlsys.settings import AIRFLOW_CFG_SECTION, REPO_ROOT, Settings

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
UI_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# How long a write to the SQLite metadata DB waits for another process's lock; a client of
# the api-server waits longer than this, or it gives up on a request the server still serves.
SQLITE_BUSY_TIMEOUT_SECONDS = 60


def airflow_home(settings: Settings) -> Path:
    return settings.home / "airflow"


def airflow_cfg(settings: Settings) -> Path:
    return airflow_home(settings) / "airflow.cfg"


def metadata_db(settings: Settings) -> Path:
    return airflow_home(settings) / "airflow.db"


def airflow_config(
    settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> dict[str, dict[str, str]]:
    """What mlsys sets in airflow.cfg, by section, less the generated keys (which
    `write_airflow_cfg` keeps or makes). The one place the embedded Airflow is configured."""
    # Tasks run on this machine: a wildcard bind is still reached through the loopback.
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    return {
        "core": {
            "dags_folder": str(REPO_ROOT / "dags"),
            "plugins_folder": str(REPO_ROOT / "plugins"),
            "load_examples": "False",
            "executor": "LocalExecutor",
            "parallelism": "4",
            # The mlsys DAGs decide for themselves (is_paused_upon_creation, docs/operating.md);
            # anything else dropped into dags/ starts paused.
            "dags_are_paused_at_creation": "True",
            "execution_api_server_url": f"http://{reach}:{port}/execution/",
            "auth_manager": SIMPLE_AUTH_MANAGER,
            "simple_auth_manager_users": f"{UI_USER}:admin",
            "simple_auth_manager_all_admins": "False",
            "simple_auth_manager_passwords_file": str(passwords_file(settings)),
        },
        # A long busy timeout (sqlite3's default is 5 s): the scheduler, dag-processor,
        # api-server and an `airflow` CLI command share one SQLite file, and a write waits for
        # the others instead of failing with "database is locked" on a busy laptop.
        "database": {
            "sql_alchemy_conn": f"sqlite:///{metadata_db(settings)}?timeout={SQLITE_BUSY_TIMEOUT_SECONDS}"
        },
        "api": {"host": host, "port": str(port)},
        "metrics": {
            "statsd_on": "True",
            "statsd_host": settings.statsd_host,
            "statsd_port": str(settings.statsd_port),
            "statsd_prefix": "airflow",
        },
        AIRFLOW_CFG_SECTION: {name.lower(): value for name, value in settings.environ().items()},
    }


def _generated(value: str | None, legacy: Path, make: str, min_length: int = 1) -> str:
    """A secret of the home: the value of an older home's secret file (moved into the cfg),
    else the cfg's own value, else a new one."""
    if legacy.is_file():
        kept = legacy.read_text().strip()
        if len(kept) >= min_length:
            return kept
    if value and len(value) >= min_length:
        return value
    if make == "fernet":
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()
    return secrets.token_urlsafe(min_length)


def write_airflow_cfg(settings: Settings, *, host: str | None = None, port: int | None = None) -> Path:
    """Create or update `$MLSYS_HOME/airflow/airflow.cfg` (idempotent): the options of
    `airflow_config` are set, every other option the file holds (Airflow's own defaults, a
    user's additions) is kept, the `[mlsys]` section is replaced whole. Without host/port
    the file's `[api]` address is kept (`make demo` must not move a running `make airflow`)."""
    path = airflow_cfg(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Raw: Airflow's own defaults hold %%-escaped log formats that must be written back as read.
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        parser.read(path)
    host = host if host is not None else parser.get("api", "host", fallback=DEFAULT_HOST)
    if port is None:
        port = parser.getint("api", "port", fallback=DEFAULT_PORT)
    config = airflow_config(settings, host=host, port=port)
    # HS512 wants a 64-byte key; PyJWT warns on every request below that.
    legacy_jwt, legacy_fernet = path.parent / ".jwt_secret", path.parent / ".fernet_key"
    config["api_auth"] = {
        "jwt_secret": _generated(parser.get("api_auth", "jwt_secret", fallback=None), legacy_jwt, "jwt", 64)
    }
    config["core"]["fernet_key"] = _generated(
        parser.get("core", "fernet_key", fallback=None), legacy_fernet, "fernet"
    )
    parser.remove_section(AIRFLOW_CFG_SECTION)
    for section, options in config.items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in options.items():
            # Airflow interpolates values: a literal % is written %%.
            parser.set(section, key, value.replace("%", "%%"))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            "# Written by mlsys (mlsys_local/airflow_env.py) at every `make demo` / `make airflow`: the\n"
            "# options it sets are rewritten, any other option you add here is kept.\n"
        )
        parser.write(handle)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    # The secrets now live in the cfg only.
    for legacy in (legacy_jwt, legacy_fernet):
        legacy.unlink(missing_ok=True)
    return path


def airflow_environ(settings: Settings) -> dict[str, str]:
    """Write the home's airflow.cfg and return the environment that points a process at it:
    AIRFLOW_HOME and where the home's state is. The other MLSYS_* knobs come with the caller's
    environment (a process with MLSYS_HOME reads its settings from the environment only)."""
    write_airflow_cfg(settings)
    return {
        "AIRFLOW_HOME": str(airflow_home(settings)),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLSYS_HOME": str(settings.home),
        "MLSYS_DATA_DIR": str(settings.data_dir),
        "MLSYS_WAREHOUSE": str(settings.warehouse),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }


def process_environ(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) for an Airflow process of this home: the
    home's variables on top, and no AIRFLOW_CONFIG that would send it to another file."""
    env = {**(os.environ if base is None else base), **airflow_environ(settings)}
    env.pop("AIRFLOW_CONFIG", None)
    return env


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


def init_airflow(settings: Settings, *, host: str | None = None, port: int | None = None) -> dict[str, str]:
    """Write airflow.cfg, point this process at it, migrate the metadata DB and create the
    warehouse pool (idempotent). Returns the environment for subprocesses."""
    write_airflow_cfg(settings, host=host, port=port)
    full_env = process_environ(settings)
    os.environ.update(airflow_environ(settings))
    os.environ.pop("AIRFLOW_CONFIG", None)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=full_env, check=True, capture_output=True)  # noqa: S603 - our venv's airflow, fixed arguments
    subprocess.run(  # noqa: S603 - our venv's airflow, fixed arguments
        [airflow, "pools", "set", "warehouse", "1", "Single writer of the DuckDB warehouse file"],
        env=full_env,
        check=True,
        capture_output=True,
    )
    return full_env
