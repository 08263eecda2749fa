# The two commands: `make run` and `make test`. Both set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck pytest test-long bench clean install install-dev security-lint chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(DEV_STAMP)

## chromium: Debian's headless browser for tests/browser (Playwright drives it; no download)
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

install: $(STAMP)
install-dev: $(DEV_STAMP)

## make run: migrate the embedded SQLite database, create demo data once, serve on :8000
run: $(STAMP)
	$(BIN)/aayu-accounts db upgrade
	$(BIN)/aayu-accounts demo init
	$(BIN)/aayu-accounts serve --host 127.0.0.1 --port 8000

## make test: lint, format check, strict type checks, then the whole suite (SQLite + PostgreSQL)
test: $(DEV_STAMP) chromium
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy
	$(MAKE) security-lint
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP) chromium
	$(BIN)/pytest

## make security-lint: bandit on src (skips justified in pyproject.toml) and pip-audit on the venv
security-lint: $(DEV_STAMP)
	$(BIN)/bandit -c pyproject.toml -r src -q
	$(BIN)/python -m tests.security.pip_audit_gate

## make test-long: the slow suites that do not fit CI's time budget (tests marked `long`)
test-long: $(DEV_STAMP)
	$(BIN)/pytest -m long

## make bench: benchmarks, each printing one table of ratios against an in-run baseline
bench: $(DEV_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
