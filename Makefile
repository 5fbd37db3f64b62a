# The one command surface for people and CI. `make run` and `make test` set everything up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
MEMBERS := shared/pyproject.toml services/api/pyproject.toml services/worker/pyproject.toml \
	services/cache-invalidator/pyproject.toml cli/pyproject.toml
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help run test setup services migrate venv lint typecheck test-unit test-integration \
	test-e2e test-chaos bench lock up down clean env-example tools

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

run: setup ## set up, then run the API and every service in the foreground (Ctrl-C stops)
	@deploy/local/run.sh

test: setup tools lint typecheck ## set up, then lint, type-check and run the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

tools: ## tools the tests and benchmarks use beyond Python (promtool, wrk)
	@deploy/local/ensure-tools.sh

setup: venv services migrate

LOCKS := requirements-runtime.lock requirements-build.lock requirements-dev.lock

$(VENV)/.herald-installed: $(LOCKS) $(MEMBERS) deploy/local/bootstrap-venv.sh
	@deploy/local/bootstrap-venv.sh

venv: $(VENV)/.herald-installed ## create .venv from the hash-checked locks (runtime + dev)

services: ## make sure PostgreSQL, Redis and RabbitMQ are running (install them if missing)
	@deploy/local/ensure-services.sh

migrate: venv ## apply the database migrations
	@$(BIN)/herald migrate

lint: venv ## ruff, formatting and the import contracts between packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv ## mypy --strict over every package
	$(BIN)/mypy shared/src services/api/src services/worker/src services/cache-invalidator/src cli/src scripts tests bench \
		deploy/healthcheck.py deploy/local/consumer_concurrency.py

test-unit: venv ## only the unit tests (no servers needed)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## only the integration tests
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: setup ## only the end-to-end tests (real service processes)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

test-chaos: setup tools ## the chaos scenarios as a longer soak (~15 min), figures into docs/reliability.md
	HERALD_CHAOS_SOAK=1 HERALD_CHAOS_REPORT=var/chaos/latest.json $(BIN)/pytest tests/chaos $(PYTEST_ARGS)
	$(BIN)/python -m tests.chaos.report var/chaos/latest.json docs/reliability.md

bench: setup tools ## benchmarks vs baselines and peer stacks (~25-30 min; BENCH_ARGS=--help)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The dev lock is compiled against the other two, so every package they share has one pin.
COMPILE = $(BIN)/uv pip compile --python-version 3.11 --generate-hashes --no-header --quiet
lock: venv ## re-pin requirements-{runtime,build,dev}.in into their .lock files (with hashes)
	$(COMPILE) requirements-runtime.in -o requirements-runtime.lock
	$(COMPILE) requirements-build.in -o requirements-build.lock
	$(COMPILE) requirements-dev.in -c requirements-runtime.lock -c requirements-build.lock \
		-o requirements-dev.lock

up: ## the whole system in Docker (needs a Docker engine)
	docker compose up --build

down:
	docker compose down

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

env-example: venv ## regenerate .env.example from the settings classes
	$(BIN)/python scripts/env_example.py > .env.example
