"""The ledger's HTTP API: the Chalice app, its middleware and its blueprints. Wiring only.

Routes live in blueprints under ``chalicelib/api/``; errors become HTTP answers in
``chalicelib/api/errors.py``. Nothing here imports boto3 or stripe: cold start matters.
"""

from __future__ import annotations

from collections.abc import Callable

from chalice.app import Request, Response

from chalicelib.api import middleware
from chalicelib.api.accounts import accounts
from chalicelib.api.admin import admin
from chalicelib.api.application import LedgerChalice
from chalicelib.api.audit import audit
from chalicelib.api.auth import auth
from chalicelib.api.console import console
from chalicelib.api.crypto import crypto
from chalicelib.api.deposits import deposits
from chalicelib.api.facility import facility
from chalicelib.api.facility_webhooks import facility_webhooks
from chalicelib.api.fx import fx
from chalicelib.api.health import health
from chalicelib.api.jobs import jobs
from chalicelib.api.monitors import monitors
from chalicelib.api.payment_requests import payment_requests
from chalicelib.api.payroll import payroll
from chalicelib.api.reconciliations import reconciliations
from chalicelib.api.restore_drill_job import restore_drill_jobs
from chalicelib.api.risk import risk
from chalicelib.api.transfers import transfers
from chalicelib.api.withdrawals import withdrawals
from chalicelib.config import read_settings

# A setting that cannot be right fails the cold start, with the variable's name, instead of each
# request that needs it. Not cached: the local server applies the stage's variables later.
read_settings()

# Powertools' Logger owns the log output (structured JSON); Chalice must not add its own handler.
app = LedgerChalice(app_name="ledger", configure_logs=False)
app.register_blueprint(health)
app.register_blueprint(auth)
app.register_blueprint(accounts)
app.register_blueprint(transfers)
app.register_blueprint(withdrawals)
app.register_blueprint(fx)
app.register_blueprint(crypto)
app.register_blueprint(deposits)
app.register_blueprint(jobs)
app.register_blueprint(restore_drill_jobs)
app.register_blueprint(admin)
app.register_blueprint(audit)
app.register_blueprint(reconciliations)
app.register_blueprint(facility)
app.register_blueprint(payment_requests)
app.register_blueprint(monitors)
app.register_blueprint(risk)
app.register_blueprint(console)
app.register_blueprint(facility_webhooks)
app.register_blueprint(payroll)


@app.middleware("http")
def http_boundary(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Request id, error envelope, security headers and request log for every HTTP request."""
    return middleware.handle(event, get_response)
