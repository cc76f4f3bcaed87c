"""Outbound webhook events on the table (``domain/webhooks.py``).

``event`` turns an event into one more item of the write that moves its money (an outbox): the
event exists exactly when the money moved. Its key is derived from the event id, and the put
never overwrites, so a replayed operation cannot write its event twice.
"""

from __future__ import annotations

import json

from chalicelib.adapters.clock import parse_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import OutboundEventItem
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.webhooks import WebhookEvent, WebhookEventType

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
