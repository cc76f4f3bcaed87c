"""Outbound webhook events: what a facility hears about (API.md, "Outbound webhooks").

An event is written in the same DynamoDB transaction as the money it reports (an outbox), so an
event exists exactly when its money moved. Its id is derived from what it reports
(``event_id``), so a retried operation names the same event and a receiver can drop duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class WebhookEventType(StrEnum):
    PAYMENT_REQUEST_PAID = "payment_request.paid"
    PAYMENT_REQUEST_DECLINED = "payment_request.declined"
    PAYMENT_RECEIVED = "payment.received"
    PAYOUT_COMPLETED = "payout.completed"


def event_id(type: WebhookEventType, subject_id: str) -> str:
    """The one id of the event of ``type`` about ``subject_id`` (a payment request, a
    transaction, a payout): the same operation, however often retried, names the same event."""
    material = f"{type}\x1f{subject_id}".encode()
    return "evt_" + hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True)
class WebhookEvent:
    """One event for one facility. ``data`` is the JSON object sent as the event's ``data``."""

    id: str
    type: WebhookEventType
    facility_id: str
    created_at: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def about(
        cls,
        type: WebhookEventType,
        subject_id: str,
        facility_id: str,
        at: str,
        data: Mapping[str, Any],
    ) -> WebhookEvent:
        return cls(event_id(type, subject_id), type, facility_id, at, dict(data))
