"""Adjustments in DynamoDB: their item, its key, and the conditions of their two writes (the
request of one that needs approval; the adjustment written with its money)."""

from __future__ import annotations

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import AdjustmentItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.adjustments import Adjustment, AdjustmentStatus
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.users import AuditEvent


def _item(adjustment: Adjustment) -> AdjustmentItem:
    return AdjustmentItem(
        keys.adjustment_pk(adjustment.id),
        keys.ADJUSTMENT_SK,
        item_type=AdjustmentItem.ITEM_TYPE,
        adjustment_id=adjustment.id,
        account_id=adjustment.account_id,
        currency=adjustment.currency,
        amount=adjustment.amount,
        reason=adjustment.reason,
        status=adjustment.status.value,
        requested_by=adjustment.requested_by,
        requested_at=adjustment.requested_at,
        approved_by=adjustment.approved_by,
        approved_at=adjustment.approved_at,
    )


def _adjustment(item: AdjustmentItem) -> Adjustment:
    return Adjustment(
        id=item.adjustment_id,
        account_id=item.account_id,
        currency=item.currency,
        amount=int(item.amount),
        reason=item.reason,
        status=AdjustmentStatus(item.status),
        requested_by=item.requested_by,
        requested_at=item.requested_at,
        approved_by=item.approved_by,
        approved_at=item.approved_at,
    )


class DynamoAdjustmentRepository:
    def get(self, adjustment_id: str) -> Adjustment | None:
        try:
            item = AdjustmentItem.get(
                keys.adjustment_pk(adjustment_id), keys.ADJUSTMENT_SK, consistent_read=True
            )
        except AdjustmentItem.DoesNotExist:
            return None
        return _adjustment(item)

    def request(self, adjustment: Adjustment, event: AuditEvent) -> None:
        """Store an adjustment waiting for approval, with its audit event, in one write."""
        write = AtomicWrite()
        write.put(
            _item(adjustment),
            AdjustmentItem.PK.does_not_exist(),
            InvalidState(f"adjustment {adjustment.id} exists"),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def posted_writes(self, adjustment: Adjustment, event: AuditEvent) -> list[ExtraWrite]:
        """The adjustment, posted, and its audit event, to write with its money."""
        return [self._posted_write(adjustment), audit_entry(event)]

    def _posted_write(self, adjustment: Adjustment) -> ExtraWrite:
        """A new item for an adjustment that needed no approval, else the approval of one that
        must still be pending (two approvals racing: one writes the money, the other's condition
        fails)."""
        if adjustment.approved_by is None:
            return ExtraWrite(
                _item(adjustment),
                AdjustmentItem.PK.does_not_exist(),
                InvalidState(f"adjustment {adjustment.id} exists"),
            )
        item = AdjustmentItem(keys.adjustment_pk(adjustment.id), keys.ADJUSTMENT_SK)
        return ExtraWrite(
            item,
            AdjustmentItem.status == AdjustmentStatus.PENDING_APPROVAL.value,
            InvalidState(f"adjustment {adjustment.id} is no longer pending approval"),
            actions=[
                AdjustmentItem.status.set(AdjustmentStatus.POSTED.value),
                AdjustmentItem.approved_by.set(adjustment.approved_by),
                AdjustmentItem.approved_at.set(adjustment.approved_at or ""),
            ],
        )
