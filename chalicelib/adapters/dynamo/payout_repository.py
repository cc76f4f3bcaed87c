"""Payout requests in DynamoDB: the item ``PAYOUT#<withdrawal id>``, in the "still to send" index
(GSI2 ``PAYOUTS#requested`` / ``<requested_at>#<withdrawal id>``) while it is ``requested``, its
keys and the conditions of its writes. Implements ``services.payouts.PayoutRepository``.

Every change after the request is written is conditional on ``status = requested`` (the gateway's
webhook may have settled it meanwhile, which also took it out of the index), except the
settlement itself, written with the withdrawal's settlement and its money.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import PayoutItem
from chalicelib.adapters.dynamo.transact import condition_failed
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.payouts import PayoutRequest, PayoutStatus

_REQUESTED = PayoutStatus.REQUESTED.value


def _key(withdrawal_id: str) -> PayoutItem:
    return PayoutItem(keys.payout_pk(withdrawal_id), keys.PAYOUT_SK)


def _item(payout: PayoutRequest) -> PayoutItem:
    return PayoutItem(
        keys.payout_pk(payout.withdrawal_id),
        keys.PAYOUT_SK,
        item_type=PayoutItem.ITEM_TYPE,
        withdrawal_id=payout.withdrawal_id,
        currency=payout.currency,
        amount=payout.amount,
        destination=payout.destination,
        status=payout.status.value,
        requested_at=payout.requested_at,
        # In the "still to send" index until handed over: the retry finds it there.
        GSI2PK=keys.PAYOUTS_REQUESTED_GSI_PK,
        GSI2SK=keys.payouts_requested_gsi_sk(payout.requested_at, payout.withdrawal_id),
    )


def _payout(item: PayoutItem) -> PayoutRequest:
    return PayoutRequest(
        withdrawal_id=item.withdrawal_id,
        currency=item.currency,
        amount=int(item.amount),
        destination=item.destination,
        status=PayoutStatus(item.status),
        requested_at=item.requested_at,
        sent_at=item.sent_at,
        claimed_until=int(item.claimed_until) if item.claimed_until is not None else None,
        failed_attempts=int(item.failed_attempts or 0),
    )


def _leave_index() -> list[Any]:
    """Update actions that take a payout request out of the "still to send" index."""
    return [
        PayoutItem.GSI2PK.remove(),
        PayoutItem.GSI2SK.remove(),
        PayoutItem.claimed_until.remove(),
    ]


class DynamoPayoutRepository:
    """``services.payouts.PayoutRepository`` on the ledger table."""

    def get(self, withdrawal_id: str) -> PayoutRequest | None:
        try:
            item = PayoutItem.get(
                keys.payout_pk(withdrawal_id), keys.PAYOUT_SK, consistent_read=True
            )
        except PayoutItem.DoesNotExist:
            return None
        return _payout(item)

    def requested_write(self, payout: PayoutRequest) -> ExtraWrite:
        """The new request, in the "still to send" index, once per withdrawal."""
        return ExtraWrite(
            model=_item(payout),
            condition=PayoutItem.PK.does_not_exist(),
            error=InvalidState("payout already requested"),
        )

    def settled_write(self, withdrawal_id: str, status: PayoutStatus) -> ExtraWrite:
        """The request ``completed`` or ``failed`` and out of the index (the retry must not send
        it), to write with the withdrawal's settlement."""
        return ExtraWrite(
            model=_key(withdrawal_id),
            condition=PayoutItem.PK.exists(),
            error=InvalidState(f"withdrawal {withdrawal_id} has no payout request"),
            actions=[PayoutItem.status.set(status.value), *_leave_index()],
        )

    def claim(self, withdrawal_id: str, now: int, until: int) -> bool:
        """Take the claim on a request still to send until ``until``, unless a claim is live at
        ``now``; False if another sender holds it or it is no longer requested."""
        free = PayoutItem.claimed_until.does_not_exist() | (PayoutItem.claimed_until < now)
        return self._update(
            withdrawal_id,
            [PayoutItem.claimed_until.set(until)],
            (PayoutItem.status == _REQUESTED) & free,
        )

    def mark_sent(self, withdrawal_id: str, at: str) -> bool:
        """The gateway has it: ``sent`` and out of the index, if still requested."""
        actions = [PayoutItem.status.set(PayoutStatus.SENT.value), PayoutItem.sent_at.set(at)]
        return self._update(
            withdrawal_id, [*actions, *_leave_index()], PayoutItem.status == _REQUESTED
        )

    def hand_off_failed(self, withdrawal_id: str, at: str) -> bool:
        """The gateway failed: release the claim, count the attempt, and move the request to the
        back of the queue (``at``), if still requested."""
        return self._update(
            withdrawal_id,
            [
                PayoutItem.claimed_until.remove(),
                PayoutItem.failed_attempts.add(1),
                PayoutItem.GSI2SK.set(keys.payouts_requested_gsi_sk(at, withdrawal_id)),
            ],
            PayoutItem.status == _REQUESTED,
        )

    def forget(self, withdrawal_id: str) -> bool:
        """Take a request that is not owed out of the index, if still requested."""
        return self._update(withdrawal_id, _leave_index(), PayoutItem.status == _REQUESTED)

    def requested(self, limit: int) -> list[str]:
        """Withdrawal ids of requests still to send, oldest first, from the index (eventually
        consistent: read each one again before acting)."""
        results = PayoutItem.requested_index.query(
            keys.PAYOUTS_REQUESTED_GSI_PK, scan_index_forward=True, limit=limit, page_size=limit
        )
        return [item.withdrawal_id for item in results]

    @staticmethod
    def _update(withdrawal_id: str, actions: list[Any], condition: Any) -> bool:
        try:
            _key(withdrawal_id).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
