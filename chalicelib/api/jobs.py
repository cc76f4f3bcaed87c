"""Scheduled functions (EventBridge rules in a deployed stage; the local stack runs them by
command, see docs/local-stack.md). Thin: each calls one service function.

- ``retry_payouts`` (every 5 minutes): hands the crypto gateway every payout request still
  ``requested`` because the gateway failed at approval (``chalicelib/services/payouts.py``).
- ``finish_refunds`` (every 15 minutes): finishes card refunds left pending, because Stripe was
  unreachable or its event never came (``chalicelib/services/refunds.py``).
"""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.api.dependencies import (
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
