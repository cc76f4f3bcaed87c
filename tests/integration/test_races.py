"""Races, retries and the database's own guards: what keeps the guarantees when the domain's view
is stale or wrong. moto's DynamoDB is serialized by infra.local.moto_lock (see conftest)."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import replace

import pytest

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo.models import LedgerItem
from chalicelib.domain.errors import InsufficientFunds, TransactionAlreadyExists, VersionConflict
from chalicelib.domain.transactions import (
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
    plan_new,
)
from chalicelib.services.ledger import LedgerService, PostingRequest
from tests.support import LedgerWorld, scan


def race(copies: int, world: LedgerWorld, act) -> list[str]:
    """Run ``act(ledger)`` in ``copies`` threads released together, each with its own engine;
    return each outcome: what ``act`` returned (as text), or the name of what it raised."""
    start = threading.Barrier(copies)
    outcomes: list[str] = []

    def run(n: int) -> None:
        ledger = LedgerService(
            world.repository,
            platform_shards=4,
            max_attempts=40,
            rng=random.Random(n),
            backoff_base=0.002,
            backoff_cap=0.02,
        )
        start.wait()
        try:
            outcomes.append(str(act(ledger)))
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_sixteen_threads_racing_for_one_balance_never_overdraw(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 7_00)
    spent = iter(range(16))

    def spend(ledger: LedgerService) -> str:
        ledger.record(
            transaction_id=f"txn_race_{next(spent)}",
            type=TransactionType.TRANSFER,
            postings=[_p(alice, -1_00), _p(bob, 1_00)],
        )
        return "ok"

    assert race(16, world, spend) == ["InsufficientFunds"] * 9 + ["ok"] * 7
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


def _p(account_id: str, amount: int) -> PostingRequest:
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
    posts = iter(range(8))

    def resolve(ledger: LedgerService) -> str:
        (ledger.post_pending if next(posts) % 2 else ledger.void_pending)(hold.id)
        return "done"

    assert race(8, world, resolve) == ["HoldNotPending"] * 7 + ["done"]
    status = world.repository.get_transaction(hold.id).status
    assert status in (TransactionStatus.POSTED, TransactionStatus.VOIDED)
    world.check_guarantees()


def test_concurrent_reversals_produce_exactly_one(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    payment = world.transfer(alice, bob, 4_00).transaction

    def reverse(ledger: LedgerService) -> str:
        ledger.reverse(payment.id)
        return "done"

    assert race(6, world, reverse) == ["AlreadyReversed"] * 5 + ["done"]
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
    """Eight copies of one operation (same transaction id) race: one creates it, the others
    get it back as a replay, whichever of them saw the funds already spent."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_00)

    def deliver(ledger: LedgerService) -> str:
        recorded = ledger.record(
            transaction_id="txn_same_request",
            type=TransactionType.TRANSFER,
            postings=[_p(alice, -5_00), _p(bob, 5_00)],
        )
        return "created" if recorded.created else "replayed"

    assert race(8, world, deliver) == ["created"] + ["replayed"] * 7
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


def test_a_transaction_botocore_resends_after_a_lost_answer_is_written_once(world: LedgerWorld):
    """Guarantee 5 below the ledger: the write went through but its answer was lost, so botocore
    sends the same request again. Its client request token is the same on the resend, and
    DynamoDB (the embedded one too) answers "done" without writing, instead of refusing the
    already satisfied conditions: the transfer succeeds and moves the money once."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_00)
    client = LedgerItem._get_connection().connection.client
    sent: list[str] = []

    def lose_the_first_answer(request_dict, attempts, **_kwargs):
        sent.append(json.loads(request_dict["body"])["ClientRequestToken"])
        return 0 if attempts == 1 else None  # "retry now" once, as for a dropped connection

    client.meta.events.register("needs-retry.dynamodb.TransactWriteItems", lose_the_first_answer)
    try:
        recorded = world.transfer(alice, bob, 2_00)
    finally:
        client.meta.events.unregister(
            "needs-retry.dynamodb.TransactWriteItems", lose_the_first_answer
        )
    assert recorded.created
    assert len(sent) == 2
    assert sent[0] == sent[1]
    assert (world.account(alice).posted, world.account(bob).posted) == (3_00, 2_00)
    world.check_guarantees()
