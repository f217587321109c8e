#!/bin/sh
# Entry point of the mlsys image (docker/Dockerfile). Two sub-commands do the set-up the
# compose stack needs, from environment variables only (docker-compose.yaml passes them from
# .env); anything else runs as given (`airflow scheduler`, `mlsys score --as-of ...`).
#
#   init            Airflow metadata DB migration (with the FAB auth manager's users and roles
#                   tables), the 1-slot `warehouse` pool, the first admin user
#                   (AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD, created once, then left to
#                   the UI), the data folders. Idempotent: the compose stack runs it on every
#                   `up`, before any other Airflow component.
#   mlflow-server   The MLflow tracking server: PostgreSQL store, artifacts served from a
#                   volume, basic-auth with its users in a database of their own: the admin,
#                   and the service account Airflow's tasks log in with (MLFLOW_SERVICE_USERNAME
#                   / MLFLOW_SERVICE_PASSWORD: EDIT on every experiment and registered model,
#                   its password set from the environment on every start); everyone else
#                   gets READ by default. Extra arguments go to `mlflow server`.
#                   MLFLOW_APP_NAME unset means basic-auth; only an explicitly empty
#                   MLFLOW_APP_NAME (tests) runs it without auth.
#
# tests/stack/test_postgres_celery.py runs both against a real PostgreSQL; tests/stack/test_stack_static.py
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
        AIRFLOW__CORE__AUTH_MANAGER AIRFLOW_ADMIN_USER AIRFLOW_ADMIN_PASSWORD MLSYS_HOME
    case "$AIRFLOW__CORE__AUTH_MANAGER" in
        *.FabAuthManager) ;;
        *) die "AIRFLOW__CORE__AUTH_MANAGER must be the FAB auth manager (users and roles in the metadata DB)" ;;
    esac
    mkdir -p "$MLSYS_HOME/data/raw" "${AIRFLOW_HOME:-$MLSYS_HOME/airflow}"
    echo "mlsys-entrypoint: airflow db migrate"
    airflow db migrate
    airflow pools set warehouse 1 "Single writer of the DuckDB warehouse file"
    # The first admin, from the environment (not on a command line). Created once: later
    # changes to the user (password, roles) are made in the UI or with `airflow users`.
    python - <<'PY'
import os

from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

username = os.environ["AIRFLOW_ADMIN_USER"]
with get_application_builder() as appbuilder:
    security = appbuilder.sm
    if security.find_user(username=username) is not None:
        print(f"mlsys-entrypoint: Airflow user {username!r} exists; its password and roles are left as they are")
    elif not security.add_user(
        username, "Airflow", "Admin", f"{username}@localhost", security.find_role("Admin"),
        os.environ["AIRFLOW_ADMIN_PASSWORD"],
    ):
        raise SystemExit(f"mlsys-entrypoint: could not create the Airflow admin {username!r}")
    else:
        print(f"mlsys-entrypoint: created the Airflow admin {username!r} (role Admin)")
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
        if [ -n "${MLFLOW_SERVICE_USERNAME-}" ]; then
            require MLFLOW_SERVICE_PASSWORD
            service_account
        fi
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

# MLflow's auth store as the server sets it up (migrations, the admin), then the service
# account: created or given the environment's password, EDIT on every experiment and registered
# model (training logs runs, registers versions, moves the champion alias), never admin.
service_account() {
    python - <<'PY'
import os

from mlflow.server.auth import bootstrap_admin_user, store

username, password = os.environ["MLFLOW_SERVICE_USERNAME"], os.environ["MLFLOW_SERVICE_PASSWORD"]
if username == os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME"):
    raise SystemExit("mlsys-entrypoint: MLFLOW_SERVICE_USERNAME must differ from the MLflow admin")
bootstrap_admin_user()
if store.has_user(username):
    store.update_user(username, password=password, is_admin=False)
else:
    store.create_user(username, password)
for resource_type in ("experiment", "registered_model"):
    store.grant_user_permission(username, resource_type, "*", "EDIT")
print(f"mlsys-entrypoint: MLflow service account {username!r}: EDIT on every experiment and registered model")
PY
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
