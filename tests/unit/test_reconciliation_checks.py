"""The reconciliation's checks on plain values, no table: an account's history replayed from a
checkpoint, balanced transactions, the trial balance, pending amounts against open holds, and
the ledger's card money paired with Stripe's balance transactions."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.adapters.stripe_gateway import BalanceTransaction
from chalicelib.domain.accounts import Account, OwnerType, PlatformAccount, PlatformKind
from chalicelib.domain.transactions import (
    Entry,
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from chalicelib.services.reconciliation import checks
from chalicelib.services.reconciliation.store import Checkpoint

DAY = "2026-01-10"
ALICE, BOB = "acct_alice", "acct_bob"
CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, "USD").shard_id(0)


def account(
    posted: int, last_seq: int, *, pending_out: int = 0, pending_in: int = 0, **flags: bool
) -> Account:
    return Account(
        id=ALICE,
        currency="USD",
        owner_type=OwnerType.USER,
        owner_id="user_alice",
        overdraft_forbidden=True,
        posted=posted,
        pending_out=pending_out,
        pending_in=pending_in,
        last_seq=last_seq,
        **flags,
    )


def history(*amounts: int, day: str = DAY, start_seq: int = 1, start: int = 0):
    """``(sort key, entry)`` pairs of an account whose entries move ``amounts`` in turn."""
    entries, balance = [], start
    for n, amount in enumerate(amounts):
        seq = start_seq + n
        balance += amount
        at = f"{day}T10:00:{seq:02d}.000000Z"
        entry = Entry(ALICE, seq, f"txn_{seq}", TransactionType.TRANSFER, amount, balance, at)
        entries.append((f"E#{seq:08d}", entry))
    return entries


def named(problems) -> list[tuple[str, object]]:
    return [(p["check"], p.get("seq")) for p in problems]


def transfer(txn_id: str, amount: int, *, status=TransactionStatus.POSTED, **fields) -> Transaction:
    return Transaction(
        id=txn_id,
        type=fields.pop("type", TransactionType.TRANSFER),
        status=status,
        postings=(Posting(ALICE, "USD", -amount), Posting(BOB, "USD", amount)),
        created_at=fields.pop("created_at", f"{DAY}T10:00:00.000000Z"),
        **fields,
    )


# -- one account's history ------------------------------------------------------------------------
def test_a_consistent_history_verifies_and_closes_at_its_last_entry():
    result = checks.verify_account(account(70, 3), None, history(100, -50, 20), DAY)

    assert result.ok
    assert result.closing == Checkpoint(ALICE, DAY, 3, 70, "E#00000003")
    assert (result.base_posted, result.closing_posted) == (0, 70)


def test_a_history_continues_from_its_checkpoint():
    checkpoint = Checkpoint(ALICE, "2026-01-09", 2, 50, "E#00000002")
    entries = history(20, start_seq=3, start=50)

    result = checks.verify_account(account(70, 3), checkpoint, entries, DAY)

    assert result.ok
    assert (result.base_posted, result.closing.posted) == (50, 70)


def test_a_missing_entry_is_named_with_its_seq_range():
    entries = [history(100, -50, 20, 5)[0], history(100, -50, 20, 5)[3]]

    result = checks.verify_account(account(75, 4), None, entries, DAY)

    assert ("entry_missing", 2) in named(result.mismatches)
    assert "entry seq 2-3 is missing" in result.mismatches[0]["detail"]


def test_a_wrong_balance_after_is_named_and_the_replay_carries_on_from_it():
    entries = history(100, -50)
    sk, second = entries[1]
    entries[1] = (sk, Entry(**{**second.__dict__, "balance_after": 60}))

    result = checks.verify_account(account(60, 2), None, entries, DAY)

    assert named(result.mismatches) == [("entry_balance_after", 2)]
    assert (result.mismatches[0]["expected"], result.mismatches[0]["actual"]) == ("50", "60")


def test_a_posted_balance_its_entries_do_not_give_is_named():
    result = checks.verify_account(account(72, 2), None, history(100, -29), DAY)

    assert [p["check"] for p in result.mismatches] == ["account_balance"]
    assert (result.mismatches[0]["expected"], result.mismatches[0]["actual"]) == ("71", "72")


def test_entries_written_after_the_account_was_read_cause_no_mismatch():
    # The item was read at seq 2; a third entry landed before the entries were read.
    result = checks.verify_account(account(50, 2), None, history(100, -50, 20), DAY)

    assert result.ok
    assert result.closing_posted == 70  # chained, but not compared with the item read before


def test_entries_after_the_cutoff_are_not_part_of_the_closing_state():
    cutoff = f"{DAY}T10:00:02.000000Z"

    result = checks.verify_account(account(70, 3), None, history(100, -50, 20), DAY, cutoff=cutoff)

    assert result.ok
    assert result.closing == Checkpoint(ALICE, DAY, 2, 50, "E#00000002")


def test_an_unflagged_overdraft_is_named_and_a_flagged_one_is_not():
    overdrawn = checks.verify_account(account(-10, 1), None, history(-10), DAY)
    forced = checks.verify_account(account(-10, 1, forced_negative=True), None, history(-10), DAY)

    assert [p["check"] for p in overdrawn.mismatches] == ["overdraft"]
    assert forced.ok


def test_a_negative_pending_amount_is_named():
    result = checks.verify_account(account(100, 1, pending_in=-5), None, history(100), DAY)

    assert [p["check"] for p in result.mismatches] == ["pending_sign"]


# -- transactions and the trial balance -----------------------------------------------------------
def test_a_transaction_whose_postings_do_not_sum_to_zero_is_named():
    balanced = transfer("txn_ok", 10)
    lopsided = Transaction(
        id="txn_bad",
        type=TransactionType.TRANSFER,
        status=TransactionStatus.POSTED,
        postings=(Posting(ALICE, "USD", -10), Posting(BOB, "USD", 11)),
        created_at=f"{DAY}T10:00:00.000000Z",
    )

    assert checks.unbalanced(balanced) is None
    problem = checks.unbalanced(lopsided)
    assert problem is not None
    assert (problem["check"], problem["actual"]) == ("transaction_unbalanced", {"USD": "0.01"})


def test_the_trial_balance_shows_every_currency_and_names_those_off_zero():
    shown, problems = checks.trial_balance({"USD": 0, "BTC": 1})

    assert shown == {"BTC": "0.00000001", "USD": "0.00"}
    assert [(p["check"], p["currency"]) for p in problems] == [("trial_balance", "BTC")]


# -- pending amounts against open holds -----------------------------------------------------------
def test_pending_amounts_are_what_the_open_holds_give():
    hold = transfer("txn_hold", 30, status=TransactionStatus.PENDING)
    posted = transfer("txn_posted", 99)
    alice = account(100, 1, pending_out=30)
    bob = Account(BOB, "USD", OwnerType.USER, "user_bob", True, pending_in=30)

    assert checks.pending_mismatches({ALICE: alice, BOB: bob}, [hold, posted]) == []


def test_a_pending_amount_its_open_holds_do_not_give_is_named():
    hold = transfer("txn_hold", 30, status=TransactionStatus.PENDING)

    [problem] = checks.pending_mismatches({ALICE: account(100, 1, pending_out=20)}, [hold])

    assert (problem["check"], problem["expected"], problem["actual"]) == (
        "pending_amount",
        "30/0",
        "20/0",
    )


def test_a_hold_is_open_at_the_end_of_a_day_until_the_day_it_is_resolved():
    pending = transfer("txn_a", 5, status=TransactionStatus.PENDING)
    posted_next_day = transfer(
        "txn_b", 5, resolved_at="2026-01-11T08:00:00.000000Z", created_at=f"{DAY}T09:00:00Z"
    )
    never_a_hold = transfer("txn_c", 5)

    assert checks.open_at_end_of(pending, DAY)
    assert checks.open_at_end_of(posted_next_day, DAY)
    assert not checks.open_at_end_of(posted_next_day, "2026-01-11")
    assert not checks.open_at_end_of(never_a_hold, DAY)
    assert not checks.open_at_end_of(pending, "2026-01-09")  # created after that day


# -- Stripe ---------------------------------------------------------------------------------------
def at(day: str, hour: int, minute: int = 0) -> int:
    return int(
        datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}:00").replace(tzinfo=UTC).timestamp()
    )


def deposit(txn_id: str, pi: str, amount: int, created_at: str = f"{DAY}T12:00:00Z") -> Transaction:
    return Transaction(
        id=txn_id,
        type=TransactionType.DEPOSIT,
        status=TransactionStatus.POSTED,
        postings=(Posting(CLEARING, "USD", -amount), Posting(ALICE, "USD", amount)),
        created_at=created_at,
        metadata={"payment_intent_id": pi},
    )


def charge(pi: str, amount: int, created: int) -> BalanceTransaction:
    return BalanceTransaction(f"txn_{pi}", "charge", amount, "USD", created, f"ch_{pi}", pi)


def test_a_deposit_and_its_charge_pair_one_to_one():
    summary, problems = checks.match_stripe(
        DAY, [deposit("txn_1", "pi_1", 500)], [charge("pi_1", 500, at(DAY, 12))]
    )

    assert problems == []
    assert summary == {"matched": 1, "unmatched_ledger": [], "unmatched_stripe": []}


def test_a_charge_without_a_deposit_and_a_deposit_without_a_charge_are_named():
    summary, problems = checks.match_stripe(
        DAY, [deposit("txn_1", "pi_1", 500)], [charge("pi_2", 700, at(DAY, 13))]
    )

    assert [p["check"] for p in problems] == ["stripe_unmatched_ledger", "stripe_unmatched_stripe"]
    assert summary["unmatched_ledger"][0]["payment_intent_id"] == "pi_1"
    assert summary["unmatched_stripe"][0]["id"] == "txn_pi_2"


def test_amounts_are_compared():
    _, problems = checks.match_stripe(
        DAY, [deposit("txn_1", "pi_1", 500)], [charge("pi_1", 501, at(DAY, 12))]
    )

    assert [(p["check"], p["expected"], p["actual"]) for p in problems] == [
        ("stripe_amount", "5.00 USD", "5.01 USD")
    ]


def test_a_payment_credited_twice_is_reported_not_hidden_behind_its_first_credit():
    ledger = [deposit("txn_1", "pi_1", 500), deposit("txn_2", "pi_1", 500, f"{DAY}T12:01:00Z")]

    summary, problems = checks.match_stripe(DAY, ledger, [charge("pi_1", 500, at(DAY, 12))])

    assert summary["matched"] == 1
    assert [(p["check"], p["transaction_id"]) for p in problems] == [
        ("stripe_unmatched_ledger", "txn_2")
    ]


def test_a_charge_before_midnight_pairs_with_a_credit_after_it_on_the_ledgers_day():
    credit = deposit("txn_1", "pi_1", 500, "2026-01-11T00:00:05Z")
    late_charge = charge("pi_1", 500, at(DAY, 23, 59))

    on_the_charges_day = checks.match_stripe(DAY, [credit], [late_charge])
    on_the_ledgers_day = checks.match_stripe("2026-01-11", [credit], [late_charge])

    assert on_the_charges_day == (
        {"matched": 0, "unmatched_ledger": [], "unmatched_stripe": []},
        [],
    )
    assert on_the_ledgers_day[0]["matched"] == 1
    assert on_the_ledgers_day[1] == []


# -- the rolling sweep ----------------------------------------------------------------------------
def test_seven_consecutive_nights_sweep_every_account():
    nights = [f"2026-01-{d:02d}" for d in range(10, 17)]

    assert checks.sweep_buckets(nights) == set(range(checks.SWEEP_DAYS))
    assert all(0 <= checks.sweep_bucket(f"acct_{n}") < checks.SWEEP_DAYS for n in range(50))
