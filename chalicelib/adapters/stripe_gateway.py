"""Stripe, through the official ``stripe`` library: PaymentIntents and webhook signatures.

``stripe`` is imported inside the methods, never at module import: it costs ~250 ms of cold start
that routes which never talk to Stripe must not pay. The rest of the code sees plain dataclasses
(``PaymentIntent``, ``WebhookEvent``), never the library's objects, so tests can swap in a fake
with the same three methods.

Locally ``STRIPE_API_BASE`` points the library at localstripe (which ignores idempotency keys;
real Stripe honours them, see services/deposits.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.domain.errors import InvalidWebhook

SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class PaymentIntent:
    """What the ledger needs to know of a Stripe PaymentIntent, as Stripe reports it."""

    id: str
    status: str
    amount: int  # minor units; for a succeeded intent, the amount received
    currency: str  # upper case, e.g. "USD"
    client_secret: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified Stripe event: its id, type, and the id of the object it is about."""

    id: str
    type: str
    object_id: str | None


class PaymentGateway(Protocol):
    def create_payment_intent(
        self, *, amount: int, currency: str, deposit_id: str, user_id: str
    ) -> PaymentIntent: ...

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent: ...

    def verify_event(self, payload: bytes, signature: str | None) -> WebhookEvent: ...


def _intent(obj: Any) -> PaymentIntent:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    # localstripe reports no amount_received; Stripe reports what actually arrived there.
    received = data.get("amount_received")
    amount = int(received) if received else int(data["amount"])
    return PaymentIntent(
        id=str(data["id"]),
        status=str(data["status"]),
        amount=amount,
        currency=str(data["currency"]).upper(),
        client_secret=data.get("client_secret"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


class StripeGateway:
    """The real gateway (Stripe, or localstripe when ``api_base`` is set)."""

    def __init__(self, api_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._api_base = api_base

    def _stripe(self) -> Any:
        import stripe

        stripe.api_key = self._api_key
        if self._api_base:
            stripe.api_base = self._api_base
        return stripe

    def create_payment_intent(
        self, *, amount: int, currency: str, deposit_id: str, user_id: str
    ) -> PaymentIntent:
        """A PaymentIntent for a deposit; Stripe's idempotency key is the deposit id, so a
        retried request gets the same intent back (from real Stripe; localstripe ignores it)."""
        stripe = self._stripe()
        intent = stripe.PaymentIntent.create(
            amount=amount,
            currency=currency.lower(),
            metadata={"deposit_id": deposit_id, "user_id": user_id},
            payment_method_types=["card"],
            idempotency_key=deposit_id,
        )
        return _intent(intent)

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        return _intent(self._stripe().PaymentIntent.retrieve(payment_intent_id))

    def verify_event(self, payload: bytes, signature: str | None) -> WebhookEvent:
        """Check ``Stripe-Signature`` over the raw body (endpoint secret, 300 s tolerance).

        Raises:
            InvalidWebhook: missing or bad signature, stale timestamp, or a body that is not
                a Stripe event.
        """
        if not signature:
            raise InvalidWebhook("the Stripe-Signature header is missing")
        stripe = self._stripe()
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature, self._webhook_secret, SIGNATURE_TOLERANCE_SECONDS
            )
        except (UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
            raise InvalidWebhook("the Stripe-Signature does not verify") from exc
        return parse_event(text)


def parse_event(text: str) -> WebhookEvent:
    """The fields of a (verified) event body. Raises InvalidWebhook if it is not an event."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidWebhook("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidWebhook("the body is not a Stripe event")
    event_id, event_type = data.get("id"), data.get("type")
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise InvalidWebhook("the body is not a Stripe event")
    object_id = obj.get("id") if isinstance(obj, dict) else None
    return WebhookEvent(event_id, event_type, object_id if isinstance(object_id, str) else None)
