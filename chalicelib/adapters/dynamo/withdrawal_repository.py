"""Withdrawals in DynamoDB: the withdrawal item (``WITHDRAWAL#<id>``, in the review queue index
GSI2 ``WITHDRAWALS``), the daily limit counter (``WDLIMIT#<user>#<currency>#<day>``), their keys,
and the conditions of every write. Implements ``services.withdrawals.WithdrawalRepository``.

Each transition is an update on the condition that the stored status is still the one the
transition leaves (``pending_review`` for a decision, ``processing`` for a settlement); the writes
that go with the money are returned as side writes for the ledger engine's transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import WithdrawalItem, WithdrawalLimitItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.errors import (
    LedgerError,
    VersionConflict,
    WithdrawalLimitExceeded,
    WithdrawalNotPendingReview,
    WithdrawalNotProcessing,
)
from chalicelib.domain.users import AuditEvent
from chalicelib.domain.withdrawals import Withdrawal, WithdrawalStatus

LIMIT_COUNTER_SECONDS = 3 * 24 * 3600  # a day's total outlives its day (TTL)


def _item(w: Withdrawal) -> WithdrawalItem:
    return WithdrawalItem(
        keys.withdrawal_pk(w.id),
        keys.WITHDRAWAL_SK,
        item_type=WithdrawalItem.ITEM_TYPE,
        GSI2PK=keys.WITHDRAWALS_GSI_PK,
        GSI2SK=keys.withdrawals_gsi_sk(w.created_at, w.id),
        withdrawal_id=w.id,
        user_id=w.user_id,
        currency=w.currency,
        amount=w.amount,
        destination=w.destination,
        status=w.status.value,
        transaction_id=w.transaction_id,
        created_at=w.created_at,
        risk_rule=w.risk_rule,
    )


def _withdrawal(item: WithdrawalItem) -> Withdrawal:
    return Withdrawal(
        id=item.withdrawal_id,
        user_id=item.user_id,
        currency=item.currency,
        amount=int(item.amount),
        destination=item.destination,
        status=WithdrawalStatus(item.status),
        transaction_id=item.transaction_id,
        created_at=item.created_at,
        decided_by=item.decided_by,
        decided_at=item.decided_at,
        reason=item.reason,
        decided_request=item.decided_request,
        risk_rule=item.risk_rule,
    )


def _key(withdrawal_id: str) -> WithdrawalItem:
    return WithdrawalItem(keys.withdrawal_pk(withdrawal_id), keys.WITHDRAWAL_SK)


def _counter(w: Withdrawal) -> WithdrawalLimitItem:
    return WithdrawalLimitItem(
        keys.withdrawal_limit_pk(w.user_id, w.currency, w.day), keys.WITHDRAWAL_LIMIT_SK
    )


def write_together(writes: Sequence[ExtraWrite]) -> None:
    """Write side writes in one TransactWriteItems without money; a failed condition raises the
    error its write names."""
    write = AtomicWrite()
    for side in writes:
        if side.actions is None:
            write.put(side.model, side.condition, side.error)
        else:
            write.update(side.model, side.actions, side.condition, side.error)
    write.send_or_raise_tag()


def _moved(
    w: Withdrawal,
    expected: WithdrawalStatus,
    error: LedgerError,
    actions: list[Any],
    event: AuditEvent | None,
) -> list[ExtraWrite]:
    """``w``'s new state written on condition that it is still ``expected`` (else ``error``),
    and the audit event of the move when it has one."""
    writes = [
        ExtraWrite(
            model=_key(w.id),
            condition=WithdrawalItem.status == expected.value,
            error=error,
            actions=actions,
        )
    ]
    if event is not None:
        writes.append(audit_entry(event))
    return writes


class DynamoWithdrawalRepository:
    """``services.withdrawals.WithdrawalRepository`` on the ledger table."""

    def get(self, withdrawal_id: str) -> Withdrawal | None:
        try:
            item = WithdrawalItem.get(
                keys.withdrawal_pk(withdrawal_id), keys.WITHDRAWAL_SK, consistent_read=True
            )
        except WithdrawalItem.DoesNotExist:
            return None
        return _withdrawal(item)

    def requested_writes(self, w: Withdrawal, daily_limit: int | None) -> list[ExtraWrite]:
        """The new withdrawal and, under a daily limit, its amount added to the day's total on
        the condition that the total stays within the limit (so racing requests cannot pass it
        together)."""
        writes = [
            ExtraWrite(
                model=_item(w),
                condition=WithdrawalItem.PK.does_not_exist(),
                error=VersionConflict("withdrawal id taken"),
            )
        ]
        if daily_limit is not None:
            writes.append(
                ExtraWrite(
                    model=_counter(w),
                    condition=WithdrawalLimitItem.PK.does_not_exist()
                    | (WithdrawalLimitItem.total <= daily_limit - w.amount),
                    error=WithdrawalLimitExceeded(
                        f"the daily {w.currency} limit would be exceeded"
                    ),
                    actions=[
                        WithdrawalLimitItem.total.add(w.amount),
                        WithdrawalLimitItem.item_type.set(WithdrawalLimitItem.ITEM_TYPE),
                        WithdrawalLimitItem.expires_at.set(
                            int(time.time()) + LIMIT_COUNTER_SECONDS
                        ),
                    ],
                )
            )
        return writes

    def decided_writes(self, w: Withdrawal, event: AuditEvent | None) -> list[ExtraWrite]:
        """``w`` as decided (approved, cancelled, rejected, expired), on the condition that it is
        still pending review, and the decision's audit event."""
        actions = [
            WithdrawalItem.status.set(w.status.value),
            WithdrawalItem.decided_by.set(w.decided_by),
            WithdrawalItem.decided_at.set(w.decided_at),
        ]
        if w.reason is not None:
            actions.append(WithdrawalItem.reason.set(w.reason))
        if w.decided_request is not None:
            actions.append(WithdrawalItem.decided_request.set(w.decided_request))
        error = WithdrawalNotPendingReview(f"withdrawal {w.id} is no longer pending review")
        return _moved(w, WithdrawalStatus.PENDING_REVIEW, error, actions, event)

    def settled_writes(self, w: Withdrawal, event: AuditEvent | None) -> list[ExtraWrite]:
        """``w`` as settled (completed, failed), on the condition that it is still processing,
        and the settlement's audit event when it has one."""
        actions = [
            WithdrawalItem.status.set(w.status.value),
            WithdrawalItem.decided_at.set(w.decided_at),
        ]
        if w.reason:
            actions.append(WithdrawalItem.reason.set(w.reason))
        error = WithdrawalNotProcessing(f"withdrawal {w.id} is no longer processing")
        return _moved(w, WithdrawalStatus.PROCESSING, error, actions, event)

    def given_back(self, w: Withdrawal) -> list[ExtraWrite]:
        """``w``'s amount taken off its day's total, when that counter exists (a currency
        without a daily limit has none; a past day's expires by TTL). A missing counter gives
        nothing back, so releasing a hold never depends on the counter being there."""
        counter = _counter(w)
        try:
            counter.refresh(consistent_read=True)
        except WithdrawalLimitItem.DoesNotExist:
            return []
        return [
            ExtraWrite(
                model=counter,
                condition=WithdrawalLimitItem.PK.exists(),
                error=VersionConflict("limit counter changed; retry"),
                actions=[WithdrawalLimitItem.total.add(-w.amount)],
            )
        ]

    def approve(self, w: Withdrawal, event: AuditEvent, with_writes: Sequence[ExtraWrite]) -> None:
        """Store the approval (``w`` processing, on the condition that it was pending review),
        ``with_writes`` (the payout request) and the audit event, in one write.

        Raises:
            WithdrawalNotPendingReview: it was decided meanwhile; nothing is written.
        """
        write_together([*self.decided_writes(w, None), *with_writes, audit_entry(event)])

    def pending_review_between(self, oldest: str, newest: str) -> Iterator[Withdrawal]:
        """Withdrawals still pending review made from ``oldest`` to ``newest`` (inclusive)."""
        found = WithdrawalItem.review_index.query(
            keys.WITHDRAWALS_GSI_PK,
            WithdrawalItem.GSI2SK.between(oldest, newest),
            filter_condition=WithdrawalItem.status == WithdrawalStatus.PENDING_REVIEW.value,
        )
        return (_withdrawal(item) for item in found)

    def page(
        self, status: WithdrawalStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Withdrawal], str | None]:
        """Up to ``limit`` withdrawals newest first, of one status or all, after ``cursor``, and
        the next page's cursor (None on the last page).

        Raises:
            ValueError: a cursor this query did not return.
        """
        pk = keys.WITHDRAWALS_GSI_PK
        start = None
        if cursor:
            # Table keys of a withdrawal item, and its place in the index.
            start = cursors.decode(
                cursor,
                partition={"GSI2PK": pk, "SK": keys.WITHDRAWAL_SK},
                ranges={
                    "PK": (keys.WITHDRAWAL_PREFIX, keys.WITHDRAWAL_PREFIX + "~"),
                    "GSI2SK": ("", "~"),
                },
            )
        results = WithdrawalItem.review_index.query(
            pk,
            scan_index_forward=False,
            filter_condition=(WithdrawalItem.status == status.value) if status else None,
            limit=limit,
            last_evaluated_key=start,
            page_size=limit,
        )
        found = [_withdrawal(i) for i in results]
        last = results.last_evaluated_key
        return found, (cursors.encode(last) if last and len(found) == limit else None)
