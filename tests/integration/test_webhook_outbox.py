"""The webhook outbox: an event is written with its money, exactly once, and never alone."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.models import OutboundEventItem
from chalicelib.adapters.dynamo.webhook_repository import DynamoWebhookEvents, event_of
from chalicelib.domain.errors import InsufficientFunds
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.domain.webhooks import WebhookEvent, WebhookEventType, event_id
from chalicelib.services.ledger import PostingRequest
from tests.support import LedgerWorld


def _events() -> list[WebhookEvent]:
    return [
        event_of(item)
        for item in OutboundEventItem.scan(OutboundEventItem.item_type == "outbound_event")
    ]


def _pay(world: LedgerWorld, source: str, target: str, amount: int, key: str):
    txn_id = derive_transaction_id("test-payment", key)
    event = WebhookEvent.about(
        WebhookEventType.PAYMENT_RECEIVED,
        txn_id,
        "fac_1",
        "2026-12-02T06:00:00Z",
        {"amount": "1.00"},
    )
    return world.ledger.record(
        transaction_id=txn_id,
        type=TransactionType.TRANSFER,
        postings=[PostingRequest(source, "USD", -amount), PostingRequest(target, "USD", amount)],
        extra=[DynamoWebhookEvents.event(event)],
    )


def test_the_event_is_written_with_the_money_once_across_retries(world: LedgerWorld):
    payer, facility = world.open_user_account(), world.open_user_account()
    world.fund(payer, 10_00)

    first = _pay(world, payer, facility, 1_00, key="k1")
    again = _pay(world, payer, facility, 1_00, key="k1")

    assert (first.created, again.created) == (True, False)
    events = _events()
    assert [e.id for e in events] == [
        event_id(WebhookEventType.PAYMENT_RECEIVED, first.transaction.id)
    ]
    assert events[0].data == {"amount": "1.00"}
    assert events[0].type is WebhookEventType.PAYMENT_RECEIVED


def test_no_money_no_event(world: LedgerWorld):
    payer, facility = world.open_user_account(), world.open_user_account()

    with pytest.raises(InsufficientFunds):
        _pay(world, payer, facility, 1_00, key="k2")

    assert _events() == []
