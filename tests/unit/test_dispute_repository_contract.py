"""One contract for disputes' repository, run against memory and DynamoDB (moto): a dispute
opens once and closes once."""

from __future__ import annotations

import pytest

from chalicelib.domain.disputes import Dispute, DisputeStatus
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.users import AuditEvent
from tests.memory.disputes import MemoryDisputeRepository

AT = "2026-01-10T12:00:00.000000Z"


def opened(held: int = 2000) -> Dispute:
    return Dispute.opened(
        "dp_1",
        deposit_id="dep_1",
        user_id="usr_1",
        payment_intent_id="pi_1",
        amount=2500,
        held=held,
        currency="USD",
        at=AT,
    )


class TestMemoryDisputeRepository:
    @pytest.fixture
    def repo(self):  # type: ignore[no-untyped-def]
        return MemoryDisputeRepository()

    def test_a_dispute_opens_once_and_is_read_back(self, repo):
        dispute = opened()
        event = AuditEvent.new("dispute.opened", at=AT, actor_id="stripe", target="dp_1", ip=None)
        repo.write([repo.add(dispute), repo.audit(event)])

        assert repo.get("dp_1") == dispute
        assert repo.get("dp_missing") is None
        with pytest.raises(InvalidState):
            repo.write([repo.add(opened(held=0))])
        assert repo.get("dp_1").held_amount == 2000

    def test_a_dispute_closes_once(self, repo):
        dispute = opened()
        repo.write([repo.add(dispute)])
        repo.write([repo.close(dispute.closed(DisputeStatus.LOST, AT))])

        with pytest.raises(InvalidState):  # a stale read of the open dispute
            repo.write([repo.close(dispute.closed(DisputeStatus.WON, AT))])
        got = repo.get("dp_1")
        assert (got.status, got.closed_at, got.shortfall) == (DisputeStatus.LOST, AT, 500)


class TestDynamoDisputeRepository(TestMemoryDisputeRepository):
    @pytest.fixture
    def repo(self, table):  # type: ignore[no-untyped-def]
        from chalicelib.adapters.dynamo.dispute_repository import DynamoDisputeRepository

        return DynamoDisputeRepository()
