# Two entry points for a fresh machine: `make run` and `make test`.
# Everything else is bootstrapped from Python 3.11+, pip and npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

run: $(STAMP)
	$(BIN)/python -m ephysd.devrig

test: $(STAMP) node_modules/.installed lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) node_modules/.installed
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/protocol_rtt.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache
