#!/bin/bash
# PostgreSQL of the compose stack: runs once, on an empty data directory, from the official
# image's /docker-entrypoint-initdb.d. One role per application, each owning its databases:
#   airflow  -> airflow      (Airflow metadata, Celery result backend)
#   mlflow   -> mlflow       (MLflow tracking store and model registry)
#               mlflow_auth  (MLflow basic-auth users and permissions)
# Passwords come from the environment (compose passes them from .env) as psql variables, so
# any character is quoted correctly. tests/stack/test_postgres_celery.py runs this same script
# against a throwaway cluster (PGHOST/PGPORT set, POSTGRES_USER the superuser).
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set airflow_password="$AIRFLOW_DB_PASSWORD" --set mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
-- Each application reaches only its own databases.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow_auth FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE airflow TO airflow;
GRANT CONNECT, TEMPORARY ON DATABASE mlflow, mlflow_auth TO mlflow;
SQL
