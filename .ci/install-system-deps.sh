#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python: promtool (from `prometheus`) for the
# alert-rule unit tests, and `prometheus` with `prometheus-alertmanager` (amtool too) for the
# live alert-delivery test; docker-compose (the Python v1, only to run `config` on
# docker-compose.yaml: no Docker engine is installed); PostgreSQL and Redis for
# `make test-postgres` (tests/stack/test_postgres_celery.py starts throwaway servers of its own);
# chromium and chromedriver (`chromium-driver`) for the browser test of `make airflow`; curl and
# jq, which the on-demand REST sequence of docs/on-demand.md uses (tests/stack/test_ui.py runs it);
# a Java runtime (17, what PySpark 4 needs) for the Spark engine's tests (docs/spark.md);
# s3fs (a FUSE mount of an S3 bucket) for the pointer publish mode's object-store test.
# Idempotent: does nothing when everything is already on PATH.
# Runs as root on a fresh Debian machine (CI); elsewhere it uses sudo when available.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v s3fs >/dev/null 2>&1 || missing+=(s3fs)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-system-deps: need root (or sudo) to apt-get install ${missing[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get; install ${missing[*]} (promtool) by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# --no-install-recommends: promtool is all we need, not the node exporter and friends.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The package starts a Prometheus service where an init system runs; tests never need it.
# Same for Alertmanager, PostgreSQL and Redis (the tests start servers on free ports).
for service in prometheus prometheus-alertmanager postgresql redis-server; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
        "${SUDO[@]}" systemctl stop "$service" || true
    fi
done
command -v promtool >/dev/null
command -v amtool >/dev/null
command -v prometheus-alertmanager >/dev/null
command -v docker-compose >/dev/null
command -v redis-server >/dev/null
command -v chromium >/dev/null
command -v chromedriver >/dev/null
command -v curl >/dev/null
command -v jq >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
command -v java >/dev/null
command -v s3fs >/dev/null
