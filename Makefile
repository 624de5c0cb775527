# One entry point for every task: `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help serve test lint typecheck unit tools manifests bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[demo,explain]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed ## Register the demo model if the registry is empty, serve on 127.0.0.1:8000
	$(BIN)/driftgate serve --demo

test: lint typecheck unit ## Install dev dependencies, then run every check and test

lint: $(VENV)/.dev-installed ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed ## mypy, strict on the packages
	$(BIN)/mypy

unit: $(VENV)/.dev-installed tools ## pytest: unit, contract and end-to-end tests
	$(BIN)/pytest $(PYTEST_ARGS)

# promtool and prometheus (alert rule tests, a real scrape), redis-server, and chromium with
# its driver (the console's browser tests, tests/browser/), from Debian.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
tools: ## Install the Debian tools the tests run (prometheus, redis, chromium) when missing
	@command -v promtool >/dev/null && command -v prometheus >/dev/null \
		&& command -v redis-server >/dev/null && command -v chromium >/dev/null \
		&& command -v chromedriver >/dev/null || { $(SUDO) apt-get update -q \
		&& $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends prometheus redis-server chromium chromium-driver \
		&& { $(SUDO) systemctl disable --now prometheus 2>/dev/null || true; }; }

manifests: $(VENV)/.dev-installed ## Write deploy/'s PrometheusRule and dashboard from monitor/
	$(BIN)/python -m deploy

bench: $(VENV)/.dev-installed ## Benchmarks against the limit and a peer (installs wrk if missing)
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; }
	$(BIN)/python -m benchmarks http  # installs MLServer and KServe (peers) under ~/.cache once
	$(BIN)/python -m benchmarks grpc  # installs MLServer (the peer) under ~/.cache once
	$(BIN)/python -m benchmarks drift
	$(BIN)/python -m benchmarks drift-quality

clean: ## Remove the virtual environment and caches (keeps .driftgate)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
