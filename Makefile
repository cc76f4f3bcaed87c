# Two commands matter: `make run` (the local stack) and `make test` (lint + the whole suite).
# Both create or reuse .venv and install what the requirements files pin.

# One Python for everything: the Lambda runtime (infra/package.py, RUNTIME), `make run` and
# `make test`. Found on PATH, else in pyenv's versions; `make package` fails on any other.
PYTHON_VERSION := 3.12
PYTHON ?= $(firstword $(foreach p,python$(PYTHON_VERSION) $(wildcard $(HOME)/.pyenv/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION)) /usr/local/bin/python$(PYTHON_VERSION) /usr/bin/python$(PYTHON_VERSION),$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Rebuilds .venv when it was made by another Python.
MADE_BY := $(VENV)/.python$(PYTHON_VERSION)

.PHONY: run test lint bench clean browser-deps create-admin verify-existing-emails retry-payouts expire-payment-requests balance-monitors finish-payrolls package deploy drill verify-audit seal-audit reconcile reconcile-full

$(MADE_BY):
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed (the Lambda runtime) and was not found: install it (e.g. pyenv install $(PYTHON_VERSION)) or pass PYTHON=/path/to/python$(PYTHON_VERSION)" >&2; exit 2; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	touch $@

$(STAMP): $(MADE_BY) requirements.txt requirements-dev.txt constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m infra.local.stack

# Hand the fake crypto gateway the payouts left `requested` on the running local stack (what a
# deployed stage's scheduled retry_payouts does every 5 minutes). Same environment as `make run`.
retry-payouts: $(STAMP)
	$(PY) -m infra.local.retry_payouts

# Store `expired` on the open payment requests past their expiry on the running local stack (what
# a deployed stage's scheduled expire_payment_requests does every 15 minutes).
expire-payment-requests: $(STAMP)
	$(PY) -m infra.local.expire_payment_requests

# Check the balance monitors once on the running local stack (what a deployed stage's scheduled
# balance_monitors does every 5 minutes); alerts are printed. Same environment as `make run`.
balance-monitors: $(STAMP)
	$(PY) -m infra.local.balance_monitors

# Finish the payout batches left processing on the running local stack (what a deployed stage's
# scheduled finish_payrolls does every 5 minutes); OLDER_THAN=0 takes every one at once.
finish-payrolls: $(STAMP)
	$(PY) -m infra.local.finish_payrolls --older-than $(or $(OLDER_THAN),300)

# The audit digest chain (docs/audit.md): recompute it over FROM..TO (dates, default the 31 days
# up to yesterday) and name the first broken day; seal the past days not sealed yet (what the
# deployed stage's seal_audit_days does each night). TABLE_NAME set: that stage; unset: the
# running local stack.
verify-audit: $(STAMP)
	$(PY) -m infra.audit_chain verify $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

seal-audit: $(STAMP)
	$(PY) -m infra.audit_chain seal $(if $(THROUGH),--through $(THROUGH)) $(if $(START),--start $(START))

# The nightly reconciliation of DATE (default yesterday, UTC); the full read-only check of every
# account (TABLE: another table, e.g. a restored copy). See docs/reconciliation.md.
reconcile: $(STAMP)
	$(PY) -m infra.reconcile $(if $(DATE),--date $(DATE))

reconcile-full: $(STAMP)
	$(PY) -m infra.reconcile --full $(if $(TABLE),--table $(TABLE))

# An admin in a deployed stage: STAGE, TABLE_NAME, AWS_REGION and AWS credentials from the
# environment; the password is prompted for. See docs/local-stack.md ("Admins").
create-admin: $(STAMP)
	@test -n "$(EMAIL)" || { echo "usage: make create-admin EMAIL=ops@example.com" >&2; exit 2; }
	$(PY) -m infra.create_admin --email $(EMAIL)

verify-existing-emails: $(STAMP)
	@case "$(MODE)" in mail|mark) ;; *) echo "usage: make verify-existing-emails MODE=mail|mark" >&2; exit 2;; esac
	$(PY) -m infra.verify_existing_emails --$(MODE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

# checkov (the packaged template's static check, tests/unit/test_package.py) in a venv of its own:
# its pins (boto3, packaging) conflict with the app's.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov

$(CHECKOV): $(MADE_BY) infra/checkov-requirements.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r infra/checkov-requirements.txt
	touch $@

# The console's browser tests (tests/browser/, docs/console.md) drive Debian's Chromium through its
# chromedriver; nothing downloads a browser or a driver. Installed here when missing: with
# apt-get as root, else with `sudo -n` if allowed without a password; otherwise the step says
# what to install (or run pytest with -m 'not browser').
BROWSER_PACKAGES := chromium chromium-driver

browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then as_root=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root="sudo -n"; \
	else echo "browser tests need Debian's $(BROWSER_PACKAGES) (/usr/bin/chromium, /usr/bin/chromedriver): install them as root (apt-get install $(BROWSER_PACKAGES)), or run the tests without them: $(PY) -m pytest -m 'not browser'" >&2; exit 2; fi; \
	echo "installing $(BROWSER_PACKAGES) with apt-get"; \
	$$as_root apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive $$as_root apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES)

test: lint $(CHECKOV) browser-deps
	LEDGER_CHECKOV=$(CHECKOV) $(PY) -m pytest -n auto --dist loadgroup

bench: $(STAMP)
	$(PY) bench/ledger_round_trips.py
	$(PY) bench/cold_start.py
	$(PY) bench/api_round_trips.py
	$(PY) bench/moto_scale.py
	$(PY) bench/moto_server.py
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Deployment (docs/deploy.md). STAGE is dev or prod; packaging never calls AWS.
STAGE ?= dev
DEPLOY_REGION ?= $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),us-east-1)

# build/$(STAGE)/sam.json + deployment.zip: `chalice package --merge-template` with infra/.
package: $(STAMP)
	AWS_DEFAULT_REGION=$(DEPLOY_REGION) $(PY) -m infra.package --stage $(STAGE)

# Deploy the stack ledger-$(STAGE) (infra/deploy.py: preflight, S3, a change set that prod asks
# about, termination protection). Needs the AWS CLI and credentials, a bucket for the code
# (DEPLOY_BUCKET), the stage's secret, and its parameters: PARAMS_FILE (a JSON object) and/or
# PARAMS='Name=Value ...'. YES=1 executes prod's change set without asking. See docs/deploy.md.
DEPLOY_ARGS = --stage $(STAGE) --region $(DEPLOY_REGION) --bucket "$(DEPLOY_BUCKET)" \
	$(if $(PARAMS_FILE),--parameters-file $(PARAMS_FILE)) $(if $(YES),--yes) $(PARAMS)

deploy: $(STAMP)
	$(PY) -m infra.deploy --preflight $(DEPLOY_ARGS)
	$(MAKE) package STAGE=$(STAGE)
	$(PY) -m infra.deploy $(DEPLOY_ARGS)

# The restore drill against the running local stack (`make run` in another terminal): back up,
# restore to a scratch table, verify, delete; prints PASSED or FAILED (exit 1).
drill: $(STAMP)
	$(PY) -m infra.drill
