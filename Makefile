# Two commands matter: `make run` (the local stack) and `make test` (lint + the whole suite).
# Both create or reuse .venv and install what the requirements files pin.

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean create-admin verify-existing-emails retry-payouts package deploy drill verify-audit seal-audit reconcile reconcile-full

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m infra.local.stack

# Hand the fake crypto gateway the payouts left `requested` on the running local stack (what a
# deployed stage's scheduled retry_payouts does every 5 minutes). Same environment as `make run`.
retry-payouts: $(STAMP)
	$(PY) -m infra.local.retry_payouts

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

test: lint
	$(PY) -m pytest -n auto --dist loadgroup

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

# Upload and deploy the stack ledger-$(STAGE). Needs the AWS CLI, credentials, an S3 bucket for
# the code (DEPLOY_BUCKET) and, the first time, the stage's secret. PARAMS: more
# Name=Value overrides (AlertEmail, MailFrom, PublicBaseUrl, SecretsName).
deploy: package
	@command -v aws >/dev/null 2>&1 || { echo "make deploy needs the AWS CLI (aws) on PATH, and credentials: it is not installed here. See docs/deploy.md." >&2; exit 2; }
	@test -n "$(DEPLOY_BUCKET)" || { echo "usage: make deploy STAGE=dev|prod DEPLOY_BUCKET=<s3 bucket> [PARAMS='AlertEmail=ops@example.com ...']" >&2; exit 2; }
	aws cloudformation package --region $(DEPLOY_REGION) --template-file build/$(STAGE)/sam.json \
		--s3-bucket $(DEPLOY_BUCKET) --s3-prefix ledger-$(STAGE) \
		--output-template-file build/$(STAGE)/packaged.yaml
	aws cloudformation deploy --region $(DEPLOY_REGION) --template-file build/$(STAGE)/packaged.yaml \
		--s3-bucket $(DEPLOY_BUCKET) --s3-prefix ledger-$(STAGE) \
		--stack-name ledger-$(STAGE) --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
		--no-fail-on-empty-changeset --parameter-overrides Stage=$(STAGE) $(PARAMS)
	aws cloudformation describe-stacks --region $(DEPLOY_REGION) --stack-name ledger-$(STAGE) \
		--query 'Stacks[0].Outputs' --output table

# The restore drill against the running local stack (`make run` in another terminal): back up,
# restore to a scratch table, verify, delete; prints PASSED or FAILED (exit 1).
drill: $(STAMP)
	$(PY) -m infra.drill
