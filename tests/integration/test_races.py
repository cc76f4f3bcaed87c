"""Races, retries and the database's own guards: what keeps the guarantees when the domain's view
is stale or wrong. moto's DynamoDB is serialized by infra.local.moto_lock (see conftest)."""

from __future__ import annotations

import random
import threading
from dataclasses import replace

import pytest

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.errors import InsufficientFunds, TransactionAlreadyExists, VersionConflict
from chalicelib.domain.transactions import (
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
    plan_new,
)
from chalicelib.services.ledger import LedgerService
from tests.support import LedgerWorld, scan


def test_sixteen_threads_racing_for_one_balance_never_overdraw(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 7_00)
    ledger = LedgerService(
        world.repository,
        platform_shards=4,
        max_attempts=40,
        rng=random.Random(1),
        backoff_base=0.002,
        backoff_cap=0.02,
    )
    start = threading.Barrier(16)
    outcomes: list[str] = []

    def spend(n: int) -> None:
        start.wait()
        try:
            ledger.record(
                transaction_id=f"txn_race_{n}",
                type=TransactionType.TRANSFER,
                postings=[_p(alice, -1_00), _p(bob, 1_00)],
            )
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("insufficient_funds")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["insufficient_funds"] * 9 + ["ok"] * 7
    a = world.account(alice)
    assert (a.posted, a.available) == (0, 0)
    assert world.account(bob).posted == 7_00
    world.check_guarantees()


def test_dynamodb_alone_refuses_an_overdraft_the_domain_let_through(world: LedgerWorld):
    """The domain is shown an inflated balance (a stale or buggy read); the write's own
    ``available >= drop`` condition must still refuse it."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_00)
    real_read = world.repository.read

    def inflated_read(account_ids, transaction_ids=()):
        snapshot = real_read(account_ids, transaction_ids)
        if alice in snapshot.accounts:
            a = snapshot.accounts[alice]
            snapshot.accounts[alice] = a.evolve(posted=a.posted + 1_000_00)
        return snapshot

    world.repository.read = inflated_read  # type: ignore[method-assign]
    with pytest.raises(InsufficientFunds):
        world.transfer(alice, bob, 6_00)
    world.repository.read = real_read  # type: ignore[method-assign]
    assert (world.account(alice).posted, world.account(bob).posted) == (5_00, 0)
    world.check_guarantees()


def test_dynamodb_alone_refuses_a_duplicate_transaction_id(world: LedgerWorld):
    """A plan for an id already written goes straight to the repository, skipping the engine's
    existence check: ``attribute_not_exists`` refuses it and nothing else is written."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    first = world.transfer(alice, bob, 1_00, key="once").transaction
    before = scan(world.table)

    duplicate = replace(first, postings=(Posting(alice, "USD", -2_00), Posting(bob, "USD", 2_00)))
    accounts = world.repository.read([alice, bob]).accounts
    with pytest.raises(TransactionAlreadyExists):
        world.repository.commit(plan_new(duplicate, accounts, now_iso()))

    assert scan(world.table) == before
    world.check_guarantees()


class RacingRepository:
    """Lets a competing transfer land between the engine's read and its write."""

    def __init__(self, world: LedgerWorld, competitor, times: int = 1) -> None:
        self._inner = world.repository
        self._competitor = competitor
        self.remaining = times
        self.commits = 0

    def read(self, *args, **kwargs):
        return self._inner.read(*args, **kwargs)

    def open_accounts(self, *args, **kwargs):
        return self._inner.open_accounts(*args, **kwargs)

    def commit(self, plan, extra=()):
        self.commits += 1
        if self.remaining:
            self.remaining -= 1
            self._competitor()
        return self._inner.commit(plan, extra)


def _p(account_id: str, amount: int):
    from chalicelib.services.ledger import PostingRequest

    return PostingRequest(account_id, "USD", amount)


def _ledger(repository) -> LedgerService:
    return LedgerService(repository, platform_shards=4, max_attempts=3, sleep=lambda _s: None)


def test_a_write_that_lost_a_race_is_retried_on_fresh_balances(world: LedgerWorld):
    alice, bob, carol = (world.open_user_account() for _ in range(3))
    world.fund(alice, 10_00)
    racing = RacingRepository(world, lambda: world.transfer(alice, carol, 3_00))
    _ledger(racing).record(
        transaction_id="txn_retry",
        type=TransactionType.TRANSFER,
        postings=[_p(alice, -5_00), _p(bob, 5_00)],
    )
    assert racing.commits == 2
    assert (world.account(alice).posted, world.account(bob).posted) == (2_00, 5_00)
    world.check_guarantees()


def test_a_race_that_spends_the_money_first_ends_in_insufficient_funds(world: LedgerWorld):
    alice, bob, carol = (world.open_user_account() for _ in range(3))
    world.fund(alice, 10_00)
    racing = RacingRepository(world, lambda: world.transfer(alice, carol, 8_00))
    with pytest.raises(InsufficientFunds):
        _ledger(racing).record(
            transaction_id="txn_late",
            type=TransactionType.TRANSFER,
            postings=[_p(alice, -5_00), _p(bob, 5_00)],
        )
    assert (world.account(alice).posted, world.account(bob).posted) == (2_00, 0)
    world.check_guarantees()


def test_endless_contention_gives_up_with_a_named_error(world: LedgerWorld):
    alice, bob, carol = (world.open_user_account() for _ in range(3))
    world.fund(alice, 10_00)
    racing = RacingRepository(world, lambda: world.transfer(alice, carol, 1), times=99)
    with pytest.raises(VersionConflict):
        _ledger(racing).record(
            transaction_id="txn_starved",
            type=TransactionType.TRANSFER,
            postings=[_p(alice, -5_00), _p(bob, 5_00)],
        )
    assert racing.commits == 3
    assert world.account(bob).posted == 0
    world.check_guarantees()


def test_a_hold_resolved_concurrently_is_posted_once(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    hold = world.transfer(alice, bob, 4_00, pending=True).transaction
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def resolve(n: int) -> None:
        start.wait()
        ledger = LedgerService(
            world.repository,
            platform_shards=4,
            max_attempts=40,
            rng=random.Random(n),
            backoff_base=0.002,
            backoff_cap=0.02,
        )
        try:
            (ledger.post_pending if n % 2 else ledger.void_pending)(hold.id)
            outcomes.append("done")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=resolve, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["HoldNotPending"] * 7 + ["done"]
    status = world.repository.get_transaction(hold.id).status
    assert status in (TransactionStatus.POSTED, TransactionStatus.VOIDED)
    world.check_guarantees()


def test_concurrent_reversals_produce_exactly_one(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    payment = world.transfer(alice, bob, 4_00).transaction
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def reverse(n: int) -> None:
        start.wait()
        ledger = LedgerService(
            world.repository,
            platform_shards=4,
            max_attempts=40,
            rng=random.Random(n),
            backoff_base=0.002,
            backoff_cap=0.02,
        )
        try:
            ledger.reverse(payment.id)
            outcomes.append("done")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=reverse, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["AlreadyReversed"] * 5 + ["done"]
    reversals = [
        i
        for i in scan(world.table)
        if i["item_type"] == "transaction" and i.get("reverses") == payment.id
    ]
    assert len(reversals) == 1
    assert world.account(alice).posted == 10_00
    world.check_guarantees()


def test_posting_types_survive_the_round_trip(world: LedgerWorld):
    alice = world.open_user_account()
    txn_id = world.fund(alice, 1)
    stored = world.repository.get_transaction(txn_id)
    assert isinstance(stored, Transaction)
    assert stored.type is TransactionType.DEPOSIT
    assert all(isinstance(p.amount, int) for p in stored.postings)


def test_the_same_transfer_delivered_concurrently_moves_money_once(world: LedgerWorld):
    """Eight copies of one operation (same transaction id) race; the one that wins spends all
    the funds, and the others must still answer with that transaction, not insufficient_funds."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_00)
    outcomes: list[object] = []
    start = threading.Barrier(8)

    def deliver(n: int) -> None:
        start.wait()
        ledger = LedgerService(
            world.repository,
            platform_shards=4,
            max_attempts=40,
            rng=random.Random(n),
            backoff_base=0.002,
            backoff_cap=0.02,
        )
        try:
            recorded = ledger.record(
                transaction_id="txn_same_request",
                type=TransactionType.TRANSFER,
                postings=[_p(alice, -5_00), _p(bob, 5_00)],
            )
            outcomes.append(recorded.created)
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == [False] * 7 + [True]
    assert (world.account(alice).posted, world.account(bob).posted) == (0, 5_00)
    world.check_guarantees()


def test_a_copy_that_reads_between_the_winners_writes_still_gets_the_original(world: LedgerWorld):
    """BatchGetItem is not a snapshot: a copy of the operation may see the transaction missing
    but the balances already spent by it. It must answer with the transaction, not 422."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_00)
    postings = [_p(alice, -5_00), _p(bob, 5_00)]
    real = world.repository
    torn = {"done": False}

    class TornReads(RacingRepository):
        def read(self, account_ids, transaction_ids=()):
            snapshot = real.read(account_ids, transaction_ids)
            if not torn["done"] and transaction_ids:
                torn["done"] = True
                _ledger(real).record(
                    transaction_id="txn_torn", type=TransactionType.TRANSFER, postings=postings
                )
                snapshot.accounts.update(real.read(account_ids).accounts)
            return snapshot

    recorded = _ledger(TornReads(world, lambda: None, times=0)).record(
        transaction_id="txn_torn", type=TransactionType.TRANSFER, postings=postings
    )
    assert (recorded.created, recorded.transaction.id) == (False, "txn_torn")
    assert (world.account(alice).posted, world.account(bob).posted) == (0, 5_00)
    world.check_guarantees()
