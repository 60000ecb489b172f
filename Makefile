# Panjereh — every command a developer or CI needs. Only python3 (3.11+) must be present:
# the first target that needs tools creates .tools/ (uv) and .venv/ (the locked workspace).

PYTHON ?= python3
# The interpreter .venv is built on: the bootstrap's version, preferring a build with libpython
# linked into the executable (about 15 % less CPU per request than an --enable-shared build;
# devstack/pick_python.py says why). Set it to choose another; `make clean install` after a change.
PYTHON_RUNTIME ?= $(shell $(PYTHON) devstack/pick_python.py $(PYTHON))
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
# trust the system's certificate store, as pip does here (TLS-inspecting proxies in CI)
export UV_NATIVE_TLS := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration test-e2e lint format bench lock clean contracts

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

# Bytecode is compiled once here: with PYTHONDONTWRITEBYTECODE=1 (CI, these machines) every
# process would otherwise compile FastAPI, SQLAlchemy, pydantic and the platform from source at
# each start. uv compiles the installed packages; the workspace's own packages are editable
# installs (their src/ folders), which it leaves alone, so compileall does those. A source
# edited later is compiled again in memory, as before, until the next install.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml */*/pyproject.toml)
	$(UV) sync --locked --compile-bytecode --python $(PYTHON_RUNTIME)
	$(PY) -m compileall -q -j 0 $(wildcard */src */*/src)
	@touch $@

install: $(VENV)/.synced ## create .venv with the whole workspace (locked)

run: install ## run the whole platform locally (embedded PostgreSQL + broker), Ctrl-C stops it
	$(PY) -m panjereh.devstack run

# Test files run in TEST_WORKERS pytest-xdist workers, a whole file to one worker (its module
# fixtures and stacks are set up once), each worker with its own embedded PostgreSQL, broker
# and ports. Most of the suite waits on servers, so two workers on two cores take about half
# the time of one. TEST_WORKERS=0 runs everything in this process, one test after another.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: install deploy-tools ## run the whole suite: unit, integration, e2e, deployment checks
	$(PYTEST)

test-unit: install deploy-tools ## unit tests only (no servers), deployment checks included
	$(PYTEST) -m "not integration and not e2e"

test-integration: install ## integration tests (embedded PostgreSQL and broker)
	$(PYTEST) -m integration

test-e2e: install ## end-to-end tests (the whole platform as processes)
	$(PYTEST) -m e2e

lint: install ## ruff (lint + format check) and mypy strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## run every benchmark in bench/, then one table: each figure, its same-run reference, the ratio
	$(PY) bench/run_all.py

contracts: install ## regenerate the event contracts' JSON-schema snapshot and AsyncAPI document
	$(PY) -m panjereh.contracts.snapshot --write
	$(PY) -m panjereh.contracts.asyncapi

lock: $(UV) ## refresh uv.lock after changing dependencies
	$(UV) lock --python $(PYTHON)

clean: ## remove local state and environments
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------- deployment checks
# checkov, hadolint and kubernetes-validate check deploy/; they live in their own environment
# (hash-pinned in deploy/tools/requirements.txt) so they never touch the platform's lock.
DEPLOY_TOOLS := $(TOOLS)/deploy
.PHONY: deploy-tools deploy-check deploy-tools-lock

$(DEPLOY_TOOLS)/.installed: $(UV) deploy/tools/requirements.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(DEPLOY_TOOLS)
	$(UV) pip install --quiet --python $(DEPLOY_TOOLS)/bin/python --require-hashes \
		-r deploy/tools/requirements.txt
	@touch $@

deploy-tools: $(DEPLOY_TOOLS)/.installed ## install the deployment checkers into .tools/deploy

deploy-check: install deploy-tools ## render the Kubernetes overlays and run every deployment check
	$(PY) -m pytest tests/deploy

deploy-tools-lock: $(UV) ## refresh deploy/tools/requirements.txt after editing requirements.in
	$(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		deploy/tools/requirements.in -o deploy/tools/requirements.txt
