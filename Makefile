# Two commands: `make demo` (set up and run everything) and `make test` (set up and run the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/crm_marketing
# pytest-xdist workers; CI machines have 2 cores.
PYTEST_WORKERS ?= 2

.PHONY: demo test test-postgres test-sqlite test-frontend setup hub migrate browsers clean

# The React hub (frontend/) built into static/hub/; rebuilt when the lock file or any source changes.
HUB_SOURCES := $(shell find frontend/src -type f 2>/dev/null) frontend/index.html frontend/vite.config.ts frontend/tsconfig.json
frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

static/hub/.vite/manifest.json: frontend/node_modules/.installed $(HUB_SOURCES)
	cd frontend && npm run build

hub: static/hub/.vite/manifest.json

$(VENV)/.installed: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

# Debian's Chromium for the browser tests (tests/e2e): Playwright cannot download its own builds
# here, so the tests launch /usr/bin/chromium. Installed once, as root or through sudo.
browsers:
	@if command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
		echo "Chromium is missing and installing it needs root: run 'apt-get install -y chromium' as root." >&2; exit 1; fi; \
	$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

migrate: setup
	$(PY) manage.py migrate --noinput

demo: setup hub migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py seed_automation_demo
	$(PY) manage.py run_demo

# Production (docs/production.md): settings from the environment or .env (DEBUG=false, DATABASE_URL,
# CACHE_URL, Q_BROKER_URL, ...): migrate, build the hub, collect static files, then gunicorn + N qcluster.
.PHONY: serve
serve: setup hub
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py run_production

test: setup hub browsers test-frontend test-postgres test-sqlite

test-frontend: frontend/node_modules/.installed
	cd frontend && npm test -- --run

test-postgres: setup hub browsers
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS)

test-sqlite: setup hub browsers
	DATABASE_URL=sqlite:///$(CURDIR)/test-db.sqlite3 $(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) db.sqlite3* test-db.sqlite3* frontend/node_modules static/hub
