"""Scheduled functions (EventBridge rules in a deployed stage; the local stack runs them by
command, see docs/local-stack.md). Thin: each calls one service function.

- ``retry_payouts`` (every 5 minutes): hands the crypto gateway every payout request still
  ``requested`` because the gateway failed at approval (``chalicelib/services/payouts.py``).
- ``finish_refunds`` (every 15 minutes): finishes card refunds left pending, because Stripe was
  unreachable or its event never came (``chalicelib/services/refunds.py``).
- ``deliver_mail`` (every minute): sends the mails requests asked for (verification, password
  reset) outside those requests (``chalicelib/services/mail_outbox.py``).
- ``balance_monitors`` (every 5 minutes): checks each enabled balance monitor and pages the
  alert topic once per crossing and once per recovery (``chalicelib/services/monitors.py``).
- ``deliver_webhooks`` (every minute): fans facilities' webhook events out to their endpoints
  and attempts the deliveries that are due (``chalicelib/services/webhooks.py``); an event
  reaches its endpoint within about a minute of its money (the local stack: a second).
- ``expire_withdrawals`` (every hour): withdrawals left in ``pending_review`` for
  ``WITHDRAWAL_REVIEW_DAYS`` (7) expire and their holds are released
  (``chalicelib/services/withdrawals.py``).
- ``expire_payment_requests`` (every 15 minutes): open payment requests past their
  ``expires_at`` are stored ``expired`` and leave the expiry queue (every reader shows them
  expired already; ``chalicelib/services/payment_requests.py``).
- ``expire_reviews`` (every hour): risk reviews left ``open`` for ``RISK_REVIEW_HOURS`` (72)
  expire and their holds are voided (``chalicelib/services/risk.py``).
- ``sweep_holds`` (every hour): every hold written with a deadline is voided once it passed,
  through its owner (a review, a withdrawal) when it has one (``chalicelib/services/holds.py``).
- ``finish_payrolls`` (every 5 minutes): finishes facilities' payout batches left processing for
  5 minutes (their request crashed or timed out) without paying anyone twice
  (``chalicelib/services/payroll.py``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chalice import Blueprint, Rate

from chalicelib.adapters import alerts
from chalicelib.api.dependencies import (
    get_alerts,
    get_auth_service,
    get_bound_settings,
    get_crypto_gateway,
    get_deposit_repository,
    get_hold_expiries,
    get_inbox,
    get_ledger_service,
    get_monitor_repository,
    get_outbox,
    get_payment_gateway,
    get_payment_request_repository,
    get_payout_repository,
    get_payroll_repository,
    get_refund_repository,
    get_risk,
    get_webhook_events,
    get_webhooks,
    get_withdrawal_repository,
)
from chalicelib.api.log import logger

jobs = Blueprint(__name__)


@jobs.schedule(Rate(5, unit=Rate.MINUTES), name="retry_payouts")
def retry_payouts(event: Any) -> dict[str, Any]:
    report = run_payout_retry()
    return {"outcomes": report.outcomes, "sent": report.sent, "given_up": report.given_up}


def run_payout_retry():  # type: ignore[no-untyped-def]
    """One payout retry run; the payouts it gives up are logged as an error and published to
    the alert topic (``ALERT_TOPIC_ARN``), so operators hear of them."""
    from chalicelib.services import payouts, withdrawals

    settings = get_bound_settings()
    ledger = get_ledger_service()
    stored, requests = get_withdrawal_repository(), get_payout_repository()
    report = payouts.retry_requested(
        get_crypto_gateway(),
        requests,
        stored,
        max_attempts=settings.payout_max_attempts,
        give_up=lambda withdrawal_id, attempts: withdrawals.fail_undeliverable(
            ledger, stored, requests, withdrawal_id, attempts
        ),
    )
    logger.info("scheduled payout retry", outcomes=report.outcomes)
    if report.given_up:
        summary = {"given_up": report.given_up, "max_attempts": settings.payout_max_attempts}
        logger.error("payouts given up: withdrawals failed, holds released", **summary)
        alerts.publish(
            settings.alert_topic_arn,
            settings.region,
            f"Ledger: {len(report.given_up)} payout(s) given up",
            json.dumps(summary, sort_keys=True),
        )
    return report


@jobs.schedule(Rate(1, unit=Rate.HOURS), name="expire_withdrawals")
def expire_withdrawals(event: Any) -> dict[str, Any]:
    from chalicelib.services import withdrawals

    settings = get_bound_settings()
    expired = withdrawals.expire_stale(
        get_ledger_service(), get_withdrawal_repository(), settings.withdrawal_review_days
    )
    logger.info("scheduled withdrawal expiry", expired=len(expired))
    return {"expired": expired}


@jobs.schedule(Rate(15, unit=Rate.MINUTES), name="expire_payment_requests")
def expire_payment_requests(event: Any) -> dict[str, Any]:
    return {"expired": run_payment_request_expiry()}


def run_payment_request_expiry() -> list[str]:
    """One expiry run over the open payment requests; the ids it expired."""
    from chalicelib.services import payment_requests

    get_bound_settings()
    expired = payment_requests.expire_due(get_payment_request_repository())
    logger.info("scheduled payment request expiry", expired=len(expired))
    return expired


@jobs.schedule(Rate(1, unit=Rate.HOURS), name="expire_reviews")
def expire_reviews(event: Any) -> dict[str, Any]:
    return {"expired": run_review_expiry()}


def run_review_expiry() -> list[str]:
    """One run of the risk review expiry (also what ``infra.local.expire_reviews`` runs)."""
    from chalicelib.services import risk

    expired = risk.expire_stale(get_ledger_service(), get_risk())
    logger.info("scheduled risk review expiry", expired=len(expired))
    return expired


@jobs.schedule(Rate(1, unit=Rate.HOURS), name="sweep_holds")
def sweep_holds(event: Any) -> dict[str, Any]:
    report = run_hold_sweeper()
    return {"expired": report.expired, "already_ended": report.already_ended}


def run_hold_sweeper():  # type: ignore[no-untyped-def]
    """One sweep of the holds whose deadline passed (``services.holds.sweep``)."""
    from chalicelib.services import holds

    report = holds.sweep(
        get_ledger_service(),
        get_hold_expiries(),
        risk=get_risk(),
        withdrawals=get_withdrawal_repository(),
    )
    logger.info(
        "scheduled hold sweep", expired=len(report.expired), ended=len(report.already_ended)
    )
    return report


@jobs.schedule(Rate(15, unit=Rate.MINUTES), name="finish_refunds")
def finish_refunds(event: Any) -> dict[str, Any]:
    from chalicelib.services import refunds

    get_bound_settings()
    outcomes = refunds.finish_pending(
        get_ledger_service(),
        get_payment_gateway(),
        refunds=get_refund_repository(),
        deposits=get_deposit_repository(),
        inbox=get_inbox(),
    )
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
        get_outbox(), auth.deliver, log=logger.warning, clock=auth.clock
    )
    if outcomes:
        logger.info("mail outbox", outcomes=dict(outcomes))
    return outcomes


@jobs.schedule(Rate(5, unit=Rate.MINUTES), name="balance_monitors")
def balance_monitors(event: Any) -> dict[str, Any]:
    report = run_balance_monitors()
    return {
        "outcomes": dict(report.outcomes),
        "crossed": report.crossed,
        "recovered": report.recovered,
    }


def run_balance_monitors():  # type: ignore[no-untyped-def]
    """One check of the balance monitors (also ``python -m infra.local.balance_monitors``)."""
    from chalicelib.services import monitors

    settings = get_bound_settings()
    report = monitors.check_monitors(
        get_monitor_repository(),
        monitors.LedgerBalances(get_ledger_service()),
        get_alerts(settings),
        log=logger.warning,
    )
    logger.info("balance monitors checked", outcomes=dict(report.outcomes))
    return report


@jobs.schedule(Rate(1, unit=Rate.MINUTES), name="deliver_webhooks")
def deliver_webhooks(event: Any) -> dict[str, Any]:
    return {"outcomes": dict(run_webhook_delivery())}


def run_webhook_delivery():  # type: ignore[no-untyped-def]
    """One run of outbound webhooks: rounds of fan-out then due deliveries until nothing is
    left or the run's budget (45 s of the function's 90 s) is used (also what the local stack
    runs every second)."""
    outcomes = get_webhooks().run()
    if outcomes:
        logger.info("webhook delivery", outcomes=dict(outcomes))
    return outcomes


@jobs.schedule(Rate(5, unit=Rate.MINUTES), name="finish_payrolls")
def finish_payrolls(event: Any) -> dict[str, Any]:
    return {"outcomes": run_payroll_finisher()}


def run_payroll_finisher(now: datetime | None = None) -> dict[str, str]:
    """One run of the payroll finisher (``services.payroll.finish_stuck``); a batch it could not
    finish is logged as an error (the next run takes it again)."""
    from datetime import UTC

    from chalicelib.services import payroll

    get_bound_settings()
    payer = payroll.Payer(get_ledger_service(), get_payroll_repository(), get_webhook_events())
    outcomes = payroll.finish_stuck(payer, now=now or datetime.now(UTC))
    logger.info("scheduled payroll finishing", outcomes=outcomes)
    failed = {k: v for k, v in outcomes.items() if v.startswith("error:")}
    if failed:
        logger.error("payroll batches not finished; the next run retries them", failed=failed)
    return outcomes
