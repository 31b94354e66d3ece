# askdoc: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install redis browser promtool demo test test-unit test-component test-integration test-e2e test-browser screenshots test-contract test-faults lint format bench asyncapi monitoring clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "askdoc needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) redis ## venv with askdoc and its dev tools, and a redis-server

redis: ## make sure a redis-server binary exists (Debian's package)
	@bash scripts/ensure-redis.sh

browser: ## Debian's chromium and axe-core (npm) for the browser tests (make test needs them)
	@bash scripts/ensure-browser.sh

demo: install ## Redis, the five services and the seed scenario end to end
	$(PY) -m demo

promtool: ## promtool (Debian's prometheus package) for the alert rules' tests
	@bash scripts/ensure-apt.sh promtool prometheus

# The suite mostly waits (on services starting, consumers catching up, timeouts): two
# workers run its modules side by side, each module whole on one worker (its services
# start once), in the order collected, the long fault tests first. The slowest 25 are
# listed at the end. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
test: install browser promtool ## the whole suite: unit, contract, integration, e2e, browser, faults, deploy
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=25

test-unit: install
	$(PY) -m pytest -q tests/unit tests/contract

test-component: install ## each service in process (create_app + ASGI) on a real redis-server
	$(PY) -m pytest -q tests/component

test-integration: install
	$(PY) -m pytest -q tests/integration

test-e2e: install
	$(PY) -m pytest -q tests/e2e

test-browser: install browser ## the web in Chromium: five services on a real Redis
	$(PY) -m pytest -q tests/browser

screenshots: install browser ## refresh the README's screenshots (docs/img) from the browser tests
	ASKDOC_SCREENSHOTS_DIR=$(CURDIR)/docs/img $(PY) -m pytest -q tests/browser -k "seed_page_renders_as_the_seed or shows_it_live or hides_and_restores_a_flagged_answer"

test-faults: install
	$(PY) -m pytest -q tests/faults

# The fakes must keep the service layers' store ports: mypy checks them where they are used.
FAKES_AND_THEIR_TESTS = tests/unit/fakes.py tests/unit/moderation_fakes.py tests/unit/test_moderation_service.py $(addprefix tests/unit/test_,$(addsuffix _service.py,questions answers votes)) tests/unit/notify_fakes.py $(addprefix tests/unit/test_notify_,alerts.py ring_search.py services.py)
LUA_FILES = $(shell find . -name '*.lua' -not -path './.venv/*' -not -path './build/*' -not -path '*/node_modules/*')

lint: install ## ruff (lint + format check), mypy strict, luacheck over every .lua file
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --follow-imports=silent $(FAKES_AND_THEIR_TESTS)
	@bash scripts/ensure-apt.sh luacheck lua-check
	luacheck --config .luacheckrc $(LUA_FILES)

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

asyncapi: install ## regenerate docs/asyncapi.json from the code
	$(PY) -m shared.asyncapi docs/asyncapi.json

monitoring: install ## regenerate the PrometheusRule and the Grafana dashboard from their sources
	$(PY) scripts/monitoring.py

bench: install ## benchmarks with same-run baselines -> bench/results/latest.json
	@bash scripts/ensure-redis.sh --with-wrk
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/browser/node_modules
