"""The rules of a payment request (``chalicelib/domain/payment_requests.py``). No I/O."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import InvalidRequest, PaymentRequestNotOpen
from chalicelib.domain.payment_requests import (
    DEFAULT_EXPIRES_IN,
    PaymentRequest,
    PaymentRequestStatus,
    checked_expires_in,
    checked_memo,
    creation_hash,
    is_payment_request_id,
    payment_transaction_id,
)
from chalicelib.domain.transactions import derive_transaction_id

AT = "2026-03-14T09:00:00.000000Z"
BEFORE = "2026-03-14T11:59:59.999999Z"
DUE = "2026-03-14T12:00:00.000000Z"
AFTER = "2026-03-14T12:00:00.000001Z"


def new(key: str | None = "k1", **fields) -> PaymentRequest:
    values = {
        "facility_id": "fac_1",
        "payer_id": "usr_a",
        "payer_email": "ann@example.com",
        "currency": "USD",
        "amount": 25_00,
        "memo": "visit",
        "expires_in": 3 * 3600,
        "at": AT,
        "expires_at": DUE,
    } | fields
    return PaymentRequest.new(**values, idempotency_key=key)


def test_a_key_names_one_request_per_facility_and_none_is_random():
    assert new("k1").id == new("k1").id
    assert new("k1").id != new("k2").id
    assert new("k1").id != new("k1", facility_id="fac_2").id
    assert new(None).id != new(None).id
    assert all(is_payment_request_id(new(k).id) for k in ("k1", None))
    assert not is_payment_request_id("pr_" + "0" * 31)
    assert not is_payment_request_id("x" * 3000)


def test_the_creation_hash_tells_a_retry_from_another_request():
    asked = creation_hash("Ann@Example.com ", "USD", 25_00, "visit", 10_800)
    assert new("k1").creation == asked
    assert new(None).creation is None
    for other in (
        creation_hash("bob@example.com", "USD", 25_00, "visit", 10_800),
        creation_hash("ann@example.com", "BTC", 25_00, "visit", 10_800),
        creation_hash("ann@example.com", "USD", 25_01, "visit", 10_800),
        creation_hash("ann@example.com", "USD", 25_00, "", 10_800),
        creation_hash("ann@example.com", "USD", 25_00, "visit", 10_801),
    ):
        assert other != asked


@pytest.mark.parametrize("bad", [59, 90 * 24 * 3600 + 1, 0, -60, True, 60.0, "60"])
def test_expires_in_is_whole_seconds_from_a_minute_to_ninety_days(bad):
    with pytest.raises(InvalidRequest):
        checked_expires_in(bad)


def test_expires_in_defaults_to_seven_days_and_takes_its_bounds():
    assert checked_expires_in(None) == DEFAULT_EXPIRES_IN == 7 * 24 * 3600
    assert checked_expires_in(60) == 60
    assert checked_expires_in(90 * 24 * 3600) == 90 * 24 * 3600
    assert checked_memo("x" * 500) == "x" * 500
    with pytest.raises(InvalidRequest):
        checked_memo("x" * 501)


def test_an_open_request_is_expired_from_its_expires_at_on():
    pr = new()
    assert pr.status_at(BEFORE) is PaymentRequestStatus.OPEN
    assert pr.status_at(DUE) is PaymentRequestStatus.EXPIRED
    assert pr.view(BEFORE)["status"] == "open"
    assert pr.view(AFTER)["status"] == "expired"
    assert pr.view(AFTER)["amount"] == "25.00"
    for move in (pr.paid, pr.declined, pr.cancelled):
        with pytest.raises(PaymentRequestNotOpen, match="expired"):
            move(DUE)
    with pytest.raises(PaymentRequestNotOpen):
        pr.expired(BEFORE)
    expired = pr.expired(DUE)
    assert (expired.status, expired.decided_at) == (PaymentRequestStatus.EXPIRED, DUE)
    with pytest.raises(PaymentRequestNotOpen):
        expired.expired(AFTER)


def test_paying_names_the_one_transaction_of_the_request():
    pr = new()
    paid = pr.paid(BEFORE)
    assert paid.status is PaymentRequestStatus.PAID
    assert paid.transaction_id == payment_transaction_id(pr.id)
    assert paid.transaction_id == derive_transaction_id("payment_request", pr.id)
    assert paid.paid_at == BEFORE
    # A paid request stays paid, even past its expires_at.
    assert paid.status_at(AFTER) is PaymentRequestStatus.PAID


@pytest.mark.parametrize("final", ["paid", "declined", "cancelled", "expired"])
def test_only_an_open_request_moves(final):
    pr = new()
    done = pr.expired(DUE) if final == "expired" else getattr(pr, final)(BEFORE)
    for move in (done.paid, done.declined, done.cancelled):
        with pytest.raises(PaymentRequestNotOpen):
            move(BEFORE)


def test_a_decision_remembers_the_request_that_made_it():
    declined = new().declined(BEFORE, request="mark-1")
    assert declined.decided_by_request(PaymentRequestStatus.DECLINED, "mark-1")
    assert not declined.decided_by_request(PaymentRequestStatus.DECLINED, "mark-2")
    assert not declined.decided_by_request(PaymentRequestStatus.DECLINED, None)
    assert not declined.decided_by_request(PaymentRequestStatus.CANCELLED, "mark-1")


def test_a_held_payment_keeps_the_request_open_until_its_review_settles_it():
    pr = new()
    held = pr.held_by("rev_1", BEFORE)
    assert (held.status, held.review_id) == (PaymentRequestStatus.OPEN, "rev_1")
    assert held.transaction_id == payment_transaction_id(pr.id) == pr.next_transaction_id
    assert held.held
    assert held.status_at(AFTER) is PaymentRequestStatus.OPEN
    assert held.view(AFTER)["review_id"] == "rev_1"
    for move in (
        lambda: held.paid(BEFORE),
        lambda: held.held_by("rev_2", BEFORE),
        lambda: held.declined(BEFORE),
        lambda: held.cancelled(BEFORE),
        lambda: held.expired(AFTER),
        lambda: pr.approved(BEFORE),
        lambda: pr.released(),
    ):
        with pytest.raises(PaymentRequestNotOpen):
            move()
    paid = held.approved(AFTER)  # approved after expires_at: the payer paid before it
    assert (paid.status, paid.transaction_id, paid.paid_at) == (
        PaymentRequestStatus.PAID,
        held.transaction_id,
        AFTER,
    )


def test_a_released_request_is_paid_by_the_next_attempts_transaction():
    released = new().held_by("rev_1", BEFORE).released()
    assert (released.attempt, released.transaction_id, released.review_id) == (1, None, None)
    assert released.status_at(BEFORE) is PaymentRequestStatus.OPEN
    assert released.status_at(AFTER) is PaymentRequestStatus.EXPIRED  # expired meanwhile
    paid = released.paid(BEFORE)
    assert paid.transaction_id == payment_transaction_id(released.id, 1)
    assert paid.transaction_id == derive_transaction_id("payment_request", released.id, "1")
    assert paid.transaction_id != payment_transaction_id(released.id)
