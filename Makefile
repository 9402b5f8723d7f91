# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INFRA_VENV := .venv-infra

.PHONY: install demo test check lint bench chaos clean

install: $(VENV)/.installed node_modules/.installed $(INFRA_VENV)/.installed

# The app's packages, the tools, and the `userexport` command-line client (pyproject.toml).
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Azurite, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Bicep parser and scanner for the infra checks, apart: checkov pins many packages.
$(INFRA_VENV)/.installed: requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $@

demo: $(VENV)/.installed node_modules/.installed
	$(PY) -m devtools.demo

# Debian's Chromium for the results page's browser tests (tests/ui): Playwright drives it and
# never downloads a browser of its own. Installed once; sudo only when not root.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The stack tests mostly wait (on simulated throttling, outages, timers): several run at once,
# each test file on one worker, as its module-scoped stacks and its order expect.
TEST_WORKERS ?= 4
PARALLEL := -n $(TEST_WORKERS) --dist loadfile

test: install $(CHROMIUM)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PARALLEL)

# The fast lane, for every change: lint, unit, tenantsim, infra and in-process Graph tests; no
# local stack, no browser (tests/conftest.py marks the lanes). `make test` runs every lane.
check: $(VENV)/.installed $(INFRA_VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PARALLEL) -m "not stack and not browser and not chaos"

bench: $(VENV)/.installed node_modules/.installed
	$(PY) -m bench

# 30 exports under injected faults, compared byte for byte with a clean one (bench/README.md).
chaos: $(VENV)/.installed node_modules/.installed
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules out .pytest_cache .ruff_cache
