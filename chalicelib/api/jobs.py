"""Scheduled functions (EventBridge rules in a deployed stage; the local stack runs them by
command, see docs/local-stack.md). Thin: each calls one service function.

- ``retry_payouts`` (every 5 minutes): hands the crypto gateway every payout request still
  ``requested`` because the gateway failed at approval (``chalicelib/services/payouts.py``).
- ``finish_refunds`` (every 15 minutes): finishes card refunds left pending, because Stripe was
  unreachable or its event never came (``chalicelib/services/refunds.py``).
- ``deliver_mail`` (every minute): sends the mails requests asked for (verification, password
  reset) outside those requests (``chalicelib/services/mail_outbox.py``).
"""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.api.dependencies import (
    get_auth_service,
    get_bound_settings,
    get_crypto_gateway,
    get_ledger_service,
    get_payment_gateway,
)
from chalicelib.api.log import logger

jobs = Blueprint(__name__)


@jobs.schedule(Rate(5, unit=Rate.MINUTES), name="retry_payouts")
def retry_payouts(event: Any) -> dict[str, Any]:
    from chalicelib.services import payouts

    get_bound_settings()
    report = payouts.retry_requested(get_crypto_gateway())
    logger.info("scheduled payout retry", outcomes=report.outcomes)
    return {"outcomes": report.outcomes, "sent": report.sent}


@jobs.schedule(Rate(15, unit=Rate.MINUTES), name="finish_refunds")
def finish_refunds(event: Any) -> dict[str, Any]:
    from chalicelib.services import refunds

    get_bound_settings()
    outcomes = refunds.finish_pending(get_ledger_service(), get_payment_gateway())
    logger.info("scheduled refund finishing", outcomes=outcomes)
    return {"outcomes": outcomes}


@jobs.schedule(Rate(1, unit=Rate.MINUTES), name="deliver_mail")
def deliver_mail(event: Any) -> dict[str, Any]:
    return {"outcomes": dict(deliver_waiting_mail())}


def deliver_waiting_mail():  # type: ignore[no-untyped-def]
    """One run of the mail outbox (also what the local stack runs every second)."""
    from chalicelib.services import mail_outbox

    get_bound_settings()
    auth = get_auth_service()
    outcomes = mail_outbox.deliver_pending(
        auth.outbox, auth.deliver, log=logger.warning, clock=auth.clock
    )
    if outcomes:
        logger.info("mail outbox", outcomes=dict(outcomes))
    return outcomes
