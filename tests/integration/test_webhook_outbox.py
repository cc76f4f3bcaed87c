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


def test_two_fan_out_runs_racing_for_one_event_make_one_delivery(world: LedgerWorld):
    """The deliveries and the event's removal are one write: of two runs racing for the same
    event, one writes everything and the other nothing, so an endpoint gets one delivery."""
    import threading

    from chalicelib.adapters.dynamo.models import WebhookDeliveryItem
    from chalicelib.adapters.dynamo.webhook_repository import DynamoWebhookRepository
    from chalicelib.domain.users import AuditEvent
    from chalicelib.domain.webhooks import WebhookDelivery, WebhookEndpoint

    payer, facility = world.open_user_account(), world.open_user_account()
    world.fund(payer, 10_00)
    repository = DynamoWebhookRepository()
    endpoint = WebhookEndpoint.new("fac_1", "https://a.example/h", ["payment.received"], "t")
    audit = AuditEvent.new(
        "facility.webhook_endpoint_created", at="t", actor_id=None, target=None, ip=None
    )
    repository.create_endpoint(endpoint, audit)
    _pay(world, payer, facility, 1_00, key="k3")
    (event,) = repository.waiting_events(10)
    start = threading.Barrier(2)
    results: list[bool] = []

    def run() -> None:
        start.wait()
        results.append(
            repository.fan_out(event, [WebhookDelivery.of(event, endpoint, "2026-12-02T06:00:01Z")])
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert repository.fan_out(event, [WebhookDelivery.of(event, endpoint, "later")]) is False
    deliveries = list(WebhookDeliveryItem.scan(WebhookDeliveryItem.item_type == "webhook_delivery"))
    assert len(deliveries) == 1
    assert _events() == []  # the event item is gone with its fan-out

    # written again after its fan-out (the ledger prevents it; this is the store's own defence):
    # the next run finds every delivery there, makes none, and removes the event
    DynamoWebhookEvents.event(event).model.save()
    assert [e.id for e in _events()] == [event.id]
    assert repository.fan_out(event, [WebhookDelivery.of(event, endpoint, "again")]) is False
    assert _events() == []
