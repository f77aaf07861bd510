# Two commands: `make demo` (set up and run everything) and `make test` (set up and run the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/crm_marketing
# pytest-xdist workers; CI machines have 2 cores.
PYTEST_WORKERS ?= 2

.PHONY: demo test test-postgres test-sqlite setup migrate browsers clean

$(VENV)/.installed: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

migrate: setup
	$(PY) manage.py migrate --noinput

demo: setup migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py run_demo

test: setup test-postgres test-sqlite

test-postgres: setup
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS)

test-sqlite: setup
	DATABASE_URL=sqlite:///$(CURDIR)/test-db.sqlite3 $(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) db.sqlite3* test-db.sqlite3*
