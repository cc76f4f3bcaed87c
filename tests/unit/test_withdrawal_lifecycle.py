"""The withdrawal lifecycle without I/O: the domain's transitions and rules, then the services
that need no ledger (approval, the payout hand-off and its retry, deposit addresses, facilities)
on the in-memory repositories."""

from __future__ import annotations

import pytest

from chalicelib.adapters.crypto_gateway import LocalCryptoGateway
from chalicelib.domain.errors import (
    AmountBelowMinimum,
    InvalidRequest,
    InvalidState,
    WithdrawalLimitExceeded,
    WithdrawalNotFound,
    WithdrawalNotPendingReview,
    WithdrawalNotProcessing,
)
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.payouts import PayoutStatus
from chalicelib.domain.users import Role, User, UserStatus
from chalicelib.domain.withdrawals import MAX_REASON_LENGTH, Withdrawal, WithdrawalStatus
from chalicelib.services import crypto, facilities, payouts, withdrawals
from tests.memory.crypto_addresses import MemoryAddressRepository
from tests.memory.facilities import MemoryFacilityRepository
from tests.memory.withdrawals import MemoryPayoutRepository, MemoryWithdrawalRepository, commit

AT = "2026-03-14T10:00:00.000000Z"
LATER = "2026-03-14T11:00:00.000000Z"
ADDRESS = "bc1qexampleaddress0000000000"


def withdrawal(key: str = "k1", amount: int = 25_000_000) -> Withdrawal:
    return Withdrawal.requested(
        user_id="usr_ann",
        currency="BTC",
        amount=amount,
        destination=ADDRESS,
        idempotency_key=key,
        at=AT,
    )


def person(user_id: str, role: Role = Role.USER) -> User:
    return User(
        id=user_id,
        email=f"{user_id}@example.com",
        password_hash="-",
        role=role,
        status=UserStatus.ACTIVE,
        terms_accepted_at=AT,
        created_at=AT,
    )


# -- the domain -----------------------------------------------------------------------------------
def test_a_new_withdrawal_waits_for_review_under_ids_derived_from_its_request():
    w = withdrawal()
    assert w.status is WithdrawalStatus.PENDING_REVIEW
    assert w == withdrawal()  # the same request names the same withdrawal and hold
    assert w.id == "wd_" + w.transaction_id.removeprefix("txn_")
    assert withdrawal("k2").id != w.id


@pytest.mark.parametrize("destination", ["short", "has space in it", "x" * 129, None])
def test_a_destination_that_is_no_address_is_refused(destination):
    with pytest.raises(InvalidRequest):
        Withdrawal.requested(
            user_id="u", currency="BTC", amount=1, destination=destination,
            idempotency_key="k", at=AT,
        )  # fmt: skip


def test_the_minimum_is_checked_before_the_daily_limit():
    def ask(amount: int) -> Withdrawal:
        return Withdrawal.requested(
            user_id="u", currency="BTC", amount=amount, destination=ADDRESS,
            idempotency_key="k", at=AT, minimum=100, daily_limit=50,
        )  # fmt: skip

    with pytest.raises(AmountBelowMinimum):
        ask(99)
    with pytest.raises(WithdrawalLimitExceeded):
        ask(100)


@pytest.mark.parametrize(
    ("decide", "status"),
    [
        (lambda w: w.approved("adm", LATER), WithdrawalStatus.PROCESSING),
        (lambda w: w.cancelled("usr_ann", LATER), WithdrawalStatus.CANCELLED),
        (lambda w: w.rejected("adm", LATER, " no "), WithdrawalStatus.REJECTED),
        (lambda w: w.expired(LATER, "not reviewed"), WithdrawalStatus.EXPIRED),
    ],
)
def test_only_a_withdrawal_pending_review_is_decided(decide, status):
    decided = decide(withdrawal())
    assert (decided.status, decided.decided_at) == (status, LATER)
    with pytest.raises(WithdrawalNotPendingReview):
        decide(decided)
    assert issubclass(WithdrawalNotPendingReview, InvalidState)  # 409 invalid_state


def test_a_rejection_needs_a_reason_of_at_most_500_characters():
    assert withdrawal().rejected("adm", LATER, "  fraud  ").reason == "fraud"
    for reason in ("", "   ", "x" * (MAX_REASON_LENGTH + 1), None):
        with pytest.raises(InvalidRequest):
            withdrawal().rejected("adm", LATER, reason)


def test_only_a_processing_withdrawal_settles_and_only_once():
    with pytest.raises(WithdrawalNotProcessing):
        withdrawal().completed(LATER)
    approved = withdrawal().approved("adm", AT)
    assert approved.completed(LATER).status is WithdrawalStatus.COMPLETED
    failed = approved.failed(LATER, "x" * 600)
    assert (failed.status, failed.reason) == (WithdrawalStatus.FAILED, "x" * MAX_REASON_LENGTH)
    with pytest.raises(WithdrawalNotProcessing):
        failed.completed(LATER)


def test_every_end_but_completion_releases_the_hold():
    approved = withdrawal().approved("adm", AT)
    assert not withdrawal().releases_hold
    assert not approved.releases_hold
    assert not approved.completed(LATER).releases_hold
    assert approved.failed(LATER, None).releases_hold
    assert withdrawal().cancelled("usr_ann", LATER).releases_hold
    assert withdrawal().rejected("adm", LATER, "no").releases_hold
    assert withdrawal().expired(LATER, "late").releases_hold


def test_a_decision_remembers_the_request_that_made_it():
    cancelled = withdrawal().cancelled("usr_ann", LATER, request="mark-1")
    assert cancelled.decided_by_request(WithdrawalStatus.CANCELLED, "mark-1")
    assert not cancelled.decided_by_request(WithdrawalStatus.CANCELLED, "mark-2")
    assert not cancelled.decided_by_request(WithdrawalStatus.CANCELLED, None)
    assert not cancelled.decided_by_request(WithdrawalStatus.REJECTED, "mark-1")


# -- approval and the payout hand-off, on the in-memory repositories ------------------------------
@pytest.fixture
def stored() -> tuple[MemoryWithdrawalRepository, MemoryPayoutRepository, Withdrawal]:
    repository, requests = MemoryWithdrawalRepository(), MemoryPayoutRepository()
    w = withdrawal()
    commit(repository.requested_writes(w, None))
    return repository, requests, w


def test_an_approval_queues_one_payout_and_hands_it_to_the_gateway(stored):
    repository, requests, w = stored
    gateway = LocalCryptoGateway("any")
    approved = withdrawals.approve(
        repository, requests, person("adm", Role.ADMIN), w.id, None, gateway
    )
    assert approved.status is WithdrawalStatus.PROCESSING
    assert [p.withdrawal_id for p in gateway.payouts] == [w.id]
    assert requests.get(w.id).status is PayoutStatus.SENT
    assert [e.action for e in repository.events] == ["withdrawal.approved"]
    with pytest.raises(WithdrawalNotPendingReview):
        withdrawals.approve(repository, requests, person("adm", Role.ADMIN), w.id, None, gateway)
    with pytest.raises(WithdrawalNotFound):
        withdrawals.approve(repository, requests, person("adm", Role.ADMIN), "wd_x", None)


def test_the_retry_of_an_approval_hands_over_a_payout_left_requested(stored):
    repository, requests, w = stored
    refusing = LocalCryptoGateway("any", fail=True)
    admin = person("adm", Role.ADMIN)
    withdrawals.approve(repository, requests, admin, w.id, None, refusing, request="mark")
    assert (requests.get(w.id).status, requests.get(w.id).failed_attempts) == ("requested", 1)
    gateway = LocalCryptoGateway("any")
    again = withdrawals.approve(repository, requests, admin, w.id, None, gateway, request="mark")
    assert again.status is WithdrawalStatus.PROCESSING
    assert [p.withdrawal_id for p in gateway.payouts] == [w.id]


def test_the_retry_sends_once_skips_a_live_claim_and_forgets_what_is_not_owed(stored):
    repository, requests, w = stored
    withdrawals.approve(repository, requests, person("adm", Role.ADMIN), w.id, None)
    assert requests.claim(w.id, 1_000, 1_000 + payouts.CLAIM_SECONDS)  # a sender, then dies
    gateway = LocalCryptoGateway("any")
    report = payouts.retry_requested(gateway, requests, repository, now=1_030)
    assert report.outcomes == {payouts.IN_FLIGHT: 1}
    report = payouts.retry_requested(gateway, requests, repository, now=1_061)
    assert (report.sent, len(gateway.payouts)) == ([w.id], 1)
    assert payouts.retry_requested(gateway, requests, repository).outcomes == {}

    # A request whose withdrawal is no longer processing is never sent.
    other = withdrawal("k2")
    commit(repository.requested_writes(other, None))
    withdrawals.approve(repository, requests, person("adm", Role.ADMIN), other.id, None)
    commit(repository.settled_writes(repository.get(other.id).failed(LATER, "gone"), None))
    report = payouts.retry_requested(gateway, requests, repository)
    assert (report.outcomes, requests.requested(10)) == ({payouts.NOT_OWED: 1}, [])


def test_the_retry_gives_up_after_the_last_refusal(stored):
    repository, requests, w = stored
    withdrawals.approve(repository, requests, person("adm", Role.ADMIN), w.id, None)
    refusing = LocalCryptoGateway("any", fail=True)
    given: list[tuple[str, int]] = []

    def give_up(withdrawal_id: str, attempts: int) -> bool:
        given.append((withdrawal_id, attempts))
        return True

    for expected in (payouts.GATEWAY_FAILED, payouts.GIVEN_UP):
        report = payouts.retry_requested(
            refusing, requests, repository, max_attempts=2, give_up=give_up
        )
        assert report.outcomes == {expected: 1}
    assert given == [(w.id, 2)]


# -- deposit addresses and facilities -------------------------------------------------------------
def test_a_deposit_address_is_the_same_every_time_and_never_another_users():
    addresses, gateway = MemoryAddressRepository(), LocalCryptoGateway("secret")
    first = crypto.deposit_address(gateway, addresses, person("usr_ann"), "BTC")
    assert crypto.deposit_address(gateway, addresses, person("usr_ann"), "BTC") == first
    code, address = first
    assert addresses.owner(code, address) == "usr_ann"
    addresses.owners[(code, address)] = "usr_bob"  # the gateway handed out a taken address
    with pytest.raises(InvalidState):
        crypto.deposit_address(gateway, addresses, person("usr_ann"), "BTC")


def test_a_facility_opens_an_account_per_currency_and_lists_by_name():
    repository = MemoryFacilityRepository()
    south = facilities.create_facility(repository, " south clinic ", admin_id="adm", ip=None)
    north = facilities.create_facility(repository, "North Clinic", admin_id="adm", ip=None)
    assert south.name == "south clinic"
    assert facilities.list_facilities(repository) == [north, south]
    assert facilities.get_facility(repository, north.id) == north
    assert len(repository.accounts) == 2 * len(CURRENCIES)
    assert [e.action for e in repository.events] == ["facility.created"] * 2
    with pytest.raises(InvalidRequest):
        facilities.create_facility(repository, "   ", admin_id="adm", ip=None)
