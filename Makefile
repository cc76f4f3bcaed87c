# Two commands matter: `make run` (the local stack) and `make test` (lint + the whole suite).
# Both create or reuse .venv and install what the requirements files pin.

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean create-admin

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m infra.local.stack

# An admin in a deployed stage: STAGE, TABLE_NAME, AWS_REGION and AWS credentials from the
# environment; the password is prompted for. See docs/local-stack.md ("Admins").
create-admin: $(STAMP)
	@test -n "$(EMAIL)" || { echo "usage: make create-admin EMAIL=ops@example.com" >&2; exit 2; }
	$(PY) -m infra.create_admin --email $(EMAIL)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/ledger_round_trips.py
	$(PY) bench/cold_start.py
	$(PY) bench/api_round_trips.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
