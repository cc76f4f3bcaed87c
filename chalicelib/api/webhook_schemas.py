"""Request bodies of the outbound webhook routes (``/v1/facility/webhook-endpoints``).
Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from chalicelib.api.auth_schemas import RequestBody

__all__ = ["NewWebhookEndpoint", "RequestBody"]
from chalicelib.domain.webhook_urls import MAX_URL_LENGTH

EventTypeName = Literal[
    "payment_request.paid", "payment_request.declined", "payment.received", "payout.completed"
]


class NewWebhookEndpoint(RequestBody):
    url: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_URL_LENGTH),
        Field(
            description="https URL of a public host (the local stage also takes "
            "http://127.0.0.1:<port>)",
            examples=["https://clinic.example/ledger-webhooks"],
        ),
    ]
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=16)]
