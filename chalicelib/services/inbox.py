"""The webhook inbox: one record per provider event, written in the same transaction as the
event's effect, so a redelivered event is a no-op (DESIGN.md, guarantee 5). Shared by the Stripe
and crypto webhooks; ``adapters.dynamo.inbox_store.DynamoInbox`` keeps it in the table."""

from __future__ import annotations

from typing import Protocol

from chalicelib.domain.inbox import DUPLICATE, ProviderEvent
from chalicelib.services.ledger import SideWrite

__all__ = ["DUPLICATE", "Inbox", "ProviderEvent"]


class Inbox(Protocol):
    def seen(self, provider: str, event_id: str) -> bool:
        """Whether the event was recorded (strongly consistent)."""
        ...

    def entry(
        self, provider: str, event: ProviderEvent, outcome: str, subject: str | None
    ) -> SideWrite:
        """The event's record as part of the write that applies it: that write fails with
        WebhookEventSeen (nothing written) if the event was recorded before."""
        ...

    def record(
        self, provider: str, event: ProviderEvent, outcome: str, subject: str | None = None
    ) -> str:
        """Record an event that moves no money, once: ``outcome``, or ``DUPLICATE`` for a
        redelivery."""
        ...
