"""Refunds of card deposits in DynamoDB: their item (``REFUND#<id>`` / ``REFUND``), its mapping,
the queue of refunds still pending (GSI2 ``REFUNDS#pending``, removed when a refund finishes),
and the conditions that enforce again what ``domain/refunds.py`` checks: a refund is created
once (``attribute_not_exists``), finishes once (``status = pending``) and fails after success
once (``status = succeeded``). Implements ``services.refunds.RefundRepository``."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import UpdateError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.deposit_repository import write_together
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import RefundItem
from chalicelib.adapters.dynamo.transact import condition_failed
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.refunds import Refund, RefundStatus
from chalicelib.domain.users import AuditEvent


def _key(refund_id: str) -> RefundItem:
    return RefundItem(keys.refund_pk(refund_id), keys.REFUND_SK)


def _item(refund: Refund) -> RefundItem:
    return RefundItem(
        keys.refund_pk(refund.id),
        keys.REFUND_SK,
        item_type=RefundItem.ITEM_TYPE,
        refund_id=refund.id,
        deposit_id=refund.deposit_id,
        user_id=refund.user_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status.value,
        reason=refund.reason,
        requested_by=refund.requested_by,
        transaction_id=refund.transaction_id,
        payment_intent_id=refund.payment_intent_id,
        created_at=refund.created_at,
        GSI2PK=keys.PENDING_REFUNDS_GSI_PK,
        GSI2SK=keys.pending_refunds_gsi_sk(refund.created_at, refund.id),
    )


def _refund(item: RefundItem) -> Refund:
    return Refund(
        id=item.refund_id,
        deposit_id=item.deposit_id,
        user_id=item.user_id,
        amount=int(item.amount),
        currency=item.currency,
        status=RefundStatus(item.status),
        reason=item.reason,
        requested_by=item.requested_by,
        transaction_id=item.transaction_id,
        payment_intent_id=item.payment_intent_id,
        created_at=item.created_at,
        stripe_refund_id=item.stripe_refund_id,
        failure_reason=item.failure_reason,
        updated_at=item.updated_at,
    )


class DynamoRefundRepository:
    """``services.refunds.RefundRepository`` on the ledger table."""

    def get(self, refund_id: str) -> Refund | None:
        try:
            item = RefundItem.get(keys.refund_pk(refund_id), keys.REFUND_SK, consistent_read=True)
        except RefundItem.DoesNotExist:
            return None
        return _refund(item)

    def pending(self, limit: int) -> list[str]:
        """Ids of refunds still pending, oldest first (GSI2: eventually consistent)."""
        results = RefundItem.pending_index.query(
            keys.PENDING_REFUNDS_GSI_PK, scan_index_forward=True, limit=limit, page_size=limit
        )
        return [item.refund_id for item in results]

    def to_the_back(self, refund_id: str, at: str) -> None:
        """Re-queue a refund behind the others, only while it is pending (a finished refund has
        left the index and must not come back)."""
        try:
            _key(refund_id).update(
                actions=[RefundItem.GSI2SK.set(keys.pending_refunds_gsi_sk(at, refund_id))],
                condition=RefundItem.status == RefundStatus.PENDING.value,
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise

    def remember_stripe_refund(self, refund_id: str, stripe_refund_id: str) -> None:
        """Record the Stripe refund, unless another one is recorded already."""
        try:
            _key(refund_id).update(
                actions=[RefundItem.stripe_refund_id.set(stripe_refund_id)],
                condition=RefundItem.stripe_refund_id.does_not_exist()
                | (RefundItem.stripe_refund_id == stripe_refund_id),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise

    def write(self, writes: Sequence[ExtraWrite]) -> None:
        write_together(writes)

    # -- side writes --------------------------------------------------------------------------
    def add(self, refund: Refund) -> ExtraWrite:
        """A new pending refund, in the pending queue; InvalidState if the id is taken."""
        return ExtraWrite(
            _item(refund), RefundItem.PK.does_not_exist(), InvalidState("refund id taken")
        )

    def finish(self, refund: Refund) -> ExtraWrite:
        """The refund as ``Refund.finished`` left it, out of the pending queue; InvalidState
        unless it is still pending."""
        actions = [
            RefundItem.status.set(refund.status.value),
            RefundItem.updated_at.set(str(refund.updated_at)),
            RefundItem.GSI2PK.remove(),
            RefundItem.GSI2SK.remove(),
        ]
        if refund.stripe_refund_id is not None:
            actions.append(RefundItem.stripe_refund_id.set(refund.stripe_refund_id))
        if refund.failure_reason is not None:
            actions.append(RefundItem.failure_reason.set(refund.failure_reason))
        return ExtraWrite(
            _key(refund.id),
            RefundItem.status == RefundStatus.PENDING.value,
            InvalidState(f"refund {refund.id} is finished"),
            actions,
        )

    def fail_after_success(self, refund: Refund) -> ExtraWrite:
        """The refund as ``Refund.failed_after_success`` left it; InvalidState unless it is
        still ``succeeded``."""
        return ExtraWrite(
            _key(refund.id),
            RefundItem.status == RefundStatus.SUCCEEDED.value,
            InvalidState(f"refund {refund.id} is not succeeded"),
            [
                RefundItem.status.set(refund.status.value),
                RefundItem.failure_reason.set(str(refund.failure_reason)),
                RefundItem.updated_at.set(str(refund.updated_at)),
            ],
        )

    def audit(self, event: AuditEvent) -> ExtraWrite:
        return audit_entry(event)
