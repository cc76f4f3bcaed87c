"""The contract of ``services.payment_requests.PaymentRequestRepository``, run against the
in-memory repository and ``DynamoPaymentRequestRepository`` (moto): ids are taken once, every
move happens only from open (paying, declining and cancelling only before ``expires_at``,
expiring only after it), the expiry queue holds open requests only, and the lists are newest
first with the status as of a moment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.adapters.dynamo.payment_request_repository import (
    DynamoPaymentRequestRepository,
)
from chalicelib.adapters.dynamo.withdrawal_repository import write_together
from chalicelib.domain.errors import PaymentRequestNotOpen, ReviewNotOpen, VersionConflict
from chalicelib.domain.payment_requests import (
    PaymentRequest,
    PaymentRequestStatus,
    payment_transaction_id,
)
from chalicelib.domain.users import AuditEvent
from tests.memory.payment_requests import MemoryPaymentRequestRepository
from tests.memory.withdrawals import commit

T0 = "2026-03-14T09:00:00.000000Z"
T1 = "2026-03-14T10:00:00.000000Z"  # before expiry
DUE = "2026-03-14T12:00:00.000000Z"  # the requests' expires_at
LATE = "2026-03-14T12:00:01.000000Z"


@dataclass
class Store:
    repository: Any
    commit: Callable[[Sequence[Any]], None]


def request(key: str, *, payer: str = "usr_a", facility: str = "fac_1", at: str = T0):
    return PaymentRequest.new(
        facility_id=facility,
        payer_id=payer,
        payer_email=f"{payer}@example.com",
        currency="USD",
        amount=2_50,
        memo="visit",
        expires_in=3 * 3600,
        at=at,
        expires_at=DUE,
        idempotency_key=key,
    )


def audit(target: str) -> AuditEvent:
    return AuditEvent.new("payment_request.test", at=T0, actor_id="key_x", target=target, ip=None)


class TestPaymentRequestRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def store(self, request: pytest.FixtureRequest) -> Store:
        if request.param == "memory":
            return Store(MemoryPaymentRequestRepository(), commit)
        request.getfixturevalue("table")
        return Store(DynamoPaymentRequestRepository(), write_together)

    def created(self, store: Store, *requests: PaymentRequest) -> None:
        for pr in requests:
            store.repository.create(pr, audit(pr.id))

    def test_a_request_reads_back_and_its_id_is_taken_once(self, store):
        pr = request("k1")
        assert store.repository.get(pr.id) is None
        self.created(store, pr)
        assert store.repository.get(pr.id) == pr
        with pytest.raises(VersionConflict):
            store.repository.create(pr, audit(pr.id))

    def test_paying_is_written_only_while_open_and_before_expiry(self, store):
        pr = request("k1")
        self.created(store, pr)
        with pytest.raises(PaymentRequestNotOpen):
            store.commit(store.repository.paid_writes(pr.paid(T1), DUE))
        assert store.repository.get(pr.id).status is PaymentRequestStatus.OPEN
        store.commit(store.repository.paid_writes(pr.paid(T1), T1))
        assert store.repository.get(pr.id) == pr.paid(T1)
        with pytest.raises(PaymentRequestNotOpen):
            store.commit(store.repository.paid_writes(pr.paid(T1), T1))
        with pytest.raises(PaymentRequestNotOpen):
            store.repository.decide(pr.cancelled(T1), T1, audit(pr.id))
        assert store.repository.get(pr.id).status is PaymentRequestStatus.PAID

    def test_one_decision_and_expiry_only_once_due(self, store):
        declined, expiring = request("k1"), request("k2")
        self.created(store, declined, expiring)
        store.repository.decide(declined.declined(T1), T1, None)
        with pytest.raises(PaymentRequestNotOpen):
            store.repository.decide(declined.cancelled(T1), T1, audit(declined.id))
        assert store.repository.get(declined.id).status is PaymentRequestStatus.DECLINED
        with pytest.raises(PaymentRequestNotOpen):  # not due yet at T1
            store.repository.decide(expiring.expired(LATE), T1, None)
        with pytest.raises(PaymentRequestNotOpen):  # a decline after expiry
            store.repository.decide(expiring.declined(T1), LATE, None)
        store.repository.decide(expiring.expired(LATE), LATE, None)
        assert store.repository.get(expiring.id) == expiring.expired(LATE)

    def test_the_expiry_queue_holds_open_requests_that_are_due(self, store):
        due, paid = request("k1"), request("k2")
        self.created(store, due, paid)
        store.commit(store.repository.paid_writes(paid.paid(T1), T1))
        assert list(store.repository.due(T1)) == []
        assert [pr.id for pr in store.repository.due(DUE)] == [due.id]
        store.repository.decide(due.expired(DUE), DUE, None)
        assert list(store.repository.due(LATE)) == []

    def test_lists_are_newest_first_per_owner_with_the_status_as_of_now(self, store):
        first = request("k1", at="2026-03-14T09:00:01.000000Z")
        second = request("k2", at="2026-03-14T09:00:02.000000Z")
        third = request("k3", at="2026-03-14T09:00:03.000000Z")
        theirs = request("k4", payer="usr_b", facility="fac_2")
        self.created(store, first, second, third, theirs)
        store.commit(store.repository.paid_writes(second.paid(T1), T1))
        repo = store.repository

        def ids(page: tuple[list[PaymentRequest], str | None]) -> list[str]:
            return [pr.id for pr in page[0]]

        assert ids(repo.of_payer("usr_a", None, T1, 10, None)) == [third.id, second.id, first.id]
        assert ids(repo.of_facility("fac_1", None, T1, 10, None)) == [
            third.id,
            second.id,
            first.id,
        ]
        assert ids(repo.of_payer("usr_b", None, T1, 10, None)) == [theirs.id]
        assert ids(repo.of_facility("fac_3", None, T1, 10, None)) == []
        open_ = PaymentRequestStatus.OPEN
        assert ids(repo.of_payer("usr_a", open_, T1, 10, None)) == [third.id, first.id]
        assert ids(repo.of_payer("usr_a", PaymentRequestStatus.PAID, T1, 10, None)) == [second.id]
        # Past expires_at, still stored open: expired, not open.
        assert ids(repo.of_payer("usr_a", open_, LATE, 10, None)) == []
        expired = PaymentRequestStatus.EXPIRED
        assert ids(repo.of_facility("fac_1", expired, LATE, 10, None)) == [third.id, first.id]

        page, cursor = repo.of_payer("usr_a", None, T1, 2, None)
        assert [pr.id for pr in page] == [third.id, second.id]
        assert cursor is not None
        rest, end = repo.of_payer("usr_a", None, T1, 2, cursor)
        assert ([pr.id for pr in rest], end) == ([first.id], None)
        with pytest.raises(ValueError, match="invalid cursor"):
            repo.of_payer("usr_a", None, T1, 2, "nonsense")

    def test_a_held_payment_keeps_the_request_open_until_its_review_settles_it(self, store):
        pr, other = request("k1"), request("k2")
        self.created(store, pr, other)
        repo = store.repository
        held = pr.held_by("rev_1", T1)
        with pytest.raises(PaymentRequestNotOpen):  # not after expires_at
            store.commit(repo.held_writes(held, DUE))
        store.commit(repo.held_writes(held, T1))
        assert repo.get(pr.id) == held
        # Held: no second hold, no pay, decline, cancel or expiry, even past expires_at.
        with pytest.raises(PaymentRequestNotOpen):
            store.commit(repo.held_writes(pr.held_by("rev_2", T1), T1))
        with pytest.raises(PaymentRequestNotOpen):
            store.commit(repo.paid_writes(pr.paid(T1), T1))
        with pytest.raises(PaymentRequestNotOpen):
            repo.decide(pr.declined(T1), T1, None)
        with pytest.raises(PaymentRequestNotOpen):
            repo.decide(pr.expired(LATE), LATE, None)
        assert repo.get(pr.id) == held
        open_, expired = PaymentRequestStatus.OPEN, PaymentRequestStatus.EXPIRED
        assert [r.id for r in repo.of_payer("usr_a", open_, LATE, 10, None)[0]] == [pr.id]
        assert [r.id for r in repo.of_payer("usr_a", expired, LATE, 10, None)[0]] == [other.id]

        # Released (rejected or expired review): open again, attempt 1, hold cleared, once.
        released = held.released()
        store.commit(repo.released_writes(held, released))
        assert repo.get(pr.id) == released
        assert (released.attempt, released.transaction_id, released.review_id) == (1, None, None)
        with pytest.raises(ReviewNotOpen):
            store.commit(repo.released_writes(held, released))
        with pytest.raises(ReviewNotOpen):
            store.commit(repo.approved_writes(held.approved(T1)))

        # The next attempt's hold, approved: paid by that payment, once.
        second = released.held_by("rev_2", T1)
        assert second.transaction_id == payment_transaction_id(pr.id, 1) != held.transaction_id
        store.commit(repo.held_writes(second, T1))
        with pytest.raises(ReviewNotOpen):  # the first attempt's hold is gone
            store.commit(repo.approved_writes(held.approved(T1)))
        store.commit(repo.approved_writes(second.approved(LATE)))
        assert repo.get(pr.id) == second.approved(LATE)
        assert repo.get(pr.id).status is PaymentRequestStatus.PAID
        with pytest.raises(ReviewNotOpen):
            store.commit(repo.approved_writes(second.approved(LATE)))
        assert [
            r.id for r in repo.of_payer("usr_a", PaymentRequestStatus.PAID, LATE, 10, None)[0]
        ] == [pr.id]
