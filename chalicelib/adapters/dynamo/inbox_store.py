"""The webhook inbox in DynamoDB: one item per provider event (``EVT#<provider>#<event id>``),
written with ``attribute_not_exists`` so that an event applies once (DESIGN.md, guarantee 5).
Implements ``services.inbox.Inbox``."""

from __future__ import annotations

from pynamodb.exceptions import PutError

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import WebhookEventItem
from chalicelib.adapters.dynamo.transact import condition_failed
from chalicelib.domain.errors import WebhookEventSeen
from chalicelib.domain.inbox import DUPLICATE, ProviderEvent


def _item(
    provider: str, event: ProviderEvent, outcome: str, subject: str | None
) -> WebhookEventItem:
    return WebhookEventItem(
        keys.inbox_pk(provider, event.id),
        keys.INBOX_SK,
        item_type=WebhookEventItem.ITEM_TYPE,
        provider=provider,
        event_id=event.id,
        event_type=event.type,
        outcome=outcome,
        subject=subject,
        received_at=now_iso(),
    )


class DynamoInbox:
    """``services.inbox.Inbox`` on the ledger table."""

    def seen(self, provider: str, event_id: str) -> bool:
        try:
            WebhookEventItem.get(
                keys.inbox_pk(provider, event_id), keys.INBOX_SK, consistent_read=True
            )
        except WebhookEventItem.DoesNotExist:
            return False
        return True

    def entry(
        self, provider: str, event: ProviderEvent, outcome: str, subject: str | None
    ) -> ExtraWrite:
        return ExtraWrite(
            model=_item(provider, event, outcome, subject),
            condition=WebhookEventItem.PK.does_not_exist(),
            error=WebhookEventSeen(f"{provider} event {event.id} was recorded before"),
        )

    def record(
        self, provider: str, event: ProviderEvent, outcome: str, subject: str | None = None
    ) -> str:
        try:
            _item(provider, event, outcome, subject).save(
                condition=WebhookEventItem.PK.does_not_exist()
            )
        except PutError as exc:
            if condition_failed(exc):
                return DUPLICATE
            raise
        return outcome
