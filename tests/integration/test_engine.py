"""The engine on the real repository (moto): stories, exactly-once, holds, reversals, history."""

from __future__ import annotations

import pytest

from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind
from chalicelib.domain.errors import (
    AccountNotFound,
    AlreadyReversed,
    HoldNotPending,
    InsufficientFunds,
    NotReversible,
    TransactionExistsWithDifferentFields,
    TransactionNotFound,
)
from chalicelib.domain.transactions import TransactionStatus, TransactionType
from chalicelib.services.ledger import PostingRequest
from tests.support import LedgerWorld

CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, "USD")


def test_worked_story_with_balances_after_each_step(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()

    world.fund(alice, 100_00)
    assert world.account(alice).posted == 100_00
    assert world.ledger.platform_balance(CLEARING) == -100_00

    world.transfer(alice, bob, 30_00)
    assert (world.account(alice).posted, world.account(bob).posted) == (70_00, 30_00)

    hold = world.transfer(alice, bob, 50_00, pending=True).transaction
    a = world.account(alice)
    assert (a.posted, a.pending_out, a.available) == (70_00, 50_00, 20_00)
    assert world.account(bob).pending_in == 50_00
    world.check_guarantees()

    with pytest.raises(InsufficientFunds):
        world.transfer(alice, bob, 20_01)

    world.ledger.post_pending(hold.id)
    a, b = world.account(alice), world.account(bob)
    assert (a.posted, a.available, a.pending_out) == (20_00, 20_00, 0)
    assert (b.posted, b.pending_in) == (80_00, 0)

    payment = world.transfer(bob, alice, 5_00).transaction
    reversal = world.ledger.reverse(payment.id, memo="sent by mistake")
    assert reversal.reverses == payment.id
    assert world.repository.get_transaction(payment.id).reversed_by == reversal.id
    assert (world.account(alice).posted, world.account(bob).posted) == (20_00, 80_00)
    world.check_guarantees()


def test_a_replayed_transfer_returns_the_original_and_moves_nothing(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    first = world.transfer(alice, bob, 10_00, key="k1")
    again = world.transfer(alice, bob, 10_00, key="k1")  # alice has 0 now: still a replay
    assert first.created
    assert not again.created
    assert again.transaction.id == first.transaction.id
    assert (world.account(alice).posted, world.account(bob).posted) == (0, 10_00)
    world.check_guarantees()


def test_a_replay_with_other_postings_is_refused(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    world.transfer(alice, bob, 3_00, key="k1")
    with pytest.raises(TransactionExistsWithDifferentFields):
        world.transfer(alice, bob, 4_00, key="k1")
    assert world.account(bob).posted == 3_00


def test_a_replayed_deposit_on_another_shard_credits_once(world: LedgerWorld):
    alice = world.open_user_account()
    for _ in range(5):  # each attempt may pick a different clearing shard
        world.fund(alice, 7_00, key="pi_123")
    assert world.account(alice).posted == 7_00
    assert world.ledger.platform_balance(CLEARING) == -7_00
    world.check_guarantees()


def test_platform_accounts_are_sharded(world: LedgerWorld):
    alice = world.open_user_account()
    for n in range(12):
        world.fund(alice, 1_00, key=f"pi_{n}")
    shards = world.repository.read(CLEARING.shard_ids(4)).accounts
    assert len(shards) > 1, "every deposit hit the same clearing item"
    assert sum(s.posted for s in shards.values()) == -12_00
    world.check_guarantees()


def test_unknown_accounts_and_transactions_are_named(world: LedgerWorld):
    alice = world.open_user_account()
    with pytest.raises(AccountNotFound):
        world.transfer(alice, "acct_missing", 1)
    with pytest.raises(TransactionNotFound):
        world.ledger.post_pending("txn_missing")
    with pytest.raises(TransactionNotFound):
        world.ledger.reverse("txn_missing")


def test_a_hold_is_posted_or_voided_exactly_once(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    hold = world.transfer(alice, bob, 4_00, pending=True).transaction
    voided = world.ledger.void_pending(hold.id)
    assert voided.status is TransactionStatus.VOIDED
    for resolve in (world.ledger.post_pending, world.ledger.void_pending):
        with pytest.raises(HoldNotPending):
            resolve(hold.id)
    a = world.account(alice)
    assert (a.posted, a.available, a.pending_out) == (10_00, 10_00, 0)
    world.check_guarantees()


def test_a_transaction_is_reversed_at_most_once(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    payment = world.transfer(alice, bob, 4_00).transaction
    reversal = world.ledger.reverse(payment.id)
    with pytest.raises(AlreadyReversed):
        world.ledger.reverse(payment.id)
    with pytest.raises(NotReversible):
        world.ledger.reverse(reversal.id)
    assert world.account(alice).posted == 10_00
    world.check_guarantees()


def test_pending_transactions_are_voided_not_reversed(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_00)
    hold = world.transfer(alice, bob, 4_00, pending=True).transaction
    with pytest.raises(NotReversible):
        world.ledger.reverse(hold.id)


def test_reversal_after_the_money_moved_on_is_refused_then_forced_and_flagged(world: LedgerWorld):
    alice, bob, carol = (world.open_user_account() for _ in range(3))
    world.fund(alice, 10_00)
    payment = world.transfer(alice, bob, 10_00).transaction
    world.transfer(bob, carol, 6_00)
    with pytest.raises(InsufficientFunds):
        world.ledger.reverse(payment.id)
    assert world.repository.get_transaction(payment.id).reversed_by is None

    reversal = world.ledger.reverse(payment.id, allow_overdraft=True, memo="fraud")
    assert reversal.forced
    b = world.account(bob)
    assert (b.posted, b.available, b.forced_negative) == (-6_00, -6_00, True)
    assert world.account(alice).posted == 10_00
    world.check_guarantees()


def test_a_multi_currency_transaction_posts_atomically(world: LedgerWorld):
    owner = "user_swap"
    usd = world.open_user_account("USD", owner)
    btc = world.open_user_account("BTC", owner)
    world.fund(usd, 100_00)
    pool_usd = PlatformAccount(PlatformKind.FX_POOL, "USD")
    pool_btc = PlatformAccount(PlatformKind.FX_POOL, "BTC")
    world.ledger.record(
        transaction_id="txn_swap_1",
        type=TransactionType.SWAP,
        postings=[
            PostingRequest(usd, "USD", -100_00),
            PostingRequest(pool_usd, "USD", 100_00),
            PostingRequest(pool_btc, "BTC", -150_000),
            PostingRequest(btc, "BTC", 150_000),
        ],
    )
    assert world.account(btc).posted == 150_000
    assert world.account(usd).posted == 0
    world.check_guarantees()


def test_history_pages_newest_first_with_time_filters_and_stable_cursors(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    times = iter(f"2026-11-0{d}T12:00:00.000000Z" for d in range(1, 10))
    world.ledger.clock = lambda: next(times)
    world.fund(alice, 100_00)  # day 1
    for _ in range(5):  # days 2..6
        world.transfer(alice, bob, 1_00)

    page = world.repository.entries(alice, limit=2)
    assert [e.seq for e in page.entries] == [6, 5]
    assert [e.balance_after for e in page.entries] == [95_00, 96_00]
    assert page.entries[0].amount == -1_00

    world.transfer(alice, bob, 1_00)  # a new entry arrives while paging (day 7)
    seen = [e.seq for e in page.entries]
    cursor = page.next_cursor
    while cursor:
        page = world.repository.entries(alice, limit=2, cursor=cursor)
        seen += [e.seq for e in page.entries]
        cursor = page.next_cursor
    assert seen == [6, 5, 4, 3, 2, 1]  # no duplicates, no gaps

    window = world.repository.entries(
        alice, since="2026-11-03T00:00:00.000000Z", until="2026-11-05T12:00:00.000000Z"
    )
    assert [e.seq for e in window.entries] == [5, 4, 3]  # days 5, 4, 3 (bounds inclusive)
    assert window.next_cursor is None
    oldest_first = world.repository.entries(alice, newest_first=False, limit=3)
    assert [e.seq for e in oldest_first.entries] == [1, 2, 3]


def test_a_cursor_from_another_account_is_refused(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    for n in range(3):
        world.fund(alice, 1_00, key=str(n))
    cursor = world.repository.entries(alice, limit=1).next_cursor
    assert cursor
    with pytest.raises(ValueError, match="cursor"):
        world.repository.entries(bob, cursor=cursor)
    with pytest.raises(ValueError, match="cursor"):
        world.repository.entries(bob, cursor="not-a-cursor")


def test_an_owners_accounts_are_listed_by_currency_with_fresh_balances(world: LedgerWorld):
    usd = world.open_user_account("USD", "user_owner")
    btc = world.open_user_account("BTC", "user_owner")
    world.open_user_account("USD", "someone_else")
    world.fund(usd, 3_00)
    accounts = world.repository.accounts_of_owner(OwnerType.USER, "user_owner")
    assert [(a.id, a.currency, a.posted) for a in accounts] == [(btc, "BTC", 0), (usd, "USD", 3_00)]


def test_each_owner_sees_the_transactions_it_takes_part_in_newest_first(world: LedgerWorld):
    alice = world.open_user_account("USD", "user_alice")
    bob = world.open_user_account("USD", "user_bob")
    times = iter(f"2026-11-0{d}T12:00:00.000000Z" for d in range(1, 10))
    world.ledger.clock = lambda: next(times)
    deposit = world.fund(alice, 10_00)  # day 1
    payment = world.transfer(alice, bob, 3_00).transaction  # day 2
    hold = world.transfer(alice, bob, 1_00, pending=True).transaction  # day 3
    world.ledger.post_pending(hold.id)

    page = world.repository.transactions_of_owner(OwnerType.USER, "user_alice", limit=2)
    assert [t.id for t in page.transactions] == [hold.id, payment.id]
    assert page.transactions[0].status is TransactionStatus.POSTED  # read by key: current
    rest = world.repository.transactions_of_owner(
        OwnerType.USER, "user_alice", cursor=page.next_cursor
    )
    assert [t.id for t in rest.transactions] == [deposit]
    assert rest.next_cursor is None
    bobs = world.repository.transactions_of_owner(OwnerType.USER, "user_bob")
    assert [t.id for t in bobs.transactions] == [hold.id, payment.id]
    window = world.repository.transactions_of_owner(
        OwnerType.USER,
        "user_alice",
        since="2026-11-02T00:00:00.000000Z",
        until="2026-11-02T23:59:59.999999Z",
    )
    assert [t.id for t in window.transactions] == [payment.id]
