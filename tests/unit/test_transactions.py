"""The pure rules of the ledger: balancing, overdrafts, holds and reversals (no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.accounts import (
    Account,
    OwnerType,
    PlatformAccount,
    PlatformKind,
    logical_account_id,
    parse_platform_shard,
)
from chalicelib.domain.errors import (
    AlreadyReversed,
    CurrencyMismatch,
    DuplicateAccountInPostings,
    HoldNotPending,
    InsufficientFunds,
    NotReversible,
    PostingAmountZero,
    PostingsEmpty,
    PostingsUnbalanced,
    TooManyPostings,
    UnsupportedCurrency,
)
from chalicelib.domain.transactions import (
    MAX_POSTINGS,
    Plan,
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
    derive_transaction_id,
    plan_new,
    plan_resolve_hold,
    plan_reversal,
    reversal_of,
    validate_postings,
)

NOW = "2026-11-23T10:00:00.000000Z"
LATER = "2026-11-23T10:05:00.000000Z"
CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, "USD").shard_id(0)


def user(account_id: str, posted: int = 0, **kw) -> Account:
    base = Account.open(account_id, kw.pop("currency", "USD"), OwnerType.USER, "u", NOW)
    return base.evolve(posted=posted, stored=True, version=1 if posted else 0, **kw)


def txn(
    *postings: tuple[str, int],
    status=TransactionStatus.POSTED,
    type=TransactionType.TRANSFER,
    id="txn_1",
    currency="USD",
) -> Transaction:
    return Transaction(
        id=id,
        type=type,
        status=status,
        postings=tuple(Posting(a, currency, amount) for a, amount in postings),
        created_at=NOW,
    )


def apply(plan: Plan, accounts: dict[str, Account]) -> dict[str, Account]:
    updated = dict(accounts)
    for change in plan.changes:
        updated[change.after.id] = change.after
    return updated


# -- shape -----------------------------------------------------------------------------------------
def test_postings_must_balance_per_currency():
    with pytest.raises(PostingsUnbalanced):
        validate_postings([Posting("a", "USD", -100), Posting("b", "USD", 99)])
    with pytest.raises(PostingsUnbalanced):
        validate_postings([Posting("a", "USD", -100), Posting("b", "BTC", 100)])


def test_a_swap_balances_in_each_currency_separately():
    validate_postings(
        [
            Posting("user_usd", "USD", -100_00),
            Posting("pool_usd", "USD", 100_00),
            Posting("pool_btc", "BTC", -150_000),
            Posting("user_btc", "BTC", 150_000),
        ]
    )


@pytest.mark.parametrize(
    ("postings", "error"),
    [
        ([], PostingsEmpty),
        ([Posting("a", "USD", 0), Posting("b", "USD", 0)], PostingAmountZero),
        ([Posting("a", "USD", -1), Posting("a", "USD", 1)], DuplicateAccountInPostings),
        ([Posting("a", "EUR", -1), Posting("b", "EUR", 1)], UnsupportedCurrency),
        ([Posting(f"a{i}", "USD", 1) for i in range(MAX_POSTINGS + 1)], TooManyPostings),
    ],
)
def test_malformed_transactions_are_refused_before_any_io(postings, error):
    with pytest.raises(error):
        validate_postings(postings)


def test_posting_in_another_currency_than_the_account_is_refused():
    accounts = {"a": user("a", 500), "b": user("b", currency="BTC")}
    with pytest.raises(CurrencyMismatch):
        plan_new(txn(("a", -100), ("b", 100)), accounts, NOW)


# -- a worked story --------------------------------------------------------------------------------
def test_worked_story_deposit_transfer_hold_post_void_and_reversal():
    accounts = {
        CLEARING: Account.platform_shard(CLEARING),
        "alice": user("alice"),
        "bob": user("bob"),
    }
    # Alice deposits 100.00: clearing goes negative by design, Alice's wallet is credited.
    deposit = txn((CLEARING, -100_00), ("alice", 100_00), type=TransactionType.DEPOSIT, id="d")
    plan = plan_new(deposit, accounts, NOW)
    accounts = apply(plan, accounts)
    assert accounts["alice"].posted == 100_00
    assert accounts[CLEARING].posted == -100_00
    assert [(e.account_id, e.seq, e.balance_after) for e in plan.entries] == [
        (CLEARING, 1, -100_00),
        ("alice", 1, 100_00),
    ]

    # She pays Bob 30.00.
    accounts = apply(
        plan_new(txn(("alice", -30_00), ("bob", 30_00), id="t"), accounts, NOW), accounts
    )
    assert (accounts["alice"].posted, accounts["bob"].posted) == (70_00, 30_00)

    # A 50.00 hold: available drops, posted does not, and no entry is written.
    hold = txn(("alice", -50_00), ("bob", 50_00), status=TransactionStatus.PENDING, id="h")
    plan = plan_new(hold, accounts, NOW)
    assert plan.entries == ()
    accounts = apply(plan, accounts)
    alice = accounts["alice"]
    assert (alice.posted, alice.pending_out, alice.available) == (70_00, 50_00, 20_00)
    assert accounts["bob"].pending_in == 50_00

    # While held, Alice cannot spend more than 20.00.
    with pytest.raises(InsufficientFunds):
        plan_new(txn(("alice", -20_01), ("bob", 20_01), id="x"), accounts, NOW)

    # Posting the hold moves posted and writes the entries.
    plan = plan_resolve_hold(hold, accounts, LATER, post=True)
    assert plan.transaction.status is TransactionStatus.POSTED
    accounts = apply(plan, accounts)
    alice, bob = accounts["alice"], accounts["bob"]
    assert (alice.posted, alice.pending_out, alice.available) == (20_00, 0, 20_00)
    assert (bob.posted, bob.pending_in) == (80_00, 0)
    assert [e.seq for e in plan.entries] == [3, 2]  # Alice: deposit, payment, hold; Bob: 2nd

    # A second hold, voided: nothing moves.
    hold2 = txn(("alice", -10_00), ("bob", 10_00), status=TransactionStatus.PENDING, id="h2")
    accounts = apply(plan_new(hold2, accounts, NOW), accounts)
    plan = plan_resolve_hold(hold2, accounts, LATER, post=False)
    assert plan.entries == ()
    accounts = apply(plan, accounts)
    assert (accounts["alice"].available, accounts["alice"].pending_out) == (20_00, 0)

    # Bob's 30.00 payment is reversed: the opposite postings, linked to the original.
    original = txn(("alice", -30_00), ("bob", 30_00), id="t")
    reversal = reversal_of(original, "r", LATER, "mistake", {})
    assert reversal.reverses == "t"
    assert {(p.account_id, p.amount) for p in reversal.postings} == {
        ("alice", 30_00),
        ("bob", -30_00),
    }
    plan = plan_reversal(original, reversal, accounts, LATER, allow_overdraft=False)
    assert plan.links_reversal_of == original
    accounts = apply(plan, accounts)
    assert (accounts["alice"].posted, accounts["bob"].posted) == (50_00, 50_00)
    assert sum(a.posted for a in accounts.values()) == 0


# -- overdraft ------------------------------------------------------------------------------------
def test_an_overdraft_is_refused_but_spending_everything_is_allowed():
    accounts = {"a": user("a", 100), "b": user("b")}
    with pytest.raises(InsufficientFunds):
        plan_new(txn(("a", -101), ("b", 101)), accounts, NOW)
    plan = plan_new(txn(("a", -100), ("b", 100)), accounts, NOW)
    drops = {c.before.id: c.available_drop for c in plan.changes}
    assert drops == {"a": 100, "b": 0}


def test_platform_accounts_may_go_negative():
    accounts = {CLEARING: Account.platform_shard(CLEARING), "a": user("a")}
    plan = plan_new(txn((CLEARING, -(10**20)), ("a", 10**20)), accounts, NOW)
    assert next(c.after for c in plan.changes if c.after.id == CLEARING).posted == -(10**20)


# -- holds ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [TransactionStatus.POSTED, TransactionStatus.VOIDED])
@pytest.mark.parametrize("post", [True, False])
def test_a_hold_is_resolved_only_once(status, post):
    accounts = {"a": user("a", 100), "b": user("b")}
    with pytest.raises(HoldNotPending):
        plan_resolve_hold(txn(("a", -1), ("b", 1), status=status), accounts, NOW, post=post)


# -- reversals ------------------------------------------------------------------------------------
def test_reversals_are_refused_for_pending_voided_reversed_and_reversal_transactions():
    pending = txn(("a", -1), ("b", 1), status=TransactionStatus.PENDING)
    voided = txn(("a", -1), ("b", 1), status=TransactionStatus.VOIDED)
    reversal = txn(("a", -1), ("b", 1), type=TransactionType.REVERSAL)
    reversed_ = replace(txn(("a", -1), ("b", 1)), reversed_by="txn_r")
    for original, error in [
        (pending, NotReversible),
        (voided, NotReversible),
        (reversal, NotReversible),
        (reversed_, AlreadyReversed),
    ]:
        with pytest.raises(error):
            reversal_of(original, "txn_x", NOW, "", {})


def test_a_reversal_that_would_overdraw_is_refused_unless_forced_and_then_flagged():
    original = txn(("a", -100), ("b", 100))
    accounts = {"a": user("a", 0), "b": user("b", 40)}  # b spent 60 of the 100 meanwhile
    reversal = reversal_of(original, "txn_r", NOW, "", {})
    with pytest.raises(InsufficientFunds):
        plan_reversal(original, reversal, accounts, NOW, allow_overdraft=False)
    plan = plan_reversal(original, reversal, accounts, NOW, allow_overdraft=True)
    b = next(c.after for c in plan.changes if c.after.id == "b")
    assert (b.posted, b.forced_negative) == (-60, True)
    assert plan.transaction.forced is True


# -- ids -------------------------------------------------------------------------------------------
def test_transaction_ids_are_deterministic_and_scoped():
    assert derive_transaction_id("deposit", "pi_1") == derive_transaction_id("deposit", "pi_1")
    assert derive_transaction_id("deposit", "pi_1") != derive_transaction_id("refund", "pi_1")
    # Parts are delimited, so ("a", "bc") and ("ab", "c") differ.
    assert derive_transaction_id("x", "a", "bc") != derive_transaction_id("x", "ab", "c")


def test_platform_shards_parse_back_to_their_logical_account():
    platform = PlatformAccount(PlatformKind.FX_POOL, "USDT")
    assert parse_platform_shard(platform.shard_id(7)) == (platform, 7)
    assert logical_account_id(platform.shard_id(3)) == logical_account_id(platform.shard_id(5))
    assert parse_platform_shard("acct_123") is None


def test_a_replay_on_another_shard_is_the_same_request():
    platform = PlatformAccount(PlatformKind.STRIPE_CLEARING, "USD")
    first = txn((platform.shard_id(0), -5), ("a", 5))
    again = txn((platform.shard_id(3), -5), ("a", 5))
    other = txn((platform.shard_id(3), -6), ("a", 6))
    assert first.same_request_as(again)
    assert not first.same_request_as(other)


# -- properties ------------------------------------------------------------------------------------
amounts = st.integers(min_value=1, max_value=10**12)


@given(
    balances=st.lists(st.integers(0, 10**9), min_size=2, max_size=6),
    moves=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), amounts), max_size=30),
)
def test_any_sequence_of_transfers_conserves_money_and_never_overdraws(balances, moves):
    ids = [f"a{i}" for i in range(len(balances))]
    accounts = {i: user(i, b) for i, b in zip(ids, balances, strict=True)}
    total = sum(balances)
    for n, (src, dst, amount) in enumerate(moves):
        src, dst = ids[src % len(ids)], ids[dst % len(ids)]
        if src == dst:
            continue
        t = txn((src, -amount), (dst, amount), id=f"t{n}")
        try:
            plan = plan_new(t, accounts, NOW)
        except InsufficientFunds:
            assert accounts[src].available < amount
            continue
        for change in plan.changes:
            assert change.after.version == change.before.version + 1
        for entry in plan.entries:
            assert entry.seq == accounts[entry.account_id].last_seq + 1
            assert entry.balance_after == accounts[entry.account_id].posted + entry.amount
        accounts = apply(plan, accounts)
        assert sum(a.posted for a in accounts.values()) == total
        assert all(a.available >= 0 for a in accounts.values())


@given(
    start=st.integers(0, 10**6),
    holds=st.lists(st.tuples(amounts, st.booleans()), max_size=10),
)
def test_holds_reserve_then_post_or_release_exactly_what_they_held(start, holds):
    accounts = {"a": user("a", start), "b": user("b")}
    open_holds = []
    for n, (amount, _) in enumerate(holds):
        hold = txn(("a", -amount), ("b", amount), status=TransactionStatus.PENDING, id=f"h{n}")
        try:
            accounts = apply(plan_new(hold, accounts, NOW), accounts)
        except InsufficientFunds:
            continue
        open_holds.append((hold, holds[n][1]))
    assert accounts["a"].pending_out == accounts["b"].pending_in
    posted_total = 0
    for hold, post in open_holds:
        accounts = apply(plan_resolve_hold(hold, accounts, LATER, post=post), accounts)
        if post:
            posted_total += -hold.postings[0].amount
    a, b = accounts["a"], accounts["b"]
    assert (a.pending_out, b.pending_in) == (0, 0)
    assert (a.posted, b.posted) == (start - posted_total, posted_total)
    assert a.available >= 0
