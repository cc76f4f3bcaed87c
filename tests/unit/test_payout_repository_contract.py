"""The contract of ``services.payouts.PayoutRepository``, run against the in-memory repository
and ``DynamoPayoutRepository`` (moto): the "still to send" queue, the claim, and that nothing
changes a request once it is no longer ``requested``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.adapters.dynamo.payout_repository import DynamoPayoutRepository
from chalicelib.adapters.dynamo.withdrawal_repository import write_together
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.payouts import PayoutRequest, PayoutStatus
from tests.memory.withdrawals import MemoryPayoutRepository, commit

NOW = 1_900_000_000


@dataclass
class Store:
    repository: Any
    commit: Callable[[Sequence[Any]], None]


def payout(withdrawal_id: str, hour: int = 1) -> PayoutRequest:
    return PayoutRequest.for_withdrawal(
        withdrawal_id, "BTC", 25_000_000, "bc1qexampleaddress0000000000", f"2026-03-14T0{hour}:00Z"
    )


class TestPayoutRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def store(self, request: pytest.FixtureRequest) -> Store:
        if request.param == "memory":
            return Store(MemoryPayoutRepository(), commit)
        request.getfixturevalue("table")
        return Store(DynamoPayoutRepository(), write_together)

    def requested(self, store: Store, *payouts: PayoutRequest) -> None:
        for p in payouts:
            store.commit([store.repository.requested_write(p)])

    def test_a_request_reads_back_and_waits_in_the_queue_oldest_first(self, store):
        assert store.repository.get("wd_1") is None
        self.requested(store, payout("wd_2", hour=2), payout("wd_1", hour=1))
        assert store.repository.get("wd_1") == payout("wd_1", hour=1)
        assert store.repository.requested(10) == ["wd_1", "wd_2"]
        assert store.repository.requested(1) == ["wd_1"]

    def test_a_withdrawal_has_one_payout_request(self, store):
        self.requested(store, payout("wd_1"))
        with pytest.raises(InvalidState, match="already requested"):
            store.commit([store.repository.requested_write(payout("wd_1", hour=2))])

    def test_one_claim_at_a_time_until_it_expires(self, store):
        self.requested(store, payout("wd_1"))
        assert store.repository.claim("wd_1", NOW, NOW + 60)
        assert not store.repository.claim("wd_1", NOW + 59, NOW + 119)
        assert store.repository.get("wd_1").claimed_until == NOW + 60
        assert store.repository.claim("wd_1", NOW + 61, NOW + 121)
        assert not store.repository.claim("wd_missing", NOW, NOW + 60)

    def test_a_sent_request_leaves_the_queue_and_changes_no_more(self, store):
        self.requested(store, payout("wd_1"))
        store.repository.claim("wd_1", NOW, NOW + 60)
        assert store.repository.mark_sent("wd_1", "2026-03-14T05:00Z")
        found = store.repository.get("wd_1")
        assert (found.status, found.sent_at, found.claimed_until) == (
            PayoutStatus.SENT,
            "2026-03-14T05:00Z",
            None,
        )
        assert store.repository.requested(10) == []
        assert not store.repository.mark_sent("wd_1", "2026-03-14T06:00Z")
        assert not store.repository.claim("wd_1", NOW, NOW + 60)
        assert not store.repository.hand_off_failed("wd_1", "2026-03-14T06:00Z")
        assert not store.repository.forget("wd_1")
        assert store.repository.get("wd_1") == found

    def test_a_failed_hand_off_counts_and_goes_to_the_back_of_the_queue(self, store):
        self.requested(store, payout("wd_1", hour=1), payout("wd_2", hour=2))
        store.repository.claim("wd_1", NOW, NOW + 60)
        assert store.repository.hand_off_failed("wd_1", "2026-03-14T03:00Z")
        found = store.repository.get("wd_1")
        assert (found.status, found.failed_attempts, found.claimed_until) == (
            PayoutStatus.REQUESTED,
            1,
            None,
        )
        assert store.repository.requested(10) == ["wd_2", "wd_1"]

    def test_a_settled_request_leaves_the_queue(self, store):
        self.requested(store, payout("wd_1"))
        store.commit([store.repository.settled_write("wd_1", PayoutStatus.COMPLETED)])
        assert store.repository.get("wd_1").status is PayoutStatus.COMPLETED
        assert store.repository.requested(10) == []
        with pytest.raises(InvalidState, match="no payout request"):
            store.commit([store.repository.settled_write("wd_missing", PayoutStatus.FAILED)])

    def test_a_forgotten_request_leaves_the_queue_unsent(self, store):
        self.requested(store, payout("wd_1"))
        assert store.repository.forget("wd_1")
        assert store.repository.requested(10) == []
        assert store.repository.get("wd_1").status is PayoutStatus.REQUESTED
