"""The webhook inbox: one item per provider event (``EVT#<provider>#<event id>``), written with
``attribute_not_exists`` in the same transaction as the event's effect, so a redelivered event
is a no-op (DESIGN.md, guarantee 5). Shared by the Stripe and crypto webhooks."""

from __future__ import annotations

from typing import Protocol

from pynamodb.exceptions import PutError

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import WebhookEventItem
from chalicelib.adapters.dynamo.transact import condition_failed
from chalicelib.domain.errors import WebhookEventSeen

DUPLICATE = "duplicate"


class ProviderEvent(Protocol):
    id: str
    type: str


def _item(
    provider: str, event: ProviderEvent, outcome: str, subject: str | None
) -> WebhookEventItem:
    return WebhookEventItem(
        keys.inbox_pk(provider, event.id),
        keys.INBOX_SK,
        item_type=WebhookEventItem.ITEM_TYPE,
        provider=provider,
        event_id=event.id,
        event_type=event.type,
        outcome=outcome,
        subject=subject,
        received_at=now_iso(),
    )


def seen(provider: str, event_id: str) -> bool:
    try:
        WebhookEventItem.get(keys.inbox_pk(provider, event_id), keys.INBOX_SK, consistent_read=True)
    except WebhookEventItem.DoesNotExist:
        return False
    return True


def entry(provider: str, event: ProviderEvent, outcome: str, subject: str | None) -> ExtraWrite:
    """The inbox item as part of the write that applies the event; raises WebhookEventSeen
    (nothing written) if the event was applied before."""
    return ExtraWrite(
        model=_item(provider, event, outcome, subject),
        condition=WebhookEventItem.PK.does_not_exist(),
        error=WebhookEventSeen(f"{provider} event {event.id} was recorded before"),
    )


def record(provider: str, event: ProviderEvent, outcome: str, subject: str | None = None) -> str:
    """Record an event that moves no money, once; a redelivery answers ``DUPLICATE``."""
    try:
        _item(provider, event, outcome, subject).save(
            condition=WebhookEventItem.PK.does_not_exist()
        )
    except PutError as exc:
        if condition_failed(exc):
            return DUPLICATE
        raise
    return outcome
