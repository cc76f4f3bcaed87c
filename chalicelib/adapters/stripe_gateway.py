"""Stripe, through the official ``stripe`` library: PaymentIntents, refunds and webhook signatures.

``stripe`` is imported inside the methods, never at module import: it costs ~250 ms of cold start
that routes which never talk to Stripe must not pay. The rest of the code sees plain dataclasses
(``PaymentIntent``, ``StripeRefund``, ``WebhookEvent``), never the library's objects, so tests can
swap in a fake with the same methods. Stripe's own errors become ``ProviderRefused`` (a definite
no: a 4xx) or ``ProviderUnavailable`` (unreachable, rate limited or a 5xx: try again later).

Locally ``STRIPE_API_BASE`` points the library at localstripe (which ignores idempotency keys;
real Stripe honours them, see services/deposits.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.domain.errors import InvalidWebhook, ProviderRefused, ProviderUnavailable

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
class StripeRefund:
    """A Stripe refund as Stripe reports it. ``metadata["refund_id"]`` names the ledger's refund."""

    id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    amount: int
    currency: str
    payment_intent_id: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified Stripe event: its id, type, the id of the object it is about, and that object
    as the (signed) event carried it."""

    id: str
    type: str
    object_id: str | None
    object: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BalanceTransaction:
    """A movement of the Stripe balance (a charge or a refund), with what its source names:
    the PaymentIntent of a charge, the ledger's refund id (``metadata["refund_id"]``) of a refund.
    ``amount`` is signed as Stripe reports it (a refund is negative)."""

    id: str
    type: str  # charge | refund | payment | ... (reconciliation matches charge and refund)
    amount: int
    currency: str  # upper case
    created: int  # epoch seconds
    source_id: str | None
    payment_intent_id: str | None = None
    refund_id: str | None = None


class PaymentGateway(Protocol):
    def create_payment_intent(
        self, *, amount: int, currency: str, deposit_id: str, user_id: str
    ) -> PaymentIntent: ...

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent: ...

    def verify_event(self, payload: bytes, signature: str | None) -> WebhookEvent: ...

    def create_refund(
        self, *, payment_intent_id: str, amount: int, refund_id: str, deposit_id: str
    ) -> StripeRefund: ...

    def retrieve_refund(self, stripe_refund_id: str) -> StripeRefund: ...

    def list_refunds(self, payment_intent_id: str) -> list[StripeRefund]: ...

    def list_balance_transactions(self, start: int, end: int) -> list[BalanceTransaction]: ...


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


def _refund(obj: Any) -> StripeRefund:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    intent = data.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    return StripeRefund(
        id=str(data["id"]),
        status=str(data.get("status") or "pending"),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        payment_intent_id=str(intent) if intent else None,
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        failure_reason=data.get("failure_reason"),
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
        with _provider_errors(stripe):
            intent = stripe.PaymentIntent.create(
                amount=amount,
                currency=currency.lower(),
                metadata={"deposit_id": deposit_id, "user_id": user_id},
                payment_method_types=["card"],
                idempotency_key=deposit_id,
            )
        return _intent(intent)

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        stripe = self._stripe()
        with _provider_errors(stripe):
            return _intent(stripe.PaymentIntent.retrieve(payment_intent_id))

    def create_refund(
        self, *, payment_intent_id: str, amount: int, refund_id: str, deposit_id: str
    ) -> StripeRefund:
        """Refund part or all of a PaymentIntent; Stripe's idempotency key is the ledger's refund
        id, which also travels in the metadata (so a refund can be found again by listing)."""
        stripe = self._stripe()
        with _provider_errors(stripe):
            refund = stripe.Refund.create(
                payment_intent=payment_intent_id,
                amount=amount,
                metadata={"refund_id": refund_id, "deposit_id": deposit_id},
                idempotency_key=refund_id,
            )
        return _refund(refund)

    def retrieve_refund(self, stripe_refund_id: str) -> StripeRefund:
        stripe = self._stripe()
        with _provider_errors(stripe):
            return _refund(stripe.Refund.retrieve(stripe_refund_id))

    def list_refunds(self, payment_intent_id: str) -> list[StripeRefund]:
        stripe = self._stripe()
        with _provider_errors(stripe):
            page = stripe.Refund.list(payment_intent=payment_intent_id, limit=100)
            return [_refund(r) for r in page.auto_paging_iter()]

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

    def list_balance_transactions(self, start: int, end: int) -> list[BalanceTransaction]:
        """Balance transactions created in [start, end) (epoch seconds), sources expanded.

        localstripe knows no ``created`` filter (it refuses unknown parameters), so against it
        the whole (small, local) list is read and filtered here; Stripe filters server-side.
        """
        stripe = self._stripe()
        params: dict[str, Any] = {"limit": 100, "expand": ["data.source"]}
        if not self._api_base:
            params["created"] = {"gte": start, "lt": end}
        with _provider_errors(stripe):
            page = stripe.BalanceTransaction.list(**params)
            found = [_balance_transaction(t) for t in page.auto_paging_iter()]
        return [t for t in found if start <= t.created < end]


def _balance_transaction(obj: Any) -> BalanceTransaction:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    source = data.get("source")
    if hasattr(source, "to_dict"):
        source = source.to_dict()
    source_data = source if isinstance(source, dict) else {}
    source_id = source_data.get("id") if source_data else source
    intent = source_data.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    metadata = source_data.get("metadata") or {}
    return BalanceTransaction(
        id=str(data["id"]),
        type=str(data.get("type") or ""),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        created=int(data["created"]),
        source_id=str(source_id) if source_id else None,
        payment_intent_id=str(intent) if intent else None,
        refund_id=str(metadata["refund_id"]) if metadata.get("refund_id") else None,
    )


@contextmanager
def _provider_errors(stripe: Any) -> Iterator[None]:
    """Stripe's exceptions -> ProviderRefused (a 4xx: a definite no) / ProviderUnavailable."""
    try:
        yield
    except stripe.StripeError as exc:
        status = getattr(exc, "http_status", None)
        retryable = (stripe.APIConnectionError, stripe.RateLimitError)
        if isinstance(exc, retryable) or status is None or status >= 500 or status == 409:
            raise ProviderUnavailable("Stripe could not be reached; retry later") from exc
        message = getattr(exc, "user_message", None) or "the request was declined"
        raise ProviderRefused(f"Stripe refused: {message}") from exc


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
    return WebhookEvent(
        event_id,
        event_type,
        object_id if isinstance(object_id, str) else None,
        obj if isinstance(obj, dict) else {},
    )
