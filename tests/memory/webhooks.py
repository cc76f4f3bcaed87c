"""Webhook endpoints, outbox events and deliveries in memory: ``services.webhooks.
WebhookRepository``, held to the same contract as the DynamoDB repository
(tests/unit/test_webhook_repository_contract.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from chalicelib.domain.errors import InvalidRequest, VersionConflict
from chalicelib.domain.users import AuditEvent
from chalicelib.domain.webhooks import (
    MAX_ENDPOINTS_PER_FACILITY,
    TOO_MANY_ENDPOINTS,
    DeliveryStatus,
    EndpointStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


@dataclass
class _Stored:
    delivery: WebhookDelivery
    claimed_until: int = 0
    lease: str | None = None


class MemoryWebhookRepository:
    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, str], WebhookEndpoint] = {}
        self.events: dict[str, WebhookEvent] = {}  # the outbox
        self.deliveries: dict[str, _Stored] = {}
        self.fan_out_tries: dict[str, int] = {}
        self.parked: dict[str, WebhookEvent] = {}
        self.audit: list[AuditEvent] = []
        self._lock = threading.Lock()
        self._leases = 0

    def put_event(self, event: WebhookEvent) -> None:
        """What a money write's ``WebhookEvents.event`` side write does."""
        self.events.setdefault(event.id, event)

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(
        self, endpoint: WebhookEndpoint, event: AuditEvent, *, existing: int = 0
    ) -> None:
        with self._lock:
            if (endpoint.facility_id, endpoint.id) in self.endpoints:
                raise VersionConflict("endpoint id taken")
            if len(self.endpoints_of(endpoint.facility_id)) >= MAX_ENDPOINTS_PER_FACILITY:
                raise InvalidRequest(TOO_MANY_ENDPOINTS)
            self.endpoints[(endpoint.facility_id, endpoint.id)] = endpoint
            self.audit.append(event)

    def endpoints_of(self, facility_id: str) -> list[WebhookEndpoint]:
        found = [e for (f, _), e in self.endpoints.items() if f == facility_id]
        return sorted(found, key=lambda e: (e.created_at, e.id), reverse=True)

    def endpoint(self, facility_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        return self.endpoints.get((facility_id, endpoint_id))

    def disable_endpoint(self, endpoint: WebhookEndpoint, event: AuditEvent) -> None:
        with self._lock:
            stored = self.endpoints.get((endpoint.facility_id, endpoint.id))
            if stored is None or stored.status is not EndpointStatus.ENABLED:
                raise VersionConflict("the endpoint is not enabled")
            self.endpoints[(endpoint.facility_id, endpoint.id)] = replace(
                stored,
                status=endpoint.status,
                disabled_at=endpoint.disabled_at,
                disabled_reason=endpoint.disabled_reason,
            )
            self.audit.append(event)

    def endpoint_failed(self, endpoint: WebhookEndpoint, at: str) -> WebhookEndpoint | None:
        with self._lock:
            key = (endpoint.facility_id, endpoint.id)
            stored = self.endpoints.get(key)
            if stored is None:
                return None
            if stored.failing_since is None:
                stored = self.endpoints[key] = replace(stored, failing_since=at)
            return stored

    def endpoint_succeeded(self, endpoint: WebhookEndpoint, started_at: str) -> None:
        with self._lock:
            key = (endpoint.facility_id, endpoint.id)
            stored = self.endpoints.get(key)
            failing_since = stored.failing_since if stored is not None else None
            if stored is not None and failing_since is not None and failing_since <= started_at:
                self.endpoints[key] = replace(stored, failing_since=None)

    # -- the outbox's events ------------------------------------------------------------------
    def waiting_events(self, limit: int) -> list[WebhookEvent]:
        return sorted(self.events.values(), key=lambda e: e.created_at)[:limit]

    def fan_out(self, event: WebhookEvent, deliveries: list[WebhookDelivery]) -> bool:
        with self._lock:
            if event.id not in self.events or any(d.id in self.deliveries for d in deliveries):
                if all(d.id in self.deliveries for d in deliveries):
                    self.events.pop(event.id, None)
                return False
            for delivery in deliveries:
                self.deliveries[delivery.id] = _Stored(delivery)
            del self.events[event.id]
            return True

    def fan_out_failed(self, event: WebhookEvent) -> int:
        with self._lock:
            if event.id not in self.events:
                return 0
            self.fan_out_tries[event.id] = self.fan_out_tries.get(event.id, 0) + 1
            return self.fan_out_tries[event.id]

    def park_event(self, event: WebhookEvent, at: str) -> bool:
        with self._lock:
            waiting = self.events.pop(event.id, None)
            if waiting is None:
                return False
            self.parked[event.id] = waiting
            return True

    def parked_events(self) -> list[WebhookEvent]:
        return sorted(self.parked.values(), key=lambda e: e.created_at)

    # -- deliveries ---------------------------------------------------------------------------
    def due(self, now: str, limit: int) -> list[str]:
        found = [
            (s.delivery.next_attempt_at, s.delivery.id)
            for s in self.deliveries.values()
            if s.delivery.next_attempt_at is not None and s.delivery.next_attempt_at <= now
        ]
        return [delivery_id for _, delivery_id in sorted(found)[:limit]]

    def delivery(self, delivery_id: str) -> WebhookDelivery | None:
        stored = self.deliveries.get(delivery_id)
        return stored.delivery if stored else None

    def claim(
        self, delivery_id: str, now: int, until: int, *, due_at: str | None
    ) -> tuple[WebhookDelivery, str] | None:
        with self._lock:
            stored = self.deliveries.get(delivery_id)
            if stored is None or stored.claimed_until >= now:
                return None
            if due_at is not None and (
                stored.delivery.status is not DeliveryStatus.PENDING
                or stored.delivery.next_attempt_at is None
                or stored.delivery.next_attempt_at > due_at
            ):
                return None
            self._leases += 1
            stored.claimed_until, stored.lease = until, f"lease-{self._leases}"
            return stored.delivery, stored.lease

    def record(
        self, delivery: WebhookDelivery, token: str, now: int, *, keep_lease: bool = False
    ) -> bool:
        with self._lock:
            stored = self.deliveries.get(delivery.id)
            if stored is None or stored.lease != token:
                return False
            if keep_lease:
                self.deliveries[delivery.id] = _Stored(delivery, stored.claimed_until, token)
            else:
                self.deliveries[delivery.id] = _Stored(delivery)
            return True

    def deliveries_of(
        self, facility_id: str, endpoint_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        found = sorted(
            (
                s.delivery
                for s in self.deliveries.values()
                if s.delivery.facility_id == facility_id
                and (endpoint_id is None or s.delivery.endpoint_id == endpoint_id)
            ),
            key=lambda d: (d.created_at, d.id),
            reverse=True,
        )
        if cursor is not None:
            if not cursor.startswith("after:"):
                raise ValueError("invalid cursor")
            after = tuple(cursor[len("after:") :].split("|", 1))
            found = [d for d in found if (d.created_at, d.id) < after]
        page = found[:limit]
        more = len(found) > limit
        return page, (f"after:{page[-1].created_at}|{page[-1].id}" if more else None)
