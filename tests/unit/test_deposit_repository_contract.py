"""One contract for card deposits' repository, run against memory and DynamoDB (moto): the
conditions of its writes refuse what the domain refuses, even when the caller skipped the domain
(a stale read), so each guarantee holds twice."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.domain.deposits import Deposit, DepositStatus
from chalicelib.domain.errors import (
    AlreadyReversed,
    InvalidState,
    NotReversible,
    RefundExceedsDeposit,
)
from tests.memory.deposits import MemoryDepositRepository

AT = "2026-01-10T12:00:00.000000Z"


def pending(deposit_id: str = "dep_1") -> Deposit:
    return Deposit.pending(deposit_id, "usr_1", 2500, "USD", AT)


class TestMemoryDepositRepository:
    @pytest.fixture
    def repo(self):  # type: ignore[no-untyped-def]
        return MemoryDepositRepository()

    def credited(self, repo) -> Deposit:  # type: ignore[no-untyped-def]
        deposit = repo.add(pending())
        repo.set_payment_intent(deposit.id, "pi_1")
        repo.write([repo.credit(deposit.credited("pi_1", 2500, AT))])
        return repo.get(deposit.id)

    def test_a_deposit_is_stored_once_and_read_back(self, repo):
        first = repo.add(pending())
        again = repo.add(replace(pending(), amount=999))  # a retry that lost the race

        assert again == first == repo.get("dep_1")
        assert repo.get("dep_missing") is None

    def test_the_payment_intent_is_recorded(self, repo):
        repo.add(pending())
        repo.set_payment_intent("dep_1", "pi_1")
        repo.set_payment_intent("dep_1", "pi_1")  # a retry

        assert repo.get("dep_1").payment_intent_id == "pi_1"

    def test_a_credit_is_read_back_as_written(self, repo):
        deposit = self.credited(repo)

        assert (deposit.status, deposit.credited_amount) == (DepositStatus.SUCCEEDED, 2500)
        assert deposit.transaction_id == pending().credited("pi_1", 2500, AT).transaction_id
        assert deposit.public_status == "succeeded"

    def test_a_late_failure_is_refused_by_the_store(self, repo):
        deposit = self.credited(repo)
        stale = pending()  # read before the credit: the domain lets the failure through

        with pytest.raises(InvalidState):
            repo.write([repo.fail(stale.failed(AT))])
        assert repo.get(deposit.id).status is DepositStatus.SUCCEEDED

    def test_a_pending_deposit_fails(self, repo):
        deposit = repo.add(pending())
        repo.write([repo.fail(deposit.failed(AT))])

        assert repo.get(deposit.id).status is DepositStatus.FAILED

    def test_the_store_refuses_to_reserve_more_than_was_credited(self, repo):
        stale = self.credited(repo)
        repo.write([repo.reserve_refund(stale, 1500, AT)])

        # The same stale read again: the domain would allow it, the store does not.
        with pytest.raises(RefundExceedsDeposit):
            repo.write([repo.reserve_refund(stale, 1500, AT)])
        repo.write([repo.reserve_refund(stale, 1000, AT)])  # exactly what is left
        assert repo.get(stale.id).refund_reserved == 2500

    def test_refund_totals_follow_each_refunds_end(self, repo):
        deposit = self.credited(repo)
        repo.write([repo.reserve_refund(deposit, 1000, AT)])
        repo.write([repo.settle_refund(deposit.id, 1000, succeeded=True, at=AT)])
        assert repo.get(deposit.id).public_status == "partially_refunded"

        repo.write([repo.return_refund(deposit.id, 1000, AT)])
        after = repo.get(deposit.id)
        assert (after.refund_reserved, after.refunded_amount) == (0, 0)

        repo.write([repo.reserve_refund(after, 500, AT)])
        repo.write([repo.settle_refund(deposit.id, 500, succeeded=False, at=AT)])
        assert repo.get(deposit.id).refundable == 2500

    def test_a_deposit_with_a_refund_reserved_cannot_be_rolled_back(self, repo):
        deposit = self.credited(repo)
        repo.write([repo.reserve_refund(deposit, 100, AT)])

        with pytest.raises(NotReversible):
            repo.write([repo.roll_back(deposit.id, "txn_rev", AT)])
        assert repo.get(deposit.id).rolled_back_by is None

    def test_a_rolled_back_deposit_is_neither_refunded_nor_disputed_unawares(self, repo):
        deposit = self.credited(repo)
        repo.write([repo.roll_back(deposit.id, "txn_rev", AT)])

        with pytest.raises(NotReversible):
            repo.write([repo.roll_back(deposit.id, "txn_rev2", AT)])
        with pytest.raises(RefundExceedsDeposit):
            repo.write([repo.reserve_refund(deposit, 100, AT)])
        with pytest.raises(AlreadyReversed):
            repo.write([repo.mark_disputed(deposit.id, "dp_1", rolled_back=False, at=AT)])
        repo.write([repo.mark_disputed(deposit.id, "dp_1", rolled_back=True, at=AT)])
        assert repo.get(deposit.id).disputed_by == "dp_1"

    def test_a_disputed_deposit_cannot_be_rolled_back(self, repo):
        deposit = self.credited(repo)
        repo.write([repo.mark_disputed(deposit.id, "dp_1", rolled_back=False, at=AT)])

        with pytest.raises(NotReversible):
            repo.write([repo.roll_back(deposit.id, "txn_rev", AT)])


class TestDynamoDepositRepository(TestMemoryDepositRepository):
    @pytest.fixture
    def repo(self, table):  # type: ignore[no-untyped-def]
        from chalicelib.adapters.dynamo.deposit_repository import DynamoDepositRepository

        return DynamoDepositRepository()
