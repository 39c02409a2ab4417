# 《Django Celery 快速入门》 — `make` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
# Notebooks and tests call `python` and `celery`: the venv's, not the system's.
export PATH := $(BIN):$(PATH)

# What the course needs to run (make lab), and what the tests need on top (make test).
COURSE_STAMP := $(VENV)/.installed-course
TEST_STAMP   := $(VENV)/.installed-test
# `make test-notebook NB=03`: the chapter whose notebook to run.
NB ?= 01
# `make test PYTEST_ARGS="-k flower"`: extra pytest arguments.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-test browser postgres lab test test-notebook timings lint notebooks pictures compose-secrets clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(COURSE_STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed (found %s). Run: make PYTHON=python3.11 ..." % sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	@# The Django project: a .pth file puts django_demo/ itself on sys.path, so its settings
	@# package `django_demo` and its apps import from anywhere, as if next to manage.py
	@# (the regular package django_demo/django_demo wins over the same-named folder).
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "django_demo.pth").write_text("$(CURDIR)/django_demo\n")'
	@touch $(COURSE_STAMP)

$(TEST_STAMP): $(COURSE_STAMP) requirements-test.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	@touch $(TEST_STAMP)

install: $(COURSE_STAMP) ## Create .venv with what the course needs to run (done by lab)

install-test: $(TEST_STAMP) ## Add what the tests, pictures and lint need (done by test)

lab: install ## Start a broker (embedded Valkey unless REDIS_URL or 6379 has one) and JupyterLab
	@# PostgreSQL for chapter 12's scenario 10 only: without one (offline), the other chapters still run.
	$(BIN)/python -m launcher.postgres --optional
	$(BIN)/python -m launcher.lab

browser: install-test ## Make sure Playwright has a Chromium (the system's, else `playwright install chromium`)
	$(BIN)/python -m launcher.browser

postgres: install ## Make sure there is a PostgreSQL for chapter 12 (the system's, else a download into .venv/postgresql)
	$(BIN)/python -m launcher.postgres

test: install-test browser postgres ## Run every test in parallel: unit, real processes, real browser, strict nbval of all notebooks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-notebook: install-test postgres ## Run one chapter's notebook strictly, e.g. `make test-notebook NB=03`
	$(BIN)/python -m pytest -n 0 notebooks/$(NB)_*.ipynb $(PYTEST_ARGS)

timings: install-test ## Print the measured timings: each chapter's Run All under make lab, the suite's budget per chapter
	$(BIN)/python -m tests.timings

lint: install-test ## Lint the code and the notebooks (ruff, configured in pyproject.toml)
	$(BIN)/ruff check .

notebooks: install-test postgres ## Re-execute every notebook top to bottom and save its outputs (for committing)
	$(BIN)/python -m tests.execute_notebooks notebooks/*.ipynb

pictures: install-test browser ## Regenerate every picture from its source and real runs (needs Chromium, a CJK font)
	$(BIN)/python pictures/src/make_pictures.py

compose-secrets: ## Make the Docker stack's passwords in .secrets/compose/ (once; never overwrites)
	$(PYTHON) -m compose.secrets

clean: ## Remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
