"""The reconciliation's checks, over plain values: no store, no clock, no Stripe client.

Each function takes what a run has read (accounts, entries, transactions, Stripe's balance
transactions) and answers with report lines (``report.mismatch``); ``nightly`` decides what to
read and feeds them. The guarantees they check are DESIGN.md's: balanced transactions (1), the
trial balance (2), no unflagged overdraft (3), a consistent history (7), pending amounts equal to
the open holds (8), and provider-settled money matched with Stripe one to one (11).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain.accounts import Account, PlatformKind, parse_platform_shard
from chalicelib.domain.money import format_amount
from chalicelib.domain.transactions import (
    Entry,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from chalicelib.services.reconciliation.report import mismatch
from chalicelib.services.reconciliation.store import Checkpoint

if TYPE_CHECKING:
    from chalicelib.adapters.stripe_gateway import BalanceTransaction

# A card payment and the ledger's record of it can fall on either side of midnight (the webhook
# arrives seconds after the charge); pairs are matched across this much of the next/previous day.
STRIPE_SLACK = timedelta(hours=1)
SWEEP_DAYS = 7  # every account is fully re-verified at least once in this many nights


# -- accounts -------------------------------------------------------------------------------------
@dataclass
class AccountResult:
    account_id: str
    currency: str
    mismatches: list[dict[str, Any]]
    base_posted: int  # the checkpoint's balance (0 without one)
    closing: Checkpoint | None  # the state at the end of the day, None when it did not move
    closing_posted: int  # the balance at the end of the day (or the last entry, without a day)
    account: Account | None = None  # the item as read for this check

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify_account(
    account: Account,
    checkpoint: Checkpoint | None,
    entries: Iterable[tuple[str, Entry]],
    day: str | None,
    *,
    cutoff: str | None = None,
) -> AccountResult:
    """Check one account from ``checkpoint`` (from its first entry when None) against its
    ``entries`` after it (``(sort key, entry)``, oldest first), the account item having been read
    *before* the entries. ``day`` cuts the closing state (None: the last entry), and so does
    ``cutoff`` (an instant: entries written after it are not part of the closing state, so every
    account of one run closes at the same moment even while money moves).

    Entries above the account's ``last_seq`` (written after the item was read) are chained but
    not compared with its balance, so writes during a run cause no false mismatch."""
    base_seq = checkpoint.seq if checkpoint else 0
    base_posted = checkpoint.posted if checkpoint else 0
    base_sk = checkpoint.entry_sk if checkpoint else None
    problems: list[dict[str, Any]] = []

    def problem(check: str, detail: str, **extra: Any) -> None:
        problems.append(mismatch(check, detail, account_id=account.id, **extra))

    expected_seq, running = base_seq + 1, base_posted
    closing = (base_seq, base_posted, base_sk)
    at_last_seq = base_posted if account.last_seq == base_seq else None
    for sk, entry in entries:
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                missing = (
                    str(expected_seq)
                    if entry.seq == expected_seq + 1
                    else f"{expected_seq}-{entry.seq - 1}"
                )
                problem("entry_missing", f"entry seq {missing} is missing", seq=expected_seq)
            else:
                problem("entry_seq", f"entry seq {entry.seq} repeats or goes back", seq=entry.seq)
            running = entry.balance_after - entry.amount  # carry on from what the entry says
        running += entry.amount
        if entry.balance_after != running:
            problem(
                "entry_balance_after",
                f"entry seq {entry.seq} has balance_after {entry.balance_after}, "
                f"its predecessors and amount give {running}",
                seq=entry.seq,
                expected=str(running),
                actual=str(entry.balance_after),
            )
            running = entry.balance_after
        if (day is None or entry.created_at[:10] <= day) and (
            cutoff is None or entry.created_at <= cutoff
        ):
            closing = (entry.seq, running, sk)
        if entry.seq == account.last_seq:
            at_last_seq = running
        expected_seq = entry.seq + 1

    if account.last_seq < base_seq:
        problem(
            "account_seq",
            f"last_seq {account.last_seq} is below the checkpoint's seq {base_seq}",
        )
    elif at_last_seq is None:
        problem(
            "entry_missing",
            f"no entry with the account's last_seq {account.last_seq}",
            seq=account.last_seq,
        )
    elif at_last_seq != account.posted:
        problem(
            "account_balance",
            f"posted is {account.posted}, its entries give {at_last_seq} at seq {account.last_seq}",
            expected=str(at_last_seq),
            actual=str(account.posted),
        )
    if account.pending_out < 0 or account.pending_in < 0:
        problem(
            "pending_sign",
            f"pending_outgoing {account.pending_out} and pending_incoming {account.pending_in} "
            "must not be negative",
            actual=f"{account.pending_out}/{account.pending_in}",
        )
    if account.overdraft_forbidden and account.available < 0 and not account.forced_negative:
        problem(
            "overdraft",
            f"available is {account.available} and the account is not flagged forced_negative",
            actual=str(account.available),
        )

    seq, posted, sk = closing
    moved = seq != base_seq
    return AccountResult(
        account_id=account.id,
        currency=account.currency,
        mismatches=problems,
        base_posted=base_posted,
        closing=(
            Checkpoint(account.id, day, seq, posted, sk) if moved and day is not None else None
        ),
        closing_posted=posted,
        account=account,
    )


def account_missing(account_id: str) -> dict[str, Any]:
    return mismatch(
        "account_missing",
        "a posting names an account that does not exist",
        account_id=account_id,
    )


def sweep_bucket(account_id: str) -> int:
    """The night of the week (0..6) on which the rolling sweep fully re-verifies the account."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % SWEEP_DAYS


def sweep_buckets(days: Iterable[str]) -> set[int]:
    """The sweep buckets of the nights ``days``: one seventh of all accounts per night."""
    return {date.fromisoformat(d).toordinal() % SWEEP_DAYS for d in days}


# -- transactions ---------------------------------------------------------------------------------
def unbalanced(txn: Transaction) -> dict[str, Any] | None:
    """The mismatch of a transaction whose postings do not sum to zero per currency; None."""
    sums: dict[str, int] = defaultdict(int)
    for p in txn.postings:
        sums[p.currency] += p.amount
    off = {code: format_amount(total, code) for code, total in sorted(sums.items()) if total}
    if not off:
        return None
    return mismatch(
        "transaction_unbalanced",
        f"postings do not sum to zero: {off}",
        transaction_id=txn.id,
        actual=off,
    )


def touched(transactions: Iterable[Transaction]) -> list[str]:
    """The accounts the transactions post to, in first-seen order."""
    return list(dict.fromkeys(p.account_id for t in transactions for p in t.postings))


def is_hold(txn: Transaction) -> bool:
    return txn.status is TransactionStatus.PENDING or txn.resolved_at is not None


def open_at_end_of(txn: Transaction, day: str) -> bool:
    """A hold created on or before ``day`` and not resolved by its end."""
    if not is_hold(txn) or txn.created_at[:10] > day:
        return False
    return txn.status is TransactionStatus.PENDING or (txn.resolved_at or "")[:10] > day


# -- the trial balance ----------------------------------------------------------------------------
def trial_balance(totals: Mapping[str, int]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Per currency, the sum of all balances as shown in the report, and a mismatch for each
    currency whose sum is not zero."""
    shown = {code: format_amount(total, code) for code, total in sorted(totals.items())}
    problems = [
        mismatch(
            "trial_balance",
            f"balances in {code} sum to {shown[code]}, not zero",
            currency=code,
            actual=shown[code],
        )
        for code, total in sorted(totals.items())
        if total
    ]
    return shown, problems


# -- pending amounts against open holds -----------------------------------------------------------
def expected_pending(holds: Iterable[Transaction]) -> dict[str, tuple[int, int]]:
    """Per account, what its open holds put in ``pending_out`` and ``pending_in``."""
    pending: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for txn in holds:
        if txn.status is not TransactionStatus.PENDING:
            continue
        for p in txn.postings:
            pending[p.account_id][0 if p.amount < 0 else 1] += abs(p.amount)
    return {account_id: (out, inc) for account_id, (out, inc) in pending.items()}


def pending_differences(
    accounts: Mapping[str, Account], expected: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """The accounts whose pending amounts differ from ``expected``, with what was expected."""
    return {
        account_id: expected.get(account_id, (0, 0))
        for account_id, account in accounts.items()
        if (account.pending_out, account.pending_in) != expected.get(account_id, (0, 0))
    }


def pending_mismatches(
    accounts: Mapping[str, Account], holds: Iterable[Transaction]
) -> list[dict[str, Any]]:
    """A ``pending_amount`` mismatch for each account whose pending amounts are not what the
    open ones among ``holds`` give, in account order."""
    problems = []
    for account_id, (want_out, want_in) in sorted(
        pending_differences(accounts, expected_pending(holds)).items()
    ):
        account = accounts[account_id]
        problems.append(
            mismatch(
                "pending_amount",
                f"pending_outgoing {account.pending_out} and pending_incoming "
                f"{account.pending_in}, its open holds give {want_out} and {want_in}",
                account_id=account_id,
                expected=f"{want_out}/{want_in}",
                actual=f"{account.pending_out}/{account.pending_in}",
            )
        )
    return problems


# -- Stripe ---------------------------------------------------------------------------------------
def ledger_card_key(txn: Transaction) -> tuple[str, str] | None:
    """What a ledger transaction pairs with at Stripe (a kind and an id); None if nothing."""
    if txn.type is TransactionType.DEPOSIT and txn.metadata.get("payment_intent_id"):
        return ("deposit", txn.metadata["payment_intent_id"])
    if (
        txn.type is TransactionType.REFUND
        and txn.metadata.get("refund_id")
        and txn.status is not TransactionStatus.VOIDED
    ):
        return ("refund", txn.metadata["refund_id"])
    if txn.type is TransactionType.REVERSAL and txn.metadata.get("refund_id"):
        # A refund Stripe failed after it succeeded gives the money back (refunds.py).
        return ("refund_failure", txn.metadata["refund_id"])
    if txn.type is TransactionType.REVERSAL and moves_stripe_clearing(txn):
        # Any other reversal of money settled with Stripe (a refund, a deposit, a lost dispute
        # rolled back): Stripe has no balance transaction for it, so it can never pair and is
        # reported. Rollback refuses such reversals (409 not_reversible); one that got through
        # anyway would have paid a user twice.
        return ("reversal", txn.id)
    return None


def moves_stripe_clearing(txn: Transaction) -> bool:
    for posting in txn.postings:
        platform = parse_platform_shard(posting.account_id)
        if platform is not None and platform[0].kind is PlatformKind.STRIPE_CLEARING:
            return True
    return False


def stripe_key(bt: BalanceTransaction) -> tuple[str, str] | None:
    """What a Stripe balance transaction pairs with in the ledger; None for payouts, fees..."""
    if bt.type in ("charge", "payment") and bt.payment_intent_id:
        return ("deposit", bt.payment_intent_id)
    if bt.type in ("refund", "payment_refund"):
        return ("refund", bt.refund_id or bt.source_id or bt.id)
    if bt.type == "refund_failure":
        return ("refund_failure", bt.refund_id or bt.source_id or bt.id)
    return None


def _ledger_view(txn: Transaction, key: tuple[str, str]) -> dict[str, Any]:
    amount = sum(p.amount for p in txn.postings if p.amount > 0)
    code = txn.postings[0].currency
    view = {
        "transaction_id": txn.id,
        "type": txn.type.value,
        "amount": format_amount(amount, code),
        "currency": code,
        "deposit_id": txn.metadata.get("deposit_id"),
        "payment_intent_id": txn.metadata.get("payment_intent_id"),
    }
    if key[0] in ("refund", "refund_failure"):
        view["refund_id"] = key[1]
    return view


def _stripe_view(bt: BalanceTransaction) -> dict[str, Any]:
    return {
        "id": bt.id,
        "type": bt.type,
        "amount": format_amount(bt.amount, bt.currency),
        "currency": bt.currency,
        "source": bt.source_id,
        "payment_intent_id": bt.payment_intent_id,
        "refund_id": bt.refund_id,
    }


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def stripe_window(first_day: str, day: str) -> tuple[datetime, datetime]:
    """The instants the days ``first_day`` through ``day`` begin and end at."""
    start = datetime.fromisoformat(first_day).replace(tzinfo=UTC)
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    return start, end


def match_stripe(
    day: str,
    ledger: Iterable[Transaction],
    stripe_items: Iterable[BalanceTransaction],
    *,
    first_day: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pair the ledger's card deposits and refunds with Stripe's balance transactions by
    PaymentIntent / refund id, one to one, amounts and currencies compared, for the days from
    ``first_day`` (default: ``day``) through ``day``: a run after a missed night covers it.

    ``ledger`` and ``stripe_items`` may reach into the neighbouring days by ``STRIPE_SLACK``; only
    the items of the window itself are reported unmatched (a pair is counted on the ledger's day).
    """
    first_day = first_day or day
    start, end = stripe_window(first_day, day)
    low, high = epoch(start), epoch(end)

    def in_window(txn: Transaction) -> bool:
        return first_day <= txn.created_at[:10] <= day

    candidates: dict[tuple[str, str], Transaction] = {}
    # A second ledger transaction for one PaymentIntent or refund (money recorded twice) can never
    # pair with a Stripe item of its own: it is reported unmatched, not hidden behind the first.
    repeats: dict[str, tuple[tuple[str, str], Transaction]] = {}
    for txn in ledger:
        key = ledger_card_key(txn)
        if key is None:
            continue
        first = candidates.setdefault(key, txn)
        if first.id != txn.id:
            repeats[txn.id] = (key, txn)
    matched = 0
    mismatches: list[dict[str, Any]] = []
    unmatched_stripe: list[dict[str, Any]] = []
    used: set[tuple[str, str]] = set()
    for bt in sorted(stripe_items, key=lambda b: (b.created, b.id)):
        key = stripe_key(bt)
        if key is None:
            continue  # payouts, fees, dispute adjustments: not a deposit or a refund
        in_day = low <= bt.created < high
        txn = candidates.get(key) if key not in used else None
        if txn is None:
            if in_day:
                unmatched_stripe.append(_stripe_view(bt))
            continue
        used.add(key)
        if not in_window(txn):
            continue  # the pair belongs to the neighbouring day's report
        view = _ledger_view(txn, key)
        amount = sum(p.amount for p in txn.postings if p.amount > 0)
        code = txn.postings[0].currency
        if (abs(bt.amount), bt.currency) != (amount, code):
            mismatches.append(
                mismatch(
                    "stripe_amount",
                    f"Stripe {bt.id} moved {format_amount(abs(bt.amount), bt.currency)} "
                    f"{bt.currency}, the ledger {view['amount']} {code}",
                    transaction_id=txn.id,
                    stripe_id=bt.id,
                    expected=f"{view['amount']} {code}",
                    actual=f"{format_amount(abs(bt.amount), bt.currency)} {bt.currency}",
                )
            )
            continue
        matched += 1
    left = [(key, txn) for key, txn in candidates.items() if key not in used]
    unmatched_ledger = [
        _ledger_view(txn, key)
        for key, txn in sorted(
            [*left, *repeats.values()], key=lambda kt: (kt[1].created_at, kt[1].id)
        )
        if in_window(txn)
    ]
    for view in unmatched_ledger:
        mismatches.append(
            mismatch(
                "stripe_unmatched_ledger",
                f"{view['type']} has no Stripe balance transaction",
                transaction_id=view["transaction_id"],
            )
        )
    for view in unmatched_stripe:
        mismatches.append(
            mismatch(
                "stripe_unmatched_stripe",
                f"Stripe {view['type']} {view['id']} has no ledger transaction",
                stripe_id=view["id"],
            )
        )
    summary = {
        "matched": matched,
        "unmatched_ledger": unmatched_ledger,
        "unmatched_stripe": unmatched_stripe,
    }
    return summary, mismatches
