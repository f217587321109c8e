#!/bin/sh
# Entry point of the mlsys image (docker/Dockerfile). Two sub-commands do the set-up the
# compose stack needs, from environment variables only (docker-compose.yaml passes them from
# .env); anything else runs as given (`airflow scheduler`, `mlsys score --as-of ...`).
#
#   init            Airflow metadata DB migration, the 1-slot `warehouse` pool, the API user's
#                   password file (simple auth manager), the data folders. Idempotent: the
#                   compose stack runs it on every `up`, before any other Airflow component.
#   mlflow-server   The MLflow tracking server: PostgreSQL store, artifacts served from a
#                   volume, basic-auth with its users in a database of their own. Extra
#                   arguments go to `mlflow server`. MLFLOW_APP_NAME unset means basic-auth;
#                   only an explicitly empty MLFLOW_APP_NAME (tests) runs it without auth.
#
# tests/test_postgres_celery.py runs both against a real PostgreSQL; tests/test_stack_static.py
# checks the compose file uses them as written here.
set -eu

die() {
    echo "mlsys-entrypoint: $*" >&2
    exit 1
}

# Refuse unset variables and .env.example's placeholders: a stack never starts on them.
require() {
    for name in "$@"; do
        eval "value=\${$name-}"
        case "$value" in
            "") die "$name is not set (copy .env.example to .env and fill it in)" ;;
            *CHANGE_ME*) die "$name still holds the .env.example placeholder" ;;
        esac
    done
}

init() {
    require AIRFLOW__DATABASE__SQL_ALCHEMY_CONN AIRFLOW__CORE__FERNET_KEY AIRFLOW__API_AUTH__JWT_SECRET \
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE AIRFLOW_ADMIN_USER AIRFLOW_ADMIN_PASSWORD MLSYS_HOME
    mkdir -p "$MLSYS_HOME/data/raw" "${AIRFLOW_HOME:-$MLSYS_HOME/airflow}"
    echo "mlsys-entrypoint: airflow db migrate"
    airflow db migrate
    airflow pools set warehouse 1 "Single writer of the DuckDB warehouse file"
    # The simple auth manager reads {"user": "password"} from this file (mode 0600); the users
    # and their roles are AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS.
    python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
tmp = f"{path}.tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    json.dump({os.environ["AIRFLOW_ADMIN_USER"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, handle)
os.replace(tmp, path)
PY
    echo "mlsys-entrypoint: init done"
}

mlflow_server() {
    require MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION MLFLOW_ALLOWED_HOSTS
    app=${MLFLOW_APP_NAME-basic-auth}
    if [ -n "$app" ]; then
        require MLFLOW_AUTH_DATABASE_URI MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD \
            MLFLOW_FLASK_SERVER_SECRET_KEY
        # The auth config is an ini file; write it (with the DB password) where only this
        # user can read it. configparser treats % as interpolation: double it.
        umask 077
        config="${TMPDIR:-/tmp}/mlflow-basic-auth.ini"
        auth_db=$(printf '%s' "$MLFLOW_AUTH_DATABASE_URI" | sed 's/%/%%/g')
        cat >"$config" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = $auth_db
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
        export MLFLOW_AUTH_CONFIG_PATH="$config"
        set -- --app-name "$app" "$@"
    fi
    exec mlflow server \
        --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
        --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
        --serve-artifacts \
        --host "${MLFLOW_HOST:-0.0.0.0}" \
        --port "${MLFLOW_PORT:-5000}" \
        --workers "${MLFLOW_WORKERS:-2}" \
        --allowed-hosts "$MLFLOW_ALLOWED_HOSTS" \
        "$@"
}

case "${1:-}" in
    init)
        init
        ;;
    mlflow-server)
        shift
        mlflow_server "$@"
        ;;
    "")
        exec airflow version
        ;;
    *)
        exec "$@"
        ;;
esac
