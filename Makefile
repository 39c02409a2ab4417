# 《Django Celery 快速入门》 — `make` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Notebooks and tests call `python` and `celery`: the venv's, not the system's.
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install browser lab test notebooks pictures clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml django_demo/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed (found %s). Run: make PYTHON=python3.11 ..." % sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	@# compat mode puts django_demo/ itself on sys.path (a .pth file), so the settings
	@# package `django_demo` wins over the same-named folder in the repository root.
	$(BIN)/python -m pip install --quiet -e ./django_demo --config-settings editable_mode=compat
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned requirements (done by lab and test)

lab: install ## Start a broker (embedded Valkey unless REDIS_URL or 6379 has one) and JupyterLab
	$(BIN)/python -m launcher.lab

browser: install ## Make sure Playwright has a Chromium (the system's, else `playwright install chromium`)
	$(BIN)/python -m launcher.browser

test: install browser ## Run every test: unit, real processes, real browser, strict nbval of all notebooks
	$(BIN)/python -m pytest

notebooks: install ## Re-execute every notebook top to bottom and save its outputs (for committing)
	$(BIN)/python -m tests.execute_notebooks notebooks/*.ipynb

pictures: install browser ## Regenerate every picture from its source and real runs (needs Chromium, a CJK font)
	$(BIN)/python pictures/src/make_pictures.py

clean: ## Remove .venv and caches
	rm -rf $(VENV) .pytest_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
