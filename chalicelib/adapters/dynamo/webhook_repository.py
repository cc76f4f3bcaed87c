"""Outbound webhook events on the table (``domain/webhooks.py``).

``event`` turns an event into one more item of the write that moves its money (an outbox): the
event exists exactly when the money moved. Its key is derived from the event id, and the put
never overwrites, so a replayed operation cannot write its event twice.

``DynamoWebhookRepository`` (``services.webhooks.WebhookRepository``) keeps the rest:

- endpoints, one partition per facility (``WHEP#<facility>``), created and disabled each with its
  audit event in one write (disabling on condition ``status = enabled``);
- fan-out: an event's deliveries (``attribute_not_exists``, ids derived from event and endpoint)
  and the removal of the event item in **one** ``TransactWriteItems``: a second run racing for the
  same event is refused whole, so one event never gives one endpoint two deliveries;
- deliveries are due through GSI1 (present only while pending), claimed with a conditional
  lease (``claimed_until < now``, a fresh token), and their outcome recorded only by the
  lease's holder (``lease = token``): two workers never send one delivery at once.
"""

from __future__ import annotations

import json
import uuid

from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError

from chalicelib.adapters.clock import parse_iso
from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import (
    LedgerItem,
    OutboundEventItem,
    WebhookDeliveryItem,
    WebhookEndpointCountItem,
    WebhookEndpointItem,
)
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
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
    WebhookEventType,
)

# Events wait at most this long to be fanned out to endpoints; deliveries keep their own copy.
KEEP_SECONDS = 4 * 24 * 3600


def event_item(event: WebhookEvent) -> OutboundEventItem:
    item = OutboundEventItem(
        keys.webhook_event_pk(keys.webhook_event_shard(event.id)),
        keys.webhook_event_sk(event.created_at, event.id),
    )
    item.item_type = OutboundEventItem.ITEM_TYPE
    item.event_id = event.id
    item.event_type = str(event.type)
    item.facility_id = event.facility_id
    item.created_at = event.created_at
    item.data = json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True)
    item.claimed_until = 0
    item.expires_at = int(parse_iso(event.created_at).timestamp()) + KEEP_SECONDS
    return item


def event_of(item: OutboundEventItem) -> WebhookEvent:
    return WebhookEvent(
        id=item.event_id,
        type=WebhookEventType(item.event_type),
        facility_id=item.facility_id,
        created_at=item.created_at,
        data=json.loads(item.data),
    )


class DynamoWebhookEvents:
    @staticmethod
    def event(event: WebhookEvent) -> ExtraWrite:
        """The event as one more item of the write of the money it reports."""
        return ExtraWrite(
            event_item(event),
            OutboundEventItem.PK.does_not_exist(),
            VersionConflict(f"webhook event {event.id} exists"),
        )


# -- endpoints and deliveries (``services.webhooks.WebhookRepository``) ---------------------------
# Events still waiting are read this many per shard and run; deliveries ended are kept this long.
DELIVERY_KEEP_SECONDS = 30 * 24 * 3600
# A parked event (its fan-out failed MAX_FAN_OUT_TRIES times) is kept this long to be read.
PARKED_KEEP_SECONDS = 30 * 24 * 3600
# DynamoDB's limits of one TransactWriteItems (100 items, 4 MB), with a margin for the request.
MAX_TRANSACT_ITEMS = 100
MAX_TRANSACT_BYTES = 3 * 1024 * 1024


def _endpoint_item(endpoint: WebhookEndpoint) -> WebhookEndpointItem:
    return WebhookEndpointItem(
        keys.webhook_endpoint_pk(endpoint.facility_id),
        keys.webhook_endpoint_sk(endpoint.id),
        item_type=WebhookEndpointItem.ITEM_TYPE,
        endpoint_id=endpoint.id,
        facility_id=endpoint.facility_id,
        url=endpoint.url,
        events=[str(t) for t in endpoint.events],
        status=str(endpoint.status),
        created_at=endpoint.created_at,
        secret_nonce=endpoint.secret_nonce,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
    )


def _endpoint(item: WebhookEndpointItem) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=item.endpoint_id,
        facility_id=item.facility_id,
        url=item.url,
        events=tuple(WebhookEventType(t) for t in item.events),
        status=EndpointStatus(item.status),
        created_at=item.created_at,
        secret_nonce=item.secret_nonce,
        disabled_at=item.disabled_at,
        disabled_reason=item.disabled_reason,
        failing_since=item.failing_since,
    )


def _delivery_key(delivery_id: str) -> WebhookDeliveryItem:
    return WebhookDeliveryItem(keys.webhook_delivery_pk(delivery_id), keys.WEBHOOK_DELIVERY_SK)


def _delivery_item(delivery: WebhookDelivery) -> WebhookDeliveryItem:
    item = _delivery_key(delivery.id)
    item.item_type = WebhookDeliveryItem.ITEM_TYPE
    item.GSI2PK = keys.webhook_deliveries_gsi_pk(delivery.facility_id)
    item.GSI2SK = keys.webhook_deliveries_gsi_sk(delivery.created_at, delivery.id)
    if delivery.next_attempt_at is not None:
        item.GSI1PK = keys.webhook_due_pk(delivery.id)
        item.GSI1SK = keys.webhook_due_sk(delivery.next_attempt_at, delivery.id)
    item.delivery_id = delivery.id
    item.facility_id = delivery.facility_id
    item.endpoint_id = delivery.endpoint_id
    item.event_id = delivery.event.id
    item.event_type = str(delivery.event.type)
    item.event_created_at = delivery.event.created_at
    item.data = json.dumps(dict(delivery.event.data), separators=(",", ":"), sort_keys=True)
    item.status = str(delivery.status)
    item.attempts = delivery.attempts
    item.created_at = delivery.created_at
    item.next_attempt_at = delivery.next_attempt_at
    item.claimed_until = 0
    return item


def _delivery(item: WebhookDeliveryItem) -> WebhookDelivery:
    code = item.last_status_code
    return WebhookDelivery(
        id=item.delivery_id,
        event=WebhookEvent(
            id=item.event_id,
            type=WebhookEventType(item.event_type),
            facility_id=item.facility_id,
            created_at=item.event_created_at,
            data=json.loads(item.data),
        ),
        endpoint_id=item.endpoint_id,
        status=DeliveryStatus(item.status),
        attempts=int(item.attempts or 0),
        created_at=item.created_at,
        next_attempt_at=item.next_attempt_at,
        last_status_code=int(code) if code is not None else None,
        last_error=item.last_error,
        first_attempt_at=item.first_attempt_at,
        last_attempt_at=item.last_attempt_at,
    )


def _event_key(event: WebhookEvent) -> OutboundEventItem:
    return OutboundEventItem(
        keys.webhook_event_pk(keys.webhook_event_shard(event.id)),
        keys.webhook_event_sk(event.created_at, event.id),
    )


def _item_bytes(item: WebhookDeliveryItem) -> int:
    """An upper bound of the item's size in a request (its attributes as JSON)."""
    return len(json.dumps(item.serialize(), separators=(",", ":")).encode())


def _cancelled_by_condition(exc: TransactWriteError) -> bool:
    reasons = [r for r in exc.cancellation_reasons or [] if r is not None]
    return any(r.code in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons)


class DynamoWebhookRepository:
    """Webhook endpoints, the outbox's events and the deliveries made of them, on the table."""

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(
        self, endpoint: WebhookEndpoint, event: AuditEvent, *, existing: int = 0
    ) -> None:
        """The endpoint, its audit event and the facility's endpoint count + 1 in one write, on
        condition the count is under ``MAX_ENDPOINTS_PER_FACILITY`` (so racing creations never
        pass the cap). ``existing``: the endpoints the caller read, the count's start for a
        facility whose endpoints predate the count. Disabling does not lower the count.

        Raises:
            VersionConflict: the id is taken; nothing is written.
            InvalidRequest: the facility has its ``MAX_ENDPOINTS_PER_FACILITY``; nothing written.
        """
        counter = WebhookEndpointCountItem(
            keys.webhook_endpoint_pk(endpoint.facility_id), keys.WEBHOOK_ENDPOINT_COUNT_SK
        )
        count = WebhookEndpointCountItem.count
        write = AtomicWrite()
        write.put(
            _endpoint_item(endpoint),
            WebhookEndpointItem.PK.does_not_exist(),
            VersionConflict("endpoint id taken"),
        )
        under_cap = count < MAX_ENDPOINTS_PER_FACILITY
        if existing < MAX_ENDPOINTS_PER_FACILITY:  # no count yet: it starts at ``existing``
            under_cap = under_cap | count.does_not_exist()
        write.update(
            counter,
            [
                count.set((count | existing) + 1),
                WebhookEndpointCountItem.item_type.set(WebhookEndpointCountItem.ITEM_TYPE),
            ],
            under_cap,
            InvalidRequest(TOO_MANY_ENDPOINTS),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def endpoints_of(self, facility_id: str) -> list[WebhookEndpoint]:
        """The facility's endpoints, newest first (one partition, strongly consistent)."""
        found = [
            _endpoint(item)
            for item in WebhookEndpointItem.query(
                keys.webhook_endpoint_pk(facility_id),
                WebhookEndpointItem.SK.startswith(keys.WEBHOOK_ENDPOINT_PREFIX),
                consistent_read=True,
            )
        ]
        return sorted(found, key=lambda e: (e.created_at, e.id), reverse=True)

    def endpoint(self, facility_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        """The facility's endpoint with this id (another facility's is not found)."""
        try:
            item = WebhookEndpointItem.get(
                keys.webhook_endpoint_pk(facility_id),
                keys.webhook_endpoint_sk(endpoint_id),
                consistent_read=True,
            )
        except WebhookEndpointItem.DoesNotExist:
            return None
        return _endpoint(item)

    def disable_endpoint(self, endpoint: WebhookEndpoint, event: AuditEvent) -> None:
        """Store ``endpoint`` (disabled) and the audit event in one write, if it is enabled.

        Raises:
            VersionConflict: the stored endpoint is not (or no longer) enabled; nothing written.
        """
        write = AtomicWrite()
        write.update(
            _endpoint_item(endpoint),
            [
                WebhookEndpointItem.status.set(str(endpoint.status)),
                WebhookEndpointItem.disabled_at.set(endpoint.disabled_at),
                WebhookEndpointItem.disabled_reason.set(endpoint.disabled_reason),
            ],
            WebhookEndpointItem.status == str(EndpointStatus.ENABLED),
            VersionConflict("the endpoint is not enabled"),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def endpoint_failed(self, endpoint: WebhookEndpoint, at: str) -> WebhookEndpoint | None:
        """Note a failed attempt: ``failing_since`` is set unless it is already; the endpoint as
        stored now (None if it is gone)."""
        item = WebhookEndpointItem(
            keys.webhook_endpoint_pk(endpoint.facility_id), keys.webhook_endpoint_sk(endpoint.id)
        )
        try:
            item.update(
                actions=[
                    WebhookEndpointItem.failing_since.set(
                        WebhookEndpointItem.failing_since | at  # if_not_exists
                    )
                ],
                condition=WebhookEndpointItem.PK.exists(),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return None
            raise
        return _endpoint(item)

    def endpoint_succeeded(self, endpoint: WebhookEndpoint, started_at: str) -> None:
        """A success of an attempt started at ``started_at``: the endpoint is no longer failing,
        if it has been failing since then or before (whatever the attempt read; a failure
        stored after the attempt started is kept)."""
        item = WebhookEndpointItem(
            keys.webhook_endpoint_pk(endpoint.facility_id), keys.webhook_endpoint_sk(endpoint.id)
        )
        try:
            item.update(
                actions=[WebhookEndpointItem.failing_since.remove()],
                condition=WebhookEndpointItem.PK.exists()
                & (WebhookEndpointItem.failing_since <= started_at),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise

    # -- the outbox's events ------------------------------------------------------------------
    def waiting_events(self, limit: int) -> list[WebhookEvent]:
        """Events not fanned out yet, oldest first per shard, at most ``limit``."""
        found: list[WebhookEvent] = []
        for shard in range(keys.WEBHOOK_EVENT_SHARDS):
            for item in OutboundEventItem.query(
                keys.webhook_event_pk(shard), consistent_read=True, limit=limit
            ):
                found.append(event_of(item))
        return sorted(found, key=lambda e: e.created_at)[:limit]

    def fan_out(self, event: WebhookEvent, deliveries: list[WebhookDelivery]) -> bool:
        """The event's deliveries (none may exist yet) and the event's removal. False when
        another run fanned it out first (an event whose deliveries all exist already is removed).

        Deliveries that fit one transaction (``MAX_TRANSACT_ITEMS`` items and
        ``MAX_TRANSACT_BYTES``) are written with the removal in one ``TransactWriteItems``. Larger
        ones (a big event to many endpoints: each delivery carries the event's data) are put one
        by one, each on condition that it does not exist (its id is derived from event and
        endpoint, so a put repeated or raced writes no second one), and the event is removed
        only after every put succeeded: a failure half-way leaves the event waiting, and the next
        run puts the missing deliveries only."""
        items = [_delivery_item(d) for d in deliveries]
        key = _event_key(event)
        if not items:  # no endpoint wants it: one conditional delete, no transaction
            try:
                key.delete(condition=OutboundEventItem.PK.exists())
            except DeleteError as exc:
                if condition_failed(exc):
                    return False
                raise
            return True
        size = sum(_item_bytes(item) for item in items)
        if len(items) + 1 > MAX_TRANSACT_ITEMS or size > MAX_TRANSACT_BYTES:
            return self._fan_out_one_by_one(key, items)
        puts = [
            item.get_save_kwargs_from_instance(condition=WebhookDeliveryItem.PK.does_not_exist())
            for item in items
        ]
        delete = key.get_delete_kwargs_from_instance(condition=OutboundEventItem.PK.exists())
        try:
            LedgerItem._get_connection().connection.transact_write_items(
                condition_check_items=[],
                delete_items=[delete],
                put_items=puts,
                update_items=[],
                client_request_token=str(uuid.uuid4()),
            )
        except TransactWriteError as exc:
            if not _cancelled_by_condition(exc):
                raise
            # Another run fanned it out (the event is gone), or the event was written again
            # after its deliveries were: once every delivery exists, the event has no more use.
            if all(self.delivery(d.id) is not None for d in deliveries):
                key.delete()
            return False
        return True

    @staticmethod
    def _fan_out_one_by_one(key: OutboundEventItem, items: list[WebhookDeliveryItem]) -> bool:
        written = 0
        for item in items:
            try:
                item.save(condition=WebhookDeliveryItem.PK.does_not_exist())
                written += 1
            except PutError as exc:
                if not condition_failed(exc):
                    raise  # the event stays: the next run puts what is missing
        try:
            key.delete(condition=OutboundEventItem.PK.exists())
        except DeleteError as exc:
            if condition_failed(exc):
                return False  # another run removed it (between them, one delivery each)
            raise
        return written > 0 or not items  # False: every delivery existed (written elsewhere)

    def fan_out_failed(self, event: WebhookEvent) -> int:
        """Count a failed fan-out of the waiting event; the failures so far (0: it is gone)."""
        key = _event_key(event)
        try:
            key.update(
                actions=[OutboundEventItem.fan_out_tries.add(1)],
                condition=OutboundEventItem.PK.exists(),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return 0
            raise
        return int(key.fan_out_tries or 0)

    def park_event(self, event: WebhookEvent, at: str) -> bool:
        """Move the waiting event out of the outbox (it is no longer fanned out) to the parked
        events, kept ``PARKED_KEEP_SECONDS`` to be read; False if it is no longer waiting."""
        key = _event_key(event)
        parked = event_item(event)
        parked.PK = keys.WEBHOOK_PARKED_EVENT_PK
        parked.parked_at = at
        parked.expires_at = int(parse_iso(at).timestamp()) + PARKED_KEEP_SECONDS
        try:
            LedgerItem._get_connection().connection.transact_write_items(
                condition_check_items=[],
                delete_items=[
                    key.get_delete_kwargs_from_instance(condition=OutboundEventItem.PK.exists())
                ],
                put_items=[parked.get_save_kwargs_from_instance()],
                update_items=[],
                client_request_token=str(uuid.uuid4()),
            )
        except TransactWriteError as exc:
            if _cancelled_by_condition(exc):
                return False
            raise
        return True

    def parked_events(self) -> list[WebhookEvent]:
        """The parked events, oldest first."""
        return [
            event_of(item)
            for item in OutboundEventItem.query(keys.WEBHOOK_PARKED_EVENT_PK, consistent_read=True)
        ]

    # -- deliveries ---------------------------------------------------------------------------
    def due(self, now: str, limit: int) -> list[str]:
        """Ids of pending deliveries due at ``now`` (GSI1, eventually consistent: a claim checks
        again), the longest waiting first per shard."""
        found: list[tuple[str, str]] = []
        for pk in keys.webhook_due_pks():
            for item in WebhookDeliveryItem.due_index.query(
                pk,
                WebhookDeliveryItem.GSI1SK <= keys.webhook_due_until(now),  # noqa: SIM300
                limit=limit,
            ):
                found.append((item.GSI1SK or "", keys.webhook_delivery_id_from_pk(item.PK)))
        return [delivery_id for _, delivery_id in sorted(found)[:limit]]

    def delivery(self, delivery_id: str) -> WebhookDelivery | None:
        try:
            item = WebhookDeliveryItem.get(
                keys.webhook_delivery_pk(delivery_id),
                keys.WEBHOOK_DELIVERY_SK,
                consistent_read=True,
            )
        except WebhookDeliveryItem.DoesNotExist:
            return None
        return _delivery(item)

    def claim(
        self, delivery_id: str, now: int, until: int, *, due_at: str | None
    ) -> tuple[WebhookDelivery, str] | None:
        """Lease the delivery until ``until`` (unix seconds) unless someone holds it; with
        ``due_at``, only a pending delivery due by then. The delivery as stored and the lease's
        token, or None (leased elsewhere, not due, gone)."""
        token = uuid.uuid4().hex
        condition = WebhookDeliveryItem.PK.exists() & (WebhookDeliveryItem.claimed_until < now)
        if due_at is not None:
            condition &= WebhookDeliveryItem.status == str(DeliveryStatus.PENDING)
            condition &= WebhookDeliveryItem.next_attempt_at <= due_at
        item = _delivery_key(delivery_id)
        try:
            item.update(
                actions=[
                    WebhookDeliveryItem.claimed_until.set(until),
                    WebhookDeliveryItem.lease.set(token),
                ],
                condition=condition,
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return None
            raise
        return _delivery(item), token

    def record(
        self, delivery: WebhookDelivery, token: str, now: int, *, keep_lease: bool = False
    ) -> bool:
        """Store the delivery (an attempt started, or what it gave) and release the lease unless
        ``keep_lease``, if the lease is still ``token`` (False: it expired and another run took
        the delivery; nothing written)."""
        item = _delivery_key(delivery.id)
        pending = delivery.next_attempt_at is not None
        actions: list = [
            WebhookDeliveryItem.status.set(str(delivery.status)),
            WebhookDeliveryItem.attempts.set(delivery.attempts),
            WebhookDeliveryItem.last_attempt_at.set(delivery.last_attempt_at),
            WebhookDeliveryItem.first_attempt_at.set(delivery.first_attempt_at),
        ]
        if not keep_lease:
            actions += [
                WebhookDeliveryItem.claimed_until.set(0),
                WebhookDeliveryItem.lease.remove(),
            ]
        for attribute, value in (
            (WebhookDeliveryItem.last_status_code, delivery.last_status_code),
            (WebhookDeliveryItem.last_error, delivery.last_error),
            (WebhookDeliveryItem.next_attempt_at, delivery.next_attempt_at),
        ):
            actions.append(attribute.set(value) if value is not None else attribute.remove())
        if pending:
            actions += [
                WebhookDeliveryItem.GSI1PK.set(keys.webhook_due_pk(delivery.id)),
                WebhookDeliveryItem.GSI1SK.set(
                    keys.webhook_due_sk(delivery.next_attempt_at or "", delivery.id)
                ),
                WebhookDeliveryItem.expires_at.remove(),
            ]
        else:
            actions += [
                WebhookDeliveryItem.GSI1PK.remove(),
                WebhookDeliveryItem.GSI1SK.remove(),
                WebhookDeliveryItem.expires_at.set(now + DELIVERY_KEEP_SECONDS),
            ]
        try:
            item.update(actions=actions, condition=WebhookDeliveryItem.lease == token)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def deliveries_of(
        self, facility_id: str, endpoint_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        """Up to ``limit`` of the facility's deliveries newest first (of one endpoint if given),
        after ``cursor``, and the next page's cursor (None on the last page).

        Raises:
            ValueError: a cursor this query did not return.
        """
        pk = keys.webhook_deliveries_gsi_pk(facility_id)
        start = None
        if cursor:
            start = cursors.decode(
                cursor,
                partition={"GSI2PK": pk, "SK": keys.WEBHOOK_DELIVERY_SK},
                ranges={
                    "PK": (keys.WEBHOOK_DELIVERY_PREFIX, keys.WEBHOOK_DELIVERY_PREFIX + "~"),
                    "GSI2SK": ("", "~"),
                },
            )
        results = WebhookDeliveryItem.facility_index.query(
            pk,
            scan_index_forward=False,
            filter_condition=(
                (WebhookDeliveryItem.endpoint_id == endpoint_id) if endpoint_id else None
            ),
            limit=limit,
            last_evaluated_key=start,
        )
        found = [_delivery(item) for item in results]
        last = results.last_evaluated_key
        return found, (cursors.encode(last) if last and len(found) == limit else None)
