"""Outbound webhook events: what a facility hears about (API.md, "Outbound webhooks").

An event is written in the same DynamoDB transaction as the money it reports (an outbox), so an
event exists exactly when its money moved. Its id is derived from what it reports
(``event_id``), so a retried operation names the same event and a receiver can drop duplicates.

A facility's **endpoint** names a URL and the event types it wants; each event becomes one
**delivery** per endpoint that wants it (its id derived from the event's and the endpoint's), POSTed
with the ``X-Signature`` of ``domain/signatures.py`` under the endpoint's secret until a 2xx answer,
with full-jitter exponential back-off, for at most ``GIVE_UP_SECONDS`` after the first attempt.
Invariants: one delivery per (event, endpoint); the event id never changes across attempts; a
delivery ends (succeeded or failed) at most ``GIVE_UP_SECONDS`` after its first attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from chalicelib.domain.errors import InvalidRequest


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


# -- endpoints ------------------------------------------------------------------------------------
ENDPOINT_ID_PREFIX = "we_"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
# An endpoint failing this long with no success since is disabled; a delivery is given up this
# long after its first attempt (API.md: "retried with exponential back-off for up to 3 days").
GIVE_UP_SECONDS = 3 * 24 * 3600
# An event's fan-out is one TransactWriteItems (at most 100 items): a delivery per endpoint and
# the event's removal.
MAX_ENDPOINTS_PER_FACILITY = 16  # created, enabled or since disabled: disabling frees no slot
TOO_MANY_ENDPOINTS = f"a facility may have at most {MAX_ENDPOINTS_PER_FACILITY} webhook endpoints"


_ENDPOINT_ID = re.compile(r"we_[0-9a-f]{24}")
_DELIVERY_ID = re.compile(r"whd_[0-9a-f]{32}")


def is_endpoint_id(text: str) -> bool:
    """Shaped like an id we give an endpoint (anything else names no endpoint)."""
    return _ENDPOINT_ID.fullmatch(text) is not None


def is_delivery_id(text: str) -> bool:
    """Shaped like an id we give a delivery (anything else names no delivery)."""
    return _DELIVERY_ID.fullmatch(text) is not None


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


def parse_event_types(names: Iterable[str]) -> tuple[WebhookEventType, ...]:
    """A non-empty set of known event types, in the order of ``WebhookEventType``.

    Raises:
        InvalidRequest: empty, or a name that is not an event type.
    """
    wanted = list(names)
    if not wanted:
        raise InvalidRequest("events must name at least one event type")
    known = {str(t) for t in WebhookEventType}
    unknown = sorted({name for name in wanted if name not in known})
    if unknown:
        raise InvalidRequest(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return tuple(t for t in WebhookEventType if str(t) in wanted)


def derive_endpoint_secret(master_key: str, endpoint_id: str, nonce: str) -> str:
    """The endpoint's signing secret, ``whsec_<64 hex>``: an HMAC of the endpoint under the
    stage's ``WEBHOOK_SECRET_KEY``. It is never stored; whoever holds the master key (the
    functions) computes it again for each delivery (docs/facilities.md, "The endpoint secret")."""
    material = f"webhook-endpoint\x1f{endpoint_id}\x1f{nonce}".encode()
    return SECRET_PREFIX + hmac.new(master_key.encode(), material, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where a facility wants its events, and which ones. ``failing_since`` is the first failed
    attempt after the last success (None while deliveries succeed)."""

    id: str
    facility_id: str
    url: str
    events: tuple[WebhookEventType, ...]
    status: EndpointStatus
    created_at: str
    secret_nonce: str
    disabled_at: str | None = None
    disabled_reason: str | None = None
    failing_since: str | None = None

    @classmethod
    def new(cls, facility_id: str, url: str, events: Iterable[str], at: str) -> WebhookEndpoint:
        return cls(
            id=ENDPOINT_ID_PREFIX + secrets.token_hex(12),
            facility_id=facility_id,
            url=url,
            events=parse_event_types(events),
            status=EndpointStatus.ENABLED,
            created_at=at,
            secret_nonce=secrets.token_hex(16),
        )

    @property
    def enabled(self) -> bool:
        return self.status is EndpointStatus.ENABLED

    def wants(self, event: WebhookEvent) -> bool:
        return self.enabled and event.facility_id == self.facility_id and event.type in self.events

    def disabled(self, at: str, reason: str) -> WebhookEndpoint:
        return replace(self, status=EndpointStatus.DISABLED, disabled_at=at, disabled_reason=reason)

    def secret(self, master_key: str) -> str:
        return derive_endpoint_secret(master_key, self.id, self.secret_nonce)

    def failing_too_long(self, now: datetime) -> bool:
        """Failing for ``GIVE_UP_SECONDS`` with no success since: to be disabled."""
        if self.failing_since is None:
            return False
        return (now - _parse(self.failing_since)).total_seconds() >= GIVE_UP_SECONDS


# -- deliveries -----------------------------------------------------------------------------------
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 6 * 3600
TIMEOUT_SECONDS = 10


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """The one delivery of an event to an endpoint: a fan-out run again names the same one."""
    material = f"{event_id}\x1f{endpoint_id}".encode()
    return "whd_" + hashlib.sha256(material).hexdigest()[:32]


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """Full jitter: a uniform delay in [0, min(cap, base * 2^(attempts - 1))] after the
    ``attempts``-th failed attempt."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, min(attempts - 1, 30)))
    return rng.uniform(0, ceiling)


def payload(event: WebhookEvent) -> bytes:
    """The body POSTed for ``event``: ``{id, type, created_at, data}``, compact JSON."""
    body = {
        "id": event.id,
        "type": str(event.type),
        "created_at": event.created_at,
        "data": dict(event.data),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Attempt:
    """What one POST gave: the HTTP status (None: no answer), and why it failed if it did."""

    status_code: int | None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class WebhookDelivery:
    """One event to one endpoint, attempted until a 2xx answer or ``GIVE_UP_SECONDS`` after its
    first attempt. The event (and its id) is the same on every attempt."""

    id: str
    event: WebhookEvent
    endpoint_id: str
    status: DeliveryStatus
    attempts: int
    created_at: str
    next_attempt_at: str | None
    last_status_code: int | None = None
    last_error: str | None = None
    first_attempt_at: str | None = None
    last_attempt_at: str | None = None

    @classmethod
    def of(cls, event: WebhookEvent, endpoint: WebhookEndpoint, at: str) -> WebhookDelivery:
        return cls(
            id=delivery_id(event.id, endpoint.id),
            event=event,
            endpoint_id=endpoint.id,
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=at,
            next_attempt_at=at,
        )

    @property
    def facility_id(self) -> str:
        return self.event.facility_id

    def after(self, attempt: Attempt, now: datetime, rng: random.Random) -> WebhookDelivery:
        """The delivery once ``attempt`` was made at ``now``: succeeded on a 2xx; otherwise
        pending with a back-off (never past the give-up time), or failed from
        ``GIVE_UP_SECONDS`` after the first attempt on."""
        return self.started(now, rng).finished(attempt, now, rng)

    def started(self, now: datetime, rng: random.Random) -> WebhookDelivery:
        """The delivery as stored when an attempt starts at ``now``, before it is made: counted
        (``attempts``, ``first_attempt_at``, ``last_attempt_at``) and pending with the back-off
        of a failed attempt, so an attempt whose worker dies before it records an outcome still
        counts toward the back-off and the give-up time."""
        at = _iso(now)
        first = self.first_attempt_at or at
        attempts = self.attempts + 1
        give_up_at = _parse(first) + timedelta(seconds=GIVE_UP_SECONDS)
        retry_at = min(now + timedelta(seconds=backoff_seconds(attempts, rng)), give_up_at)
        return replace(
            self,
            status=DeliveryStatus.PENDING,
            attempts=attempts,
            first_attempt_at=first,
            last_attempt_at=at,
            next_attempt_at=_iso(max(retry_at, now)),
        )

    def finished(self, attempt: Attempt, now: datetime, rng: random.Random) -> WebhookDelivery:
        """A ``started`` delivery once its attempt gave ``attempt`` at ``now`` (``attempts``
        and ``first_attempt_at`` as started)."""
        first = self.first_attempt_at or _iso(now)
        common = {
            "last_status_code": attempt.status_code,
            "last_error": None if attempt.succeeded else attempt.error,
        }
        if attempt.succeeded:
            return replace(self, status=DeliveryStatus.SUCCEEDED, next_attempt_at=None, **common)
        give_up_at = _parse(first) + timedelta(seconds=GIVE_UP_SECONDS)
        if now >= give_up_at:
            return replace(self, status=DeliveryStatus.FAILED, next_attempt_at=None, **common)
        retry_at = min(now + timedelta(seconds=backoff_seconds(self.attempts, rng)), give_up_at)
        return replace(
            self, status=DeliveryStatus.PENDING, next_attempt_at=_iso(retry_at), **common
        )

    def abandoned(self, reason: str) -> WebhookDelivery:
        """Failed without an attempt (its endpoint is disabled or gone)."""
        return replace(self, status=DeliveryStatus.FAILED, next_attempt_at=None, last_error=reason)


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
