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

.PHONY: help demo test lint format typecheck clean distclean

help:
	@echo "make demo   - synthetic CRM -> features -> gate -> train -> score, through Airflow"
	@echo "make test   - the whole test suite with coverage (installs what it needs)"
	@echo "make lint   - ruff (lint + format check), mypy, sqlfluff on the dbt SQL"
	@echo "make clean  - remove var/ (demo state); distclean also removes .venv and .tools"

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python 3.11
	@touch $@

demo: $(VENV)/.synced
	$(PY) -m mlsys.demo

test: $(VENV)/.synced
	$(VENV)/bin/pytest

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check mlsys dags plugins tests benchmarks
	$(VENV)/bin/ruff format --check mlsys dags plugins tests benchmarks
	$(VENV)/bin/mypy mlsys
	mkdir -p $(MLSYS_HOME) && cd sql && MLSYS_WAREHOUSE=$(MLSYS_HOME)/lint.duckdb ../$(VENV)/bin/sqlfluff lint models tests

format: $(VENV)/.synced
	$(VENV)/bin/ruff check --fix mlsys dags plugins tests benchmarks
	$(VENV)/bin/ruff format mlsys dags plugins tests benchmarks

clean:
	rm -rf var

distclean: clean
	rm -rf $(VENV) .tools
