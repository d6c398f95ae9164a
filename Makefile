# dxapi — every entry point people and CI use. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DXAPI_TEST_BACKENDS ?= sqlite,postgresql,mysql
export DXAPI_TEST_BACKENDS
# pytest-xdist workers for `make test`: each worker builds its own throw-away databases and servers (tests/conftest.py);
# `--dist load` hands out tests in collection order, which keeps each worker on one backend at a time.
TEST_WORKERS ?= 2

.PHONY: help demo test test-faults lint format bench bench-scaling soak serve docs chromium pgbouncer clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## build the embedded SQLite shop and serve it on 127.0.0.1:8000
	$(BIN)/dxapi demo

chromium:  ## Debian's Chromium and ChromeDriver for the admin browser tests (installed when missing; needs root)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

pgbouncer:  ## Debian's PgBouncer for the pooler tests (installed when missing; needs root). Never started as a service.
	@test -x /usr/sbin/pgbouncer || (apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbouncer && \
		(systemctl disable --now pgbouncer 2>/dev/null; service pgbouncer stop 2>/dev/null; true))

test: $(STAMP) chromium  ## run the whole suite on $(DXAPI_TEST_BACKENDS)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist load

test-faults: $(STAMP) pgbouncer  ## fault tests (kill, hang, locks, slow clients, SIGTERM) on a PostgreSQL cluster of their own
	$(BIN)/pytest -q tests/reliability

lint: $(STAMP)  ## ruff (lint, complexity <= 12, format) and mypy
	$(BIN)/ruff check dxapi tests benchmarks
	$(BIN)/ruff format --check dxapi tests benchmarks
	$(BIN)/mypy dxapi

format: $(STAMP)  ## apply ruff's formatter
	$(BIN)/ruff format dxapi tests benchmarks

bench: $(STAMP)  ## PostgreSQL benchmark: dxapi against the thin reference server
	$(BIN)/python -m benchmarks.run

bench-scaling: $(STAMP)  ## PostgreSQL: how dxapi's cost grows (page size, batch size, include depth, table size, entities)
	$(BIN)/python -m benchmarks.scaling

soak: $(STAMP)  ## PostgreSQL soak: one dxapi worker at 100 req/s for 5 minutes (RSS growth, latency, no 5xx)
	$(BIN)/python -m benchmarks.soak

serve: $(STAMP)  ## serve DXAPI_DATABASE_URL on 127.0.0.1:8000
	$(BIN)/dxapi serve

docs: $(STAMP)  ## regenerate the tables of docs/errors.md and docs/settings.md from the code
	$(BIN)/python docs/regenerate.py

clean:  ## remove the virtualenv and generated files
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
