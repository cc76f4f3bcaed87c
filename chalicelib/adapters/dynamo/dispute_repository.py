"""Disputes of card deposits in DynamoDB: their item (``DISPUTE#<Stripe dispute id>`` /
``DISPUTE``), its mapping, and the conditions that enforce again what ``domain/disputes.py``
checks: a dispute opens once (``attribute_not_exists``) and closes once (``status = open``).
Implements ``services.disputes.DisputeRepository``."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.deposit_repository import write_together
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import DisputeItem
from chalicelib.domain.disputes import Dispute, DisputeStatus
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.users import AuditEvent


def _item(dispute: Dispute) -> DisputeItem:
    return DisputeItem(
        keys.dispute_pk(dispute.id),
        keys.DISPUTE_SK,
        item_type=DisputeItem.ITEM_TYPE,
        dispute_id=dispute.id,
        deposit_id=dispute.deposit_id,
        user_id=dispute.user_id,
        payment_intent_id=dispute.payment_intent_id,
        amount=dispute.amount,
        held_amount=dispute.held_amount,
        currency=dispute.currency,
        status=dispute.status.value,
        transaction_id=dispute.transaction_id,
        created_at=dispute.created_at,
    )


def _dispute(item: DisputeItem) -> Dispute:
    return Dispute(
        id=item.dispute_id,
        deposit_id=item.deposit_id,
        user_id=item.user_id,
        payment_intent_id=item.payment_intent_id,
        amount=int(item.amount),
        held_amount=int(item.held_amount),
        currency=item.currency,
        status=DisputeStatus(item.status),
        transaction_id=item.transaction_id,
        created_at=item.created_at,
        closed_at=item.closed_at,
    )


class DynamoDisputeRepository:
    """``services.disputes.DisputeRepository`` on the ledger table."""

    def get(self, dispute_id: str) -> Dispute | None:
        try:
            item = DisputeItem.get(
                keys.dispute_pk(dispute_id), keys.DISPUTE_SK, consistent_read=True
            )
        except DisputeItem.DoesNotExist:
            return None
        return _dispute(item)

    def write(self, writes: Sequence[ExtraWrite]) -> None:
        write_together(writes)

    # -- side writes --------------------------------------------------------------------------
    def add(self, dispute: Dispute) -> ExtraWrite:
        """A new dispute; InvalidState if it exists."""
        return ExtraWrite(
            _item(dispute), DisputeItem.PK.does_not_exist(), InvalidState("dispute exists")
        )

    def close(self, dispute: Dispute) -> ExtraWrite:
        """The dispute as ``Dispute.closed`` left it; InvalidState unless it is still open."""
        return ExtraWrite(
            DisputeItem(keys.dispute_pk(dispute.id), keys.DISPUTE_SK),
            DisputeItem.status == DisputeStatus.OPEN.value,
            InvalidState(f"dispute {dispute.id} is closed"),
            [
                DisputeItem.status.set(dispute.status.value),
                DisputeItem.closed_at.set(str(dispute.closed_at)),
            ],
        )

    def audit(self, event: AuditEvent) -> ExtraWrite:
        return audit_entry(event)
