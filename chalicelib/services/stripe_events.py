"""Stripe's webhook: verify one delivery, then hand its event to the lifecycle it is about.

The router imports the lifecycles (deposits, refunds, disputes); none of them imports another or
this module. Every event id is checked against the inbox first, so a redelivery is answered
``duplicate`` at once; each lifecycle records the event in the inbox in the same write as its
effect. Unknown event types are acknowledged and recorded in the inbox (``ignored``).
"""

from __future__ import annotations

from typing import Protocol

from chalicelib.adapters.stripe_gateway import PaymentGateway
from chalicelib.services import deposits as card_deposits
from chalicelib.services import disputes as card_disputes
from chalicelib.services import refunds as card_refunds
from chalicelib.services.inbox import DUPLICATE, Inbox
from chalicelib.services.ledger import LedgerService

PROVIDER = "stripe"  # the inbox's name for Stripe's events
IGNORED = "ignored"
SUCCEEDED_EVENT = "payment_intent.succeeded"
FAILED_EVENT = "payment_intent.payment_failed"
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
CHARGE_REFUNDED_EVENT = "charge.refunded"
DISPUTE_EVENTS = frozenset({card_disputes.CREATED_EVENT, card_disputes.CLOSED_EVENT})


class CardDeposits(
    card_deposits.DepositRepository,
    card_refunds.RefundedDeposits,
    card_disputes.DisputedDeposits,
    Protocol,
):
    """The deposits' repository as every card lifecycle sees it."""


def handle(
    ledger: LedgerService,
    gateway: PaymentGateway,
    payload: bytes,
    signature: str | None,
    *,
    deposits: CardDeposits,
    refunds: card_refunds.RefundRepository,
    disputes: card_disputes.DisputeRepository,
    inbox: Inbox,
) -> str:
    """Verify and apply one Stripe webhook delivery; returns the outcome.

    Raises:
        InvalidWebhook: the signature or the body is bad (nothing is read or written).
        Anything else: an unexpected failure; nothing was written, Stripe should retry.
    """
    event = gateway.verify_event(payload, signature)
    if inbox.seen(PROVIDER, event.id):
        return DUPLICATE
    if event.type == SUCCEEDED_EVENT and event.object_id:
        return card_deposits.on_succeeded(ledger, gateway, event, deposits=deposits, inbox=inbox)
    if event.type == FAILED_EVENT and event.object_id:
        return card_deposits.on_failed(gateway, event, deposits=deposits, inbox=inbox)
    if event.type in REFUND_EVENTS and event.object_id:
        return card_refunds.on_refund_event(
            ledger, gateway, event, refunds=refunds, deposits=deposits, inbox=inbox
        )
    if event.type == CHARGE_REFUNDED_EVENT:
        return card_refunds.on_charge_refunded(
            ledger, gateway, event, refunds=refunds, deposits=deposits, inbox=inbox
        )
    if event.type in DISPUTE_EVENTS:
        return card_disputes.handle(
            ledger, gateway, event, disputes=disputes, deposits=deposits, inbox=inbox
        )
    return inbox.record(PROVIDER, event, IGNORED, event.object_id)
