"""The card lifecycles' rules, in the domain alone (no I/O): deposits, refunds, disputes."""

from __future__ import annotations

import pytest

from chalicelib.domain.deposits import Deposit, DepositStatus, credit_transaction_id
from chalicelib.domain.disputes import Dispute, DisputeStatus, closing_status, held_for
from chalicelib.domain.errors import (
    InvalidAmount,
    InvalidRequest,
    InvalidState,
    NotReversible,
    RefundExceedsDeposit,
    TransactionAlreadyExists,
    UnsupportedCurrency,
)
from chalicelib.domain.refunds import Refund, RefundStatus

AT = "2026-01-10T12:00:00.000000Z"


def credited(amount: int = 2500) -> Deposit:
    return Deposit.pending("dep_1", "usr_1", amount, "USD", AT).credited("pi_1", amount, AT)


# -- deposits -------------------------------------------------------------------------------------
def test_a_card_deposit_is_in_usd_and_positive():
    with pytest.raises(UnsupportedCurrency):
        Deposit.pending("dep_1", "usr_1", 100, "EUR", AT)
    with pytest.raises(InvalidAmount):
        Deposit.pending("dep_1", "usr_1", 0, "USD", AT)


def test_a_payment_intent_credits_its_deposit_once():
    deposit = credited()
    assert (deposit.status, deposit.credited_amount) == (DepositStatus.SUCCEEDED, 2500)
    assert deposit.transaction_id == credit_transaction_id("pi_1")

    with pytest.raises(TransactionAlreadyExists):
        deposit.credited("pi_1", 2500, AT)


def test_another_payment_intent_cannot_credit_a_deposit():
    deposit = Deposit.pending("dep_1", "usr_1", 2500, "USD", AT).with_payment_intent("pi_1")
    with pytest.raises(InvalidState):
        deposit.credited("pi_2", 2500, AT)


def test_a_success_after_a_failure_still_credits_but_a_late_failure_changes_nothing():
    failed = Deposit.pending("dep_1", "usr_1", 2500, "USD", AT).failed(AT)
    assert failed.status is DepositStatus.FAILED

    deposit = failed.credited("pi_1", 2500, AT)
    assert deposit.status is DepositStatus.SUCCEEDED
    with pytest.raises(InvalidState):
        deposit.failed(AT)


def test_refunds_never_exceed_what_was_credited():
    deposit = credited().refund_reserved_by(1000, AT)
    assert deposit.refundable == 1500

    with pytest.raises(RefundExceedsDeposit):
        deposit.refund_reserved_by(1501, AT)
    with pytest.raises(RefundExceedsDeposit):
        deposit.refund_reserved_by(0, AT)

    deposit = deposit.refund_settled(1000, succeeded=True, at=AT).refund_reserved_by(1500, AT)
    assert (deposit.refundable, deposit.public_status) == (0, "partially_refunded")
    deposit = deposit.refund_settled(1500, succeeded=True, at=AT)
    assert deposit.public_status == "refunded"
    with pytest.raises(InvalidState):  # nothing more in flight
        deposit.refund_settled(1, succeeded=True, at=AT)


def test_a_failed_refund_gives_its_reservation_back():
    deposit = credited().refund_reserved_by(2500, AT).refund_settled(2500, succeeded=False, at=AT)
    assert deposit.refundable == 2500

    deposit = deposit.refund_reserved_by(2500, AT).refund_settled(2500, succeeded=True, at=AT)
    deposit = deposit.refund_returned(2500, AT)  # Stripe failed it after it succeeded
    assert (deposit.refundable, deposit.public_status) == (2500, "succeeded")


def test_a_deposit_not_credited_or_rolled_back_has_nothing_to_refund():
    with pytest.raises(InvalidState):
        Deposit.pending("dep_1", "usr_1", 2500, "USD", AT).refund_reserved_by(1, AT)
    with pytest.raises(InvalidState):
        credited().rolled_back("txn_rev", AT).refund_reserved_by(1, AT)


def test_money_leaves_a_deposit_once():
    with pytest.raises(NotReversible):
        credited().refund_reserved_by(1, AT).rolled_back("txn_rev", AT)
    with pytest.raises(NotReversible):
        credited().disputed("dp_1", AT).rolled_back("txn_rev", AT)
    with pytest.raises(NotReversible):
        credited().rolled_back("txn_rev", AT).rolled_back("txn_rev2", AT)


# -- refunds --------------------------------------------------------------------------------------
def requested() -> Refund:
    return Refund.requested(
        "rf_1",
        deposit_id="dep_1",
        user_id="usr_1",
        amount=1000,
        currency="USD",
        reason="  customer asked ",
        requested_by="usr_admin",
        payment_intent_id="pi_1",
        at=AT,
    )


def test_a_refund_needs_a_reason():
    assert requested().reason == "customer asked"
    with pytest.raises(InvalidRequest):
        Refund.requested(
            "rf_1",
            deposit_id="dep_1",
            user_id="usr_1",
            amount=1000,
            currency="USD",
            reason=" ",
            requested_by="usr_admin",
            payment_intent_id="pi_1",
            at=AT,
        )


def test_a_refund_finishes_once_and_fails_after_success_once():
    done = requested().finished(succeeded=True, at=AT, stripe_refund_id="re_1")
    assert (done.status, done.stripe_refund_id) == (RefundStatus.SUCCEEDED, "re_1")
    with pytest.raises(InvalidState):
        done.finished(succeeded=False, at=AT)

    failed = done.failed_after_success("card expired", AT)
    assert (failed.status, failed.failure_reason) == (RefundStatus.FAILED, "card expired")
    with pytest.raises(InvalidState):
        failed.failed_after_success("again", AT)


# -- disputes -------------------------------------------------------------------------------------
def test_a_dispute_holds_only_what_the_wallet_covers():
    assert held_for(2500, 10_000, rolled_back=False) == 2500
    assert held_for(2500, 500, rolled_back=False) == 500
    assert held_for(2500, 0, rolled_back=False) == 0
    assert held_for(2500, 10_000, rolled_back=True) == 0
    with pytest.raises(InvalidAmount):
        Dispute.opened(
            "dp_1",
            deposit_id="dep_1",
            user_id="usr_1",
            payment_intent_id="pi_1",
            amount=2500,
            held=2600,
            currency="USD",
            at=AT,
        )


@pytest.mark.parametrize(
    ("status", "shortfall"),
    [(DisputeStatus.LOST, 2000), (DisputeStatus.WON, 0), (DisputeStatus.WARNING_CLOSED, 0)],
)
def test_only_a_lost_dispute_takes_the_money_and_it_closes_once(status, shortfall):
    dispute = Dispute.opened(
        "dp_1",
        deposit_id="dep_1",
        user_id="usr_1",
        payment_intent_id="pi_1",
        amount=2500,
        held=500,
        currency="USD",
        at=AT,
    )
    assert (dispute.shortfall, dispute.transaction_id is not None) == (2000, True)

    closed = dispute.closed(status, AT)
    assert (closed.lost, closed.shortfall) == (status is DisputeStatus.LOST, shortfall)
    with pytest.raises(InvalidState):
        closed.closed(DisputeStatus.LOST, AT)


def test_a_closing_event_without_a_known_status_closes_the_dispute():
    assert closing_status(None) is DisputeStatus.CLOSED
    assert closing_status("won") is DisputeStatus.WON
    assert closing_status("something_new") is DisputeStatus.CLOSED
    assert closing_status("open") is DisputeStatus.CLOSED
