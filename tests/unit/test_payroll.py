"""Payroll batches: the domain's rules (pure), and the contract of
``services.payroll.PayrollRepository``, run against the in-memory repository and
``DynamoPayrollRepository`` (moto), whose conditions enforce the rules again: a batch is stored
once, an item is decided once (paid or failed, never both), a batch completes once and then
leaves the finisher's queue."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.payroll_repository import DynamoPayrollRepository
from chalicelib.domain.errors import PayrollChanged
from chalicelib.domain.payroll import (
    RECIPIENT_NOT_FOUND,
    ItemOutcome,
    ItemStatus,
    Payroll,
    PayrollIncomplete,
    PayrollStatus,
    derive_payroll_id,
    request_fingerprint,
)
from tests.memory.payroll import MemoryPayrollRepository

LINES = (
    ("ann@example.com", 1_000, "a"),
    ("nobody@example.com", 250, ""),
    ("Bo@Example.com", 5, ""),
)
RECIPIENTS = {"ann@example.com": "user_ann", "bo@example.com": "user_bo"}
AT = "2026-12-02T06:00:00.000000Z"


def new(facility: str = "fac_1", key: str = "k1", at: str = AT) -> Payroll:
    return Payroll.new(derive_payroll_id(facility, key), facility, "USD", LINES, RECIPIENTS, at)


def paid(payroll: Payroll, index: int) -> ItemOutcome:
    return ItemOutcome(index, ItemStatus.PAID, payroll.item_transaction_id(index))


# -- the rules ------------------------------------------------------------------------------------
def test_unknown_recipients_fail_at_once_and_are_not_reserved():
    batch = new()

    assert [i.status for i in batch.items] == [
        ItemStatus.PENDING,
        ItemStatus.FAILED,
        ItemStatus.PENDING,
    ]
    assert batch.items[1].error_code == RECIPIENT_NOT_FOUND
    assert batch.items[2].recipient_id == "user_bo"  # emails compare case-insensitively
    assert (batch.total, batch.reserved, batch.paid_total) == (1_255, 1_005, 0)


def test_ids_are_derived_from_the_facility_and_the_key():
    assert derive_payroll_id("fac_1", "k1") == derive_payroll_id("fac_1", "k1")
    assert derive_payroll_id("fac_1", "k1") != derive_payroll_id("fac_2", "k1")
    batch = new()
    ids = {batch.funding_transaction_id, batch.return_transaction_id}
    ids |= {batch.item_transaction_id(i) for i in range(3)}
    assert len(ids) == 5
    assert new().item_transaction_id(2) == batch.item_transaction_id(2)
    assert request_fingerprint("USD", LINES) != request_fingerprint("USD", LINES[:2])


def test_a_batch_completes_only_once_every_payable_item_is_decided():
    batch = new()
    with pytest.raises(PayrollIncomplete):
        batch.settled({0: paid(batch, 0)}, AT)

    failed = ItemOutcome(2, ItemStatus.FAILED, error_code=RECIPIENT_NOT_FOUND)
    done = batch.settled({0: paid(batch, 0), 2: failed}, AT)

    assert done.status is PayrollStatus.PARTIALLY_COMPLETED
    assert (done.paid_total, done.returned) == (1_000, 5)
    with pytest.raises(PayrollIncomplete):
        done.settled({0: paid(batch, 0), 2: failed}, AT)  # completes once


def test_all_paid_is_completed_and_nothing_is_returned():
    lines = LINES[:1]
    batch = Payroll.new("po_x", "fac_1", "USD", lines, RECIPIENTS, AT)
    done = batch.settled({0: paid(batch, 0)}, AT)
    assert (done.status, done.returned) == (PayrollStatus.COMPLETED, 0)


# -- the store's conditions: the in-memory repository and DynamoDB's behave alike ----------------
class TestPayrollRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def repository(self, request: pytest.FixtureRequest):
        if request.param == "memory":
            return MemoryPayrollRepository()
        request.getfixturevalue("table")
        return DynamoPayrollRepository()

    def test_a_batch_is_stored_once_and_reads_back(self, repository):
        batch = new()
        repository.write(repository.created(batch))

        assert repository.get(batch.id) == batch
        with pytest.raises(PayrollChanged):
            repository.write(repository.created(batch))
        assert repository.processing_since_before("2026-12-02T07", 10) == [batch.id]
        assert repository.processing_since_before("2026-12-02T05", 10) == []

    def test_an_item_is_decided_once_paid_or_failed_never_both(self, repository):
        batch = new()
        repository.write(repository.created(batch))
        repository.write([repository.item_paid(batch.id, 0, "txn_a", AT)])

        with pytest.raises(PayrollChanged):
            repository.write([repository.item_paid(batch.id, 0, "txn_b", AT)])
        assert repository.item_failed(batch.id, 0, RECIPIENT_NOT_FOUND, AT) is False
        assert repository.item_failed(batch.id, 2, RECIPIENT_NOT_FOUND, AT) is True
        with pytest.raises(PayrollChanged):
            repository.write([repository.item_paid(batch.id, 2, "txn_c", AT)])
        assert repository.outcomes(batch.id) == {
            0: ItemOutcome(0, ItemStatus.PAID, transaction_id="txn_a"),
            2: ItemOutcome(2, ItemStatus.FAILED, error_code=RECIPIENT_NOT_FOUND),
        }

    def test_a_batch_completes_once_and_leaves_the_finishers_queue(self, repository):
        batch = new()
        repository.write(repository.created(batch))
        done = batch.settled({0: paid(batch, 0), 2: paid(batch, 2)}, AT)

        repository.write([repository.completed(done)])

        assert repository.get(batch.id) == done
        assert repository.processing_since_before("2026-12-03", 10) == []
        with pytest.raises(PayrollChanged):
            repository.write([repository.completed(done)])

    def test_a_facility_lists_its_own_batches_newest_first_a_page_at_a_time(self, repository):
        older, newer = new(key="a", at=AT), new(key="b", at="2026-12-02T07:00:00.000000Z")
        other = new(facility="fac_2", key="a")
        for batch in (older, newer, other):
            repository.write(repository.created(batch))

        page, cursor = repository.of_facility("fac_1", limit=1)
        assert [b.id for b in page] == [newer.id]
        rest, end = repository.of_facility("fac_1", limit=1, cursor=cursor)
        assert ([b.id for b in rest], end) == ([older.id], None)
        assert [b.id for b in repository.of_facility("fac_2")[0]] == [other.id]
        with pytest.raises(ValueError, match="cursor"):
            repository.of_facility("fac_2", cursor=cursor)
        assert repository.of_facility("fac_1", until="2026-12-02T06:30:00.000000Z")[0] == [older]
