# Two commands matter: `make run` (the local stack) and `make test` (lint + the whole suite).
# Both create or reuse .venv and install what the requirements files pin.

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m infra.local.stack

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/ledger_round_trips.py
	$(PY) bench/cold_start.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
