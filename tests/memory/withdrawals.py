"""Withdrawals, their daily totals and their payout requests in memory:
``services.withdrawals.WithdrawalRepository`` and ``services.payouts.PayoutRepository``.

Side writes are ``MemoryWrite``s: a condition, the error it raises, and the change. ``commit``
checks every condition before it changes anything, as one TransactWriteItems would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from chalicelib.domain.errors import (
    InvalidState,
    LedgerError,
    VersionConflict,
    WithdrawalLimitExceeded,
    WithdrawalNotPendingReview,
    WithdrawalNotProcessing,
)
from chalicelib.domain.payouts import PayoutRequest, PayoutStatus
from chalicelib.domain.users import AuditEvent
from chalicelib.domain.withdrawals import Withdrawal, WithdrawalStatus


@dataclass(frozen=True)
class MemoryWrite:
    holds: Callable[[], bool]
    error: LedgerError
    apply: Callable[[], None]


def commit(writes: Sequence[object]) -> None:
    """All of ``writes`` or none: the first failed condition raises its error."""
    checked = [w for w in writes if isinstance(w, MemoryWrite)]
    assert len(checked) == len(writes), "not an in-memory side write"
    for write in checked:
        if not write.holds():
            raise write.error
    for write in checked:
        write.apply()


class MemoryWithdrawalRepository:
    def __init__(self) -> None:
        self.withdrawals: dict[str, Withdrawal] = {}
        self.day_totals: dict[tuple[str, str, str], int] = {}
        self.events: list[AuditEvent] = []

    def get(self, withdrawal_id: str) -> Withdrawal | None:
        return self.withdrawals.get(withdrawal_id)

    def requested_writes(self, w: Withdrawal, daily_limit: int | None) -> list[MemoryWrite]:
        def store() -> None:
            self.withdrawals[w.id] = w

        writes = [
            MemoryWrite(
                lambda: w.id not in self.withdrawals, VersionConflict("withdrawal id taken"), store
            )
        ]
        if daily_limit is not None:
            day = (w.user_id, w.currency, w.day)

            def count() -> None:
                self.day_totals[day] = self.day_totals.get(day, 0) + w.amount

            writes.append(
                MemoryWrite(
                    lambda: self.day_totals.get(day, 0) <= daily_limit - w.amount,
                    WithdrawalLimitExceeded(f"the daily {w.currency} limit would be exceeded"),
                    count,
                )
            )
        return writes

    def _status_write(
        self, w: Withdrawal, expected: WithdrawalStatus, error: LedgerError
    ) -> MemoryWrite:
        def holds() -> bool:
            stored = self.withdrawals.get(w.id)
            return stored is not None and stored.status is expected

        def store() -> None:
            self.withdrawals[w.id] = w

        return MemoryWrite(holds, error, store)

    def _event_write(self, event: AuditEvent) -> MemoryWrite:
        return MemoryWrite(
            lambda: all(e.id != event.id for e in self.events),
            VersionConflict(f"audit event {event.id} exists"),
            lambda: self.events.append(event),
        )

    def decided_writes(self, w: Withdrawal, event: AuditEvent | None) -> list[MemoryWrite]:
        error = WithdrawalNotPendingReview(f"withdrawal {w.id} is no longer pending review")
        writes = [self._status_write(w, WithdrawalStatus.PENDING_REVIEW, error)]
        return writes + ([self._event_write(event)] if event is not None else [])

    def settled_writes(self, w: Withdrawal, event: AuditEvent | None) -> list[MemoryWrite]:
        error = WithdrawalNotProcessing(f"withdrawal {w.id} is no longer processing")
        writes = [self._status_write(w, WithdrawalStatus.PROCESSING, error)]
        return writes + ([self._event_write(event)] if event is not None else [])

    def given_back(self, w: Withdrawal) -> list[MemoryWrite]:
        day = (w.user_id, w.currency, w.day)
        if day not in self.day_totals:
            return []

        def give() -> None:
            self.day_totals[day] -= w.amount

        return [
            MemoryWrite(
                lambda: day in self.day_totals, VersionConflict("limit counter changed"), give
            )
        ]

    def approve(self, w: Withdrawal, event: AuditEvent, with_writes: Sequence[object]) -> None:
        commit([*self.decided_writes(w, event), *with_writes])

    def pending_review_between(self, oldest: str, newest: str) -> Iterator[Withdrawal]:
        return (
            w
            for w in sorted(self.withdrawals.values(), key=_queue_key)
            if w.status is WithdrawalStatus.PENDING_REVIEW and oldest <= _queue_key(w) <= newest
        )

    def page(
        self, status: WithdrawalStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Withdrawal], str | None]:
        newest_first = sorted(self.withdrawals.values(), key=_queue_key, reverse=True)
        if cursor is not None:
            ids = [w.id for w in newest_first]
            if cursor not in ids:
                raise ValueError("invalid cursor")
            newest_first = newest_first[ids.index(cursor) + 1 :]
        matching = [w for w in newest_first if status is None or w.status is status]
        found = matching[:limit]
        return found, (found[-1].id if len(matching) > limit else None)


def _queue_key(w: Withdrawal) -> str:
    return f"{w.created_at}#{w.id}"


class MemoryPayoutRepository:
    def __init__(self) -> None:
        self.payouts: dict[str, PayoutRequest] = {}
        self.queue: dict[str, str] = {}  # withdrawal id -> place in the "still to send" queue

    def get(self, withdrawal_id: str) -> PayoutRequest | None:
        return self.payouts.get(withdrawal_id)

    def requested_write(self, payout: PayoutRequest) -> MemoryWrite:
        def store() -> None:
            self.payouts[payout.withdrawal_id] = payout
            self.queue[payout.withdrawal_id] = f"{payout.requested_at}#{payout.withdrawal_id}"

        return MemoryWrite(
            lambda: payout.withdrawal_id not in self.payouts,
            InvalidState("payout already requested"),
            store,
        )

    def settled_write(self, withdrawal_id: str, status: PayoutStatus) -> MemoryWrite:
        def settle() -> None:
            self.payouts[withdrawal_id] = replace(
                self.payouts[withdrawal_id], status=status, claimed_until=None
            )
            self.queue.pop(withdrawal_id, None)

        return MemoryWrite(
            lambda: withdrawal_id in self.payouts,
            InvalidState(f"withdrawal {withdrawal_id} has no payout request"),
            settle,
        )

    def _requested(self, withdrawal_id: str) -> PayoutRequest | None:
        found = self.payouts.get(withdrawal_id)
        return found if found is not None and found.still_to_send else None

    def claim(self, withdrawal_id: str, now: int, until: int) -> bool:
        found = self._requested(withdrawal_id)
        if found is None or not found.claimable(now):
            return False
        self.payouts[withdrawal_id] = replace(found, claimed_until=until)
        return True

    def mark_sent(self, withdrawal_id: str, at: str) -> bool:
        found = self._requested(withdrawal_id)
        if found is None:
            return False
        self.payouts[withdrawal_id] = replace(
            found, status=PayoutStatus.SENT, sent_at=at, claimed_until=None
        )
        self.queue.pop(withdrawal_id, None)
        return True

    def hand_off_failed(self, withdrawal_id: str, at: str) -> bool:
        found = self._requested(withdrawal_id)
        if found is None:
            return False
        self.payouts[withdrawal_id] = replace(
            found, claimed_until=None, failed_attempts=found.failed_attempts + 1
        )
        self.queue[withdrawal_id] = f"{at}#{withdrawal_id}"
        return True

    def forget(self, withdrawal_id: str) -> bool:
        found = self._requested(withdrawal_id)
        if found is None:
            return False
        self.payouts[withdrawal_id] = replace(found, claimed_until=None)
        self.queue.pop(withdrawal_id, None)
        return True

    def requested(self, limit: int) -> list[str]:
        return sorted(self.queue, key=self.queue.__getitem__)[:limit]
