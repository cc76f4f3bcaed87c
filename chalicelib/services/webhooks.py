"""Outbound webhooks (API.md, "Outbound webhooks"): a facility's endpoints, and the delivery of
the events that money-moving services wrote in their outbox (``services/webhook_events.py``).

- **Endpoints**: created (URL checked against the SSRF rules, ``WebhookSender.check``), listed
  and disabled by the facility; creating and disabling are audited in the same write. The
  signing secret is derived from the stage's master key, never stored, and shown once.
- **Fan-out** (``fan_out``): each waiting event becomes one delivery per enabled endpoint of its
  facility that wants its type; the deliveries and the removal of the event are one write, and
  delivery ids are derived from event and endpoint, so a run repeated or raced makes no second.
- **Delivery** (``deliver_due``): each due delivery is leased (a conditional write), POSTed with
  ``X-Signature`` (``domain/signatures.py``) under the endpoint's secret, and its outcome stored
  by the lease's holder only. A non-2xx answer or none within 10 s (the whole attempt) is
  retried with full-jitter exponential back-off until 3 days after the first attempt, then the
  delivery fails. An attempt
  is counted (and the next one scheduled as if it failed) when it starts, so a worker killed
  mid-attempt does not escape the back-off or the give-up. The URL
  is checked again before every attempt, and the connection goes to the address checked.
- **Disabling**: an endpoint whose attempts have been failing for 3 days with no success since
  is disabled, audited and reported to the operators (``Alerts``); its pending deliveries end
  as failed without another attempt.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from chalicelib.adapters.clock import to_iso
from chalicelib.domain.errors import (
    InvalidRequest,
    InvalidState,
    VersionConflict,
    WebhookDeliveryNotFound,
    WebhookEndpointNotFound,
)
from chalicelib.domain.signatures import signature_header
from chalicelib.domain.users import AuditEvent
from chalicelib.domain.webhooks import (
    MAX_ENDPOINTS_PER_FACILITY,
    TOO_MANY_ENDPOINTS,
    Attempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    is_delivery_id,
    is_endpoint_id,
    payload,
)
from chalicelib.services.alerts import Alerts

# A delivery is leased this long: longer than one attempt can take (10 s in all).
LEASE_SECONDS = 120
# A run (the function runs every minute, with a 90 s timeout) goes round fan-out and delivery
# until this many seconds are used or nothing is left, starts no attempt after it (an attempt
# takes at most 10 s), and makes this many attempts at once.
RUN_BUDGET_SECONDS = 45.0
PARALLEL_ATTEMPTS = 8
# An event whose fan-out failed this many times (one try per run) is parked and alerted on.
MAX_FAN_OUT_TRIES = 5
USER_AGENT = "ledger-webhooks/1"
DISABLED_REASON = "deliveries failed for 3 days with no success"


class WebhookSender(Protocol):
    """HTTP to facilities' endpoints under the stage's URL policy (``adapters/webhook_http``)."""

    def check(self, url: str) -> None:
        """Raises InvalidWebhookUrl (an InvalidRequest): we would not send to ``url``."""
        ...

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        """POST once; what the endpoint answered, or why it did not. Checks ``url`` again."""
        ...


class WebhookRepository(Protocol):
    def create_endpoint(
        self, endpoint: WebhookEndpoint, event: AuditEvent, *, existing: int = 0
    ) -> None:
        """The endpoint and its audit event, if the facility is under the endpoint cap (held
        by the write itself; ``existing``: the endpoints the caller read).

        Raises:
            VersionConflict: the id is taken. InvalidRequest: the facility is at the cap.
        """
        ...

    def endpoints_of(self, facility_id: str) -> list[WebhookEndpoint]:
        """Newest first."""
        ...

    def endpoint(self, facility_id: str, endpoint_id: str) -> WebhookEndpoint | None: ...
    def disable_endpoint(self, endpoint: WebhookEndpoint, event: AuditEvent) -> None:
        """Raises VersionConflict if the stored endpoint is not enabled (nothing written)."""
        ...

    def endpoint_failed(self, endpoint: WebhookEndpoint, at: str) -> WebhookEndpoint | None: ...
    def endpoint_succeeded(self, endpoint: WebhookEndpoint, started_at: str) -> None:
        """Clear ``failing_since`` if it is at or before ``started_at`` (as stored now)."""
        ...

    def waiting_events(self, limit: int) -> list[WebhookEvent]: ...
    def fan_out(self, event: WebhookEvent, deliveries: list[WebhookDelivery]) -> bool: ...
    def fan_out_failed(self, event: WebhookEvent) -> int:
        """Count a failed fan-out of the waiting event; the count (0: it is no longer waiting)."""
        ...

    def park_event(self, event: WebhookEvent, at: str) -> bool:
        """Take the event out of the outbox, kept to be read; False if it was not waiting."""
        ...

    def due(self, now: str, limit: int) -> list[str]: ...
    def delivery(self, delivery_id: str) -> WebhookDelivery | None: ...
    def claim(
        self, delivery_id: str, now: int, until: int, *, due_at: str | None
    ) -> tuple[WebhookDelivery, str] | None: ...
    def record(
        self, delivery: WebhookDelivery, token: str, now: int, *, keep_lease: bool = False
    ) -> bool:
        """Store the delivery if the lease is still ``token``, releasing it unless
        ``keep_lease``; False (nothing written) if the lease is no longer ``token``."""
        ...

    def deliveries_of(
        self, facility_id: str, endpoint_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]: ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Webhooks:
    """The use cases, with what they need: the repository, the HTTP sender, the operators'
    alerts, the stage's master key for endpoint secrets, a clock and a random source."""

    repository: WebhookRepository
    sender: WebhookSender
    alerts: Alerts
    master_key: str
    clock: Callable[[], datetime] = _now
    rng: random.Random = field(default_factory=random.Random)
    log: Callable[..., None] = lambda *_a, **_k: None
    monotonic: Callable[[], float] = time.monotonic

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(
        self, facility_id: str, url: object, events: Iterable[str], *, actor_id: str, ip: str | None
    ) -> tuple[WebhookEndpoint, str]:
        """A new enabled endpoint and its signing secret (shown once).

        Raises:
            InvalidRequest: a URL we would not send to (InvalidWebhookUrl), no or unknown event
                types, or the facility has ``MAX_ENDPOINTS_PER_FACILITY`` endpoints already.
        """
        at = to_iso(self.clock())
        endpoint = WebhookEndpoint.new(facility_id, str(url), events, at)
        self.sender.check(endpoint.url)
        existing = len(self.repository.endpoints_of(facility_id))
        if existing >= MAX_ENDPOINTS_PER_FACILITY:  # a quick answer; the write holds the cap
            raise InvalidRequest(TOO_MANY_ENDPOINTS)
        event = AuditEvent.new(
            "facility.webhook_endpoint_created",
            at=at,
            actor_id=actor_id,
            target=endpoint.id,
            ip=ip,
            facility_id=facility_id,
            url=endpoint.url,
            events=",".join(endpoint.events),
        )
        self.repository.create_endpoint(endpoint, event, existing=existing)
        return endpoint, endpoint.secret(self.master_key)

    def endpoints(self, facility_id: str) -> list[WebhookEndpoint]:
        return self.repository.endpoints_of(facility_id)

    def disable_endpoint(
        self, facility_id: str, endpoint_id: str, *, actor_id: str | None, ip: str | None
    ) -> WebhookEndpoint:
        """Disable the facility's endpoint: nothing more is sent to it. Disabling a disabled
        endpoint changes nothing and answers it as it is.

        Raises:
            WebhookEndpointNotFound: the facility has no endpoint with this id.
        """
        endpoint = (
            self.repository.endpoint(facility_id, endpoint_id)
            if is_endpoint_id(endpoint_id)
            else None
        )
        if endpoint is None:
            raise WebhookEndpointNotFound(f"webhook endpoint {endpoint_id} does not exist")
        if not endpoint.enabled:
            return endpoint
        return self._disable(endpoint, "disabled by the facility", actor_id=actor_id, ip=ip)[0]

    def _disable(
        self, endpoint: WebhookEndpoint, reason: str, *, actor_id: str | None, ip: str | None
    ) -> tuple[WebhookEndpoint, bool]:
        """The endpoint disabled, and whether this call disabled it (False: someone else did
        meanwhile, and wrote the audit event)."""
        at = to_iso(self.clock())
        disabled = endpoint.disabled(at, reason)
        event = AuditEvent.new(
            "facility.webhook_endpoint_disabled",
            at=at,
            actor_id=actor_id,
            target=endpoint.id,
            ip=ip,
            facility_id=endpoint.facility_id,
            reason=reason,
        )
        try:
            self.repository.disable_endpoint(disabled, event)
        except VersionConflict:  # disabled meanwhile (by the facility or a worker): as stored
            return self.repository.endpoint(endpoint.facility_id, endpoint.id) or disabled, False
        return disabled, True

    # -- deliveries: reading and retrying -----------------------------------------------------
    def deliveries(
        self, facility_id: str, endpoint_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        """The facility's deliveries, newest first.

        Raises:
            InvalidRequest: a cursor this list did not return.
        """
        if endpoint_id is not None and not is_endpoint_id(endpoint_id):
            return [], None  # no endpoint has this id: none of its deliveries exist
        try:
            return self.repository.deliveries_of(facility_id, endpoint_id, limit, cursor)
        except ValueError as exc:
            raise InvalidRequest(
                "cursor is not valid",
                [{"field": "cursor", "message": "is not a cursor this list returned"}],
            ) from exc

    def retry(self, facility_id: str, delivery_id: str) -> WebhookDelivery:
        """Attempt the delivery once, now, within the call (whatever its status), with the same
        event id; the delivery as it stands after the attempt (its back-off and 3-day limit
        apply as to any attempt).

        Raises:
            WebhookDeliveryNotFound: the facility has no delivery with this id.
            InvalidState: its endpoint is disabled.
            VersionConflict: a worker is attempting it right now; safe to retry.
        """
        delivery = self.repository.delivery(delivery_id) if is_delivery_id(delivery_id) else None
        if delivery is None or delivery.facility_id != facility_id:
            raise WebhookDeliveryNotFound(f"webhook delivery {delivery_id} does not exist")
        endpoint = self.repository.endpoint(facility_id, delivery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            raise InvalidState("the delivery's webhook endpoint is disabled")
        now = int(self.clock().timestamp())
        claimed = self.repository.claim(delivery_id, now, now + LEASE_SECONDS, due_at=None)
        if claimed is None:
            raise VersionConflict("the delivery is being attempted right now; retry shortly")
        after, _ = self._attempt(*claimed)
        return after

    # -- the worker ---------------------------------------------------------------------------
    def run(self, limit: int = 100, budget_seconds: float = RUN_BUDGET_SECONDS) -> Counter:
        """One worker run: rounds of fan-out (up to ``limit`` waiting events) then delivery (up
        to ``limit`` due deliveries), while a round found a full batch of either and
        ``budget_seconds`` are not used up, so a backlog drains in one run. Events that could
        not be fanned out do not hold up delivery, and are not tried again within the run."""
        started = self.monotonic()
        outcomes: Counter = Counter()
        failed: set[str] = set()
        while True:
            fanned = self.fan_out(limit, skip=failed)
            left = budget_seconds - (self.monotonic() - started)
            delivered = self.deliver_due(limit, max(left, 0.0))
            outcomes.update(fanned)
            outcomes.update(delivered)
            outcomes["rounds"] += 1
            events = sum(fanned[k] for k in ("fanned_out", "fanned_out_elsewhere"))
            more_events = events + fanned["fan_out_failed"] >= limit
            more_due = sum(delivered.values()) >= limit and not delivered["left_for_next_run"]
            if not (more_events or more_due) or self.monotonic() - started >= budget_seconds:
                return outcomes

    def fan_out(self, limit: int = 100, skip: set[str] | None = None) -> Counter:
        """Fan out up to ``limit`` waiting events, not those in ``skip`` (the ids of the events
        that failed are added to it). An event whose fan-out fails is logged, its failure
        counted on it, and the others go on; after ``MAX_FAN_OUT_TRIES`` failures it is parked
        (out of the outbox, kept to be read) and the operators are alerted."""
        skip = set() if skip is None else skip
        outcomes: Counter = Counter()
        at = to_iso(self.clock())
        endpoints: dict[str, list[WebhookEndpoint]] = {}
        waiting = self.repository.waiting_events(limit + len(skip))
        for event in [e for e in waiting if e.id not in skip][:limit]:
            try:
                if event.facility_id not in endpoints:
                    endpoints[event.facility_id] = self.repository.endpoints_of(event.facility_id)
                wanted = [e for e in endpoints[event.facility_id] if e.wants(event)]
                deliveries = [WebhookDelivery.of(event, endpoint, at) for endpoint in wanted]
                if self.repository.fan_out(event, deliveries):
                    outcomes["fanned_out"] += 1
                    outcomes["deliveries_created"] += len(deliveries)
                else:
                    outcomes["fanned_out_elsewhere"] += 1
            except Exception as exc:  # this event only: the others still go
                skip.add(event.id)
                outcomes["fan_out_failed"] += 1
                self.log("webhook fan-out failed", event_id=event.id, error=repr(exc))
                outcomes.update(self._count_fan_out_failure(event, at, exc))
        return outcomes

    def _count_fan_out_failure(self, event: WebhookEvent, at: str, error: Exception) -> Counter:
        try:
            tries = self.repository.fan_out_failed(event)
            if tries < MAX_FAN_OUT_TRIES or not self.repository.park_event(event, at):
                return Counter()
        except Exception as exc:  # the store failed again: the next run counts it
            self.log("webhook fan-out failure not counted", event_id=event.id, error=repr(exc))
            return Counter()
        details = {
            "event_id": event.id,
            "event_type": str(event.type),
            "facility_id": event.facility_id,
            "created_at": event.created_at,
            "fan_out_tries": tries,
            "error": repr(error)[:500],
        }
        self.log("webhook event parked", **details)
        sent = self.alerts.publish(
            f"Ledger: webhook event {event.id} parked", json.dumps(details, sort_keys=True)
        )
        if not sent:
            self.log("no alert topic: the parked event was only logged", **details)
        return Counter(parked=1)

    def deliver_due(self, limit: int = 100, budget_seconds: float = RUN_BUDGET_SECONDS) -> Counter:
        """Attempt up to ``limit`` due deliveries, ``PARALLEL_ATTEMPTS`` at a time (a slow
        endpoint does not hold up the others); none is started after ``budget_seconds``, so a run
        ends before the next one starts (what is left is due for the next run)."""
        started = self.monotonic()
        due_at = to_iso(self.clock())

        failures: list[Exception] = []

        def one(delivery_id: str) -> str:
            if self.monotonic() - started > budget_seconds:
                return "left_for_next_run"
            try:
                moment = self.clock()
                now = int(moment.timestamp())
                claimed = self.repository.claim(
                    delivery_id, now, now + LEASE_SECONDS, due_at=to_iso(moment)
                )
                if claimed is None:
                    return "leased_elsewhere"
                return self._attempt(*claimed)[1]
            except Exception as exc:  # the store failed: the others still go; raised below
                self.log("webhook delivery failed", delivery_id=delivery_id, error=repr(exc))
                failures.append(exc)
                return "error"

        ids = self.repository.due(due_at, limit)
        if not ids:
            return Counter()
        with ThreadPoolExecutor(max_workers=min(PARALLEL_ATTEMPTS, len(ids))) as pool:
            outcomes = Counter(pool.map(one, ids))
        if failures:  # the run fails (the function's error alarm); its lease expires, retried
            raise failures[0]
        return outcomes

    def _attempt(self, delivery: WebhookDelivery, token: str) -> tuple[WebhookDelivery, str]:
        """One attempt of a leased delivery, recorded; the delivery after it and an outcome."""
        endpoint = self.repository.endpoint(delivery.facility_id, delivery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            ended = delivery.abandoned("the endpoint is disabled")
            self.repository.record(ended, token, int(self.clock().timestamp()))
            return ended, "abandoned"
        body = payload(delivery.event)
        moment = self.clock()
        # Counted before it is made: a worker killed mid-attempt leaves it counted and backed off.
        started = delivery.started(moment, self.rng)
        if not self.repository.record(started, token, int(moment.timestamp()), keep_lease=True):
            self.log("webhook delivery lease lost", delivery_id=delivery.id)
            return delivery, "lease_lost"
        headers = {
            "X-Signature": signature_header(
                endpoint.secret(self.master_key), int(moment.timestamp()), body
            ),
            "User-Agent": USER_AGENT,
            "X-Webhook-Event-Id": delivery.event.id,
        }
        attempt = self.sender.post(endpoint.url, body, headers)
        finished = self.clock()
        after = started.finished(attempt, finished, self.rng)
        if not self.repository.record(after, token, int(finished.timestamp())):
            self.log("webhook delivery lease lost", delivery_id=delivery.id)
            return after, "lease_lost"
        if attempt.succeeded:
            # Whatever was read: a failure stored since (racing this attempt) is cleared too.
            self.repository.endpoint_succeeded(endpoint, to_iso(moment))
            return after, "succeeded"
        stored = self.repository.endpoint_failed(endpoint, to_iso(finished))
        if stored is not None and stored.enabled and stored.failing_too_long(finished):
            self._give_up_on(stored)
        return after, "failed" if after.status is DeliveryStatus.FAILED else "retry_later"

    def _give_up_on(self, endpoint: WebhookEndpoint) -> None:
        _, changed = self._disable(endpoint, DISABLED_REASON, actor_id=None, ip=None)
        if not changed:  # another attempt of the same run disabled it (and alerted) first
            return
        details = {
            "facility_id": endpoint.facility_id,
            "endpoint_id": endpoint.id,
            "url": endpoint.url,
            "failing_since": endpoint.failing_since,
            "reason": DISABLED_REASON,
        }
        self.log("webhook endpoint disabled", **details)
        sent = self.alerts.publish(
            f"Ledger: webhook endpoint {endpoint.id} disabled",
            json.dumps(details, sort_keys=True),
        )
        if not sent:
            self.log("no alert topic: the disabled endpoint was only logged", **details)
