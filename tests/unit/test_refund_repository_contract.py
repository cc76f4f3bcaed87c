"""One contract for refunds' repository, run against memory and DynamoDB (moto): a refund is
created once, finishes once, fails after success once, and leaves the pending queue when it
finishes."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import InvalidState
from chalicelib.domain.refunds import Refund, RefundStatus
from chalicelib.domain.users import AuditEvent
from tests.memory.refunds import MemoryRefundRepository

AT = "2026-01-10T12:00:00.000000Z"


def requested(refund_id: str = "rf_1", at: str = AT) -> Refund:
    return Refund.requested(
        refund_id,
        deposit_id="dep_1",
        user_id="usr_1",
        amount=1000,
        currency="USD",
        reason="customer asked",
        requested_by="usr_admin",
        payment_intent_id="pi_1",
        at=at,
    )


class TestMemoryRefundRepository:
    @pytest.fixture
    def repo(self):  # type: ignore[no-untyped-def]
        return MemoryRefundRepository()

    def test_a_refund_is_created_once_and_read_back(self, repo):
        refund = requested()
        event = AuditEvent.new(
            "refund.requested", at=AT, actor_id="usr_admin", target="rf_1", ip=None
        )
        repo.write([repo.add(refund), repo.audit(event)])

        assert repo.get("rf_1") == refund
        assert repo.get("rf_missing") is None
        with pytest.raises(InvalidState):
            repo.write([repo.add(refund)])

    def test_pending_refunds_queue_oldest_first_and_leave_when_finished(self, repo):
        repo.write([repo.add(requested("rf_new", "2026-01-10T13:00:00.000000Z"))])
        repo.write([repo.add(requested("rf_old", AT))])
        assert repo.pending(10) == ["rf_old", "rf_new"]

        repo.to_the_back("rf_old", "2026-01-10T14:00:00.000000Z")
        assert repo.pending(10) == ["rf_new", "rf_old"]
        assert repo.pending(1) == ["rf_new"]

        done = repo.get("rf_new").finished(succeeded=True, at=AT, stripe_refund_id="re_1")
        repo.write([repo.finish(done)])
        repo.to_the_back("rf_new", "2026-01-10T15:00:00.000000Z")  # finished: stays out
        assert repo.pending(10) == ["rf_old"]

    def test_a_refund_finishes_once(self, repo):
        refund = requested()
        repo.write([repo.add(refund)])
        repo.write([repo.finish(refund.finished(succeeded=False, at=AT, failure="refused"))])

        stale = refund.finished(succeeded=True, at=AT, stripe_refund_id="re_1")
        with pytest.raises(InvalidState):
            repo.write([repo.finish(stale)])
        got = repo.get(refund.id)
        assert (got.status, got.failure_reason) == (RefundStatus.FAILED, "refused")

    def test_a_refund_fails_after_success_once(self, repo):
        refund = requested()
        repo.write([repo.add(refund)])
        with pytest.raises(InvalidState):  # not succeeded yet
            repo.write(
                [
                    repo.fail_after_success(
                        refund.finished(succeeded=True, at=AT).failed_after_success("x", AT)
                    )
                ]
            )

        succeeded = refund.finished(succeeded=True, at=AT, stripe_refund_id="re_1")
        repo.write([repo.finish(succeeded)])
        failed = succeeded.failed_after_success("card expired", AT)
        repo.write([repo.fail_after_success(failed)])
        with pytest.raises(InvalidState):
            repo.write([repo.fail_after_success(failed)])
        got = repo.get(refund.id)
        assert (got.status, got.failure_reason, got.stripe_refund_id) == (
            RefundStatus.FAILED,
            "card expired",
            "re_1",
        )

    def test_the_stripe_refund_is_remembered_once(self, repo):
        repo.write([repo.add(requested())])
        repo.remember_stripe_refund("rf_1", "re_1")
        repo.remember_stripe_refund("rf_1", "re_other")  # another one: ignored

        assert repo.get("rf_1").stripe_refund_id == "re_1"


class TestDynamoRefundRepository(TestMemoryRefundRepository):
    @pytest.fixture
    def repo(self, table):  # type: ignore[no-untyped-def]
        from chalicelib.adapters.dynamo.refund_repository import DynamoRefundRepository

        return DynamoRefundRepository()
