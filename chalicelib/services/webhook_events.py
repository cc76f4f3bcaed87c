"""The outbox side of outbound webhooks: a money-moving service adds its facility's event to the
write of the money (``extra=[events.event(...)]``), so the event exists exactly when the money
moved. Delivering events is ``services/webhooks.py``'s business."""

from __future__ import annotations

from typing import Protocol

from chalicelib.domain.webhooks import WebhookEvent
from chalicelib.services.ledger import SideWrite


class WebhookEvents(Protocol):
    def event(self, event: WebhookEvent) -> SideWrite:
        """``event`` as one more item of the write of the money it reports."""
        ...
