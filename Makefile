# Two entry points for a fresh machine: `make run` and `make test`.
# Everything else is bootstrapped from Python 3.11+, pip and npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean system-tools browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

# systemd-analyze (unit checks) and strace (system-call filter check) let the
# service tests run instead of skipping. Best effort: only as root with apt,
# and a failure just leaves those tests to skip with their message.
system-tools:
	@if command -v systemd-analyze >/dev/null && command -v strace >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing systemd and strace for the service tests"; \
		(timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 \
			apt-get install -y -qq --no-install-recommends systemd strace >/dev/null) \
		|| echo "could not install systemd/strace: those service tests will skip"; \
	else echo "systemd-analyze/strace missing: those service tests will skip"; fi

# Headless Chromium and its WebDriver (Debian's packages, never a browser
# download) let the rig page's browser test run instead of skipping; Selenium
# itself comes from PyPI with the test extras. Best effort, like system-tools.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the rig page's browser test"; \
		(timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) \
		|| echo "could not install chromium: the rig page's browser test will skip"; \
	else echo "chromium/chromedriver missing: the rig page's browser test will skip"; fi

# `make run RUN_ARGS=--scientifica` (or --fake) picks another simulated rig.
run: $(STAMP)
	$(BIN)/python -m ephysd.devrig $(RUN_ARGS)

test: $(STAMP) node_modules/.installed system-tools browser lint typecheck pytest

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
