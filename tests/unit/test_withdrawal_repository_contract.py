"""The contract of ``services.withdrawals.WithdrawalRepository``, run against the in-memory
repository and ``DynamoWithdrawalRepository`` (moto): what each method stores, and which
condition refuses which write."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.adapters.dynamo.withdrawal_repository import (
    DynamoWithdrawalRepository,
    write_together,
)
from chalicelib.domain.errors import (
    VersionConflict,
    WithdrawalLimitExceeded,
    WithdrawalNotPendingReview,
    WithdrawalNotProcessing,
)
from chalicelib.domain.users import AuditEvent
from chalicelib.domain.withdrawals import Withdrawal, WithdrawalStatus
from tests.memory.withdrawals import MemoryWithdrawalRepository, commit

DAY = "2026-03-14"
ADDRESS = "bc1qexampleaddress0000000000"


@dataclass
class Store:
    repository: Any
    commit: Callable[[Sequence[Any]], None]


def withdrawal(key: str, amount: int = 1_000, *, at: str = f"{DAY}T10:00:00.000000Z") -> Withdrawal:
    return Withdrawal.requested(
        user_id="usr_ann",
        currency="BTC",
        amount=amount,
        destination=ADDRESS,
        idempotency_key=key,
        at=at,
    )


def event(action: str, w: Withdrawal) -> AuditEvent:
    return AuditEvent.new(
        action, at=f"{DAY}T11:00:00.000000Z", actor_id="adm", target=w.id, ip=None
    )


class TestWithdrawalRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def store(self, request: pytest.FixtureRequest) -> Store:
        if request.param == "memory":
            return Store(MemoryWithdrawalRepository(), commit)
        request.getfixturevalue("table")
        return Store(DynamoWithdrawalRepository(), write_together)

    def requested(self, store: Store, w: Withdrawal, limit: int | None = None) -> Withdrawal:
        store.commit(store.repository.requested_writes(w, limit))
        return w

    def test_a_requested_withdrawal_reads_back_as_written(self, store):
        assert store.repository.get("wd_missing") is None
        w = self.requested(store, withdrawal("k1"))
        assert store.repository.get(w.id) == w

    def test_a_withdrawal_id_is_written_once(self, store):
        w = self.requested(store, withdrawal("k1"))
        with pytest.raises(VersionConflict):
            store.commit(store.repository.requested_writes(w, None))

    def test_the_days_total_refuses_a_withdrawal_past_the_limit(self, store):
        self.requested(store, withdrawal("k1", 600), limit=1_000)
        with pytest.raises(WithdrawalLimitExceeded):
            store.commit(store.repository.requested_writes(withdrawal("k2", 500), 1_000))
        assert store.repository.get(withdrawal("k2", 500).id) is None  # nothing written
        self.requested(store, withdrawal("k3", 400), limit=1_000)  # exactly at the limit

    def test_a_given_back_amount_counts_no_more(self, store):
        first = self.requested(store, withdrawal("k1", 600), limit=1_000)
        store.commit(store.repository.given_back(first))
        self.requested(store, withdrawal("k2", 1_000), limit=1_000)

    def test_nothing_is_given_back_without_a_days_total(self, store):
        w = self.requested(store, withdrawal("k1"), limit=None)
        assert store.repository.given_back(w) == []

    def test_a_decision_is_written_once_and_only_from_pending_review(self, store):
        w = self.requested(store, withdrawal("k1"))
        rejected = w.rejected("adm", f"{DAY}T11:00:00.000000Z", "no", request="mark")
        store.commit(store.repository.decided_writes(rejected, event("withdrawal.rejected", w)))
        assert store.repository.get(w.id) == rejected
        cancelled = w.cancelled("usr_ann", f"{DAY}T12:00:00.000000Z")
        with pytest.raises(WithdrawalNotPendingReview):
            store.commit(store.repository.decided_writes(cancelled, None))
        assert store.repository.get(w.id) == rejected

    def test_an_approval_writes_its_other_writes_with_it_or_nothing(self, store):
        w = self.requested(store, withdrawal("k1"))
        other = self.requested(store, withdrawal("k2"))
        at = f"{DAY}T11:00:00.000000Z"
        approved = w.approved("adm", at)
        # The other withdrawal's cancellation stands in for a payout request written with it.
        along = store.repository.decided_writes(other.cancelled("usr_ann", at), None)
        store.repository.approve(approved, event("withdrawal.approved", w), along)
        assert store.repository.get(w.id).status is WithdrawalStatus.PROCESSING
        assert store.repository.get(other.id).status is WithdrawalStatus.CANCELLED

        third = self.requested(store, withdrawal("k3"))
        along = store.repository.decided_writes(third.cancelled("usr_ann", at), None)
        with pytest.raises(WithdrawalNotPendingReview):
            store.repository.approve(approved, event("withdrawal.approved", w), along)
        assert store.repository.get(third.id) == third

    def test_a_settlement_is_written_only_from_processing(self, store):
        w = self.requested(store, withdrawal("k1"))
        at = f"{DAY}T11:00:00.000000Z"
        never_approved = _processing(w).failed(at, "x")  # stored: still pending review
        with pytest.raises(WithdrawalNotProcessing):
            store.commit(store.repository.settled_writes(never_approved, None))
        approved = w.approved("adm", at)
        store.commit(store.repository.decided_writes(approved, None))
        failed = approved.failed(f"{DAY}T12:00:00.000000Z", "node down")
        store.commit(store.repository.settled_writes(failed, event("withdrawal.failed", w)))
        assert store.repository.get(w.id) == failed
        with pytest.raises(WithdrawalNotProcessing):
            store.commit(store.repository.settled_writes(approved.completed(at), None))

    def test_the_expiry_finds_only_withdrawals_pending_review_in_its_window(self, store):
        old = self.requested(store, withdrawal("k1", at=f"{DAY}T01:00:00.000000Z"))
        decided = self.requested(store, withdrawal("k2", at=f"{DAY}T02:00:00.000000Z"))
        store.commit(
            store.repository.decided_writes(
                decided.approved("adm", f"{DAY}T03:00:00.000000Z"), None
            )
        )
        self.requested(store, withdrawal("k3", at="2026-03-20T01:00:00.000000Z"))
        found = store.repository.pending_review_between(
            "2026-03-01T00:00:00.000000Z", "2026-03-15T00:00:00.000000Z"
        )
        assert [w.id for w in found] == [old.id]

    def test_the_review_queue_pages_newest_first_and_filters_by_status(self, store):
        made = [
            self.requested(store, withdrawal(f"k{n}", at=f"{DAY}T0{n}:00:00.000000Z"))
            for n in range(1, 4)
        ]
        first, cursor = store.repository.page(None, 2, None)
        assert [w.id for w in first] == [made[2].id, made[1].id]
        assert cursor is not None
        second, cursor = store.repository.page(None, 2, cursor)
        assert ([w.id for w in second], cursor) == ([made[0].id], None)

        store.commit(
            store.repository.decided_writes(
                made[1].cancelled("usr_ann", f"{DAY}T05:00:00.000000Z"), None
            )
        )
        cancelled, _ = store.repository.page(WithdrawalStatus.CANCELLED, 10, None)
        assert [w.id for w in cancelled] == [made[1].id]

    def test_a_cursor_it_did_not_return_is_refused(self, store):
        with pytest.raises(ValueError, match="invalid cursor"):
            store.repository.page(None, 2, "not-a-cursor")


def _processing(w: Withdrawal) -> Withdrawal:
    """``w`` as the domain would see it once approved (not written)."""
    return w.approved("adm", f"{DAY}T11:00:00.000000Z")
