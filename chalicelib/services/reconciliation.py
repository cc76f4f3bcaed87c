"""Nightly reconciliation: the ledger proves, for one UTC day, that nothing was created or lost.

What a run for day ``D`` checks (DESIGN.md, "Nightly reconciliation"; docs/reconciliation.md):

* every transaction created in the window balances per currency;
* every account touched in the window equals its checkpoint plus its new entries, exactly:
  gapless ``seq``, each ``balance_after`` exact, and the account's ``posted`` equal to the running
  balance at the account's ``last_seq``. The account is read first and its entries after; entries
  written meanwhile (seq above the ``last_seq`` read) are chained but not compared with the
  balance, so writes that continue during the run cause no false mismatch;
* no user or facility account is overdrawn unless flagged ``forced_negative``;
* the trial balance is zero per currency;
* the day's Stripe balance transactions match the ledger's card deposits and refunds one to one.

Cost grows with the day's activity, not with history. A run starts from the report of the latest
day before ``D`` (looked up by key, at most ``LOOKBACK_DAYS`` back): the window is the days after
it up to ``D``. *Touched accounts* are the posting accounts of the window's transactions (GSI2,
the day index) and of the holds that were open at the end of the previous report and resolved in
the window (the report carries the list of open holds, so a hold created long ago and posted
today needs no history scan). Each touched account costs one query for its latest checkpoint
(``CKPT#<id>`` / ``RECON#<date>``) and one for its entries after it. The trial balance is the
previous report's per-currency totals plus each verified account's change since its checkpoint:
no account or entry outside the window is read. With no earlier report (the first run), the run
verifies every account from its first entry once and checkpoints them all.

Checkpoints are keyed by date and hold the state at the *end* of that date (the last entry created
that day or before), so a run for ``D`` reads checkpoints dated before ``D`` only: running ``D``
again gives the same report, whatever ran since. A checkpoint is written only for an account
that verified. The run writes only reports and checkpoints; it never changes a balance.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.domain.accounts import PlatformKind, parse_platform_shard
from chalicelib.domain.errors import (
    InvalidRequest,
    ProviderUnavailable,
    ReconciliationNotFound,
)
from chalicelib.domain.money import format_amount
from chalicelib.domain.transactions import Transaction, TransactionStatus, TransactionType

if TYPE_CHECKING:
    from chalicelib.adapters.dynamo.reconciliation_store import (
        Checkpoint,
        ReconciliationStore,
        StoredReport,
    )
    from chalicelib.adapters.stripe_gateway import BalanceTransaction
    from chalicelib.domain.accounts import Account

OK, MISMATCH = "ok", "mismatch"
LOOKBACK_DAYS = 35
CUTOFF_MARGIN = timedelta(seconds=1)  # see closing_cutoff
# A card payment and the ledger's record of it can fall on either side of midnight (the webhook
# arrives seconds after the charge); pairs are matched across this much of the next/previous day.
STRIPE_SLACK = timedelta(hours=1)
READ_THREADS = 8  # accounts verified at once (their reads overlap)
SWEEP_DAYS = 7  # every account is fully re-verified at least once in this many nights
METRIC_NAMESPACE = "Ledger"
METRIC_NAME = "ReconciliationMismatch"
# One per finished nightly run; infra/operations.json alarms when none came for 26 hours.
REPORTED_METRIC_NAME = "NightlyReconciliationReported"


# -- the report -----------------------------------------------------------------------------------
@dataclass
class Report:
    date: str
    status: str
    transactions_checked: int
    accounts_checked: int
    trial_balance: dict[str, str]
    mismatches: list[dict[str, Any]]
    stripe: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The API.md ``report``."""
        return {
            "date": self.date,
            "status": self.status,
            "transactions_checked": self.transactions_checked,
            "accounts_checked": self.accounts_checked,
            "trial_balance": dict(self.trial_balance),
            "mismatches": [dict(m) for m in self.mismatches],
            "stripe": {
                "matched": self.stripe["matched"],
                "unmatched_ledger": list(self.stripe["unmatched_ledger"]),
                "unmatched_stripe": list(self.stripe["unmatched_stripe"]),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            date=data["date"],
            status=data["status"],
            transactions_checked=int(data["transactions_checked"]),
            accounts_checked=int(data["accounts_checked"]),
            trial_balance=dict(data["trial_balance"]),
            mismatches=list(data["mismatches"]),
            stripe=dict(data["stripe"]),
        )


def _mismatch(check: str, detail: str, **subject: Any) -> dict[str, Any]:
    return {"check": check, **subject, "detail": detail}


# -- dates ----------------------------------------------------------------------------------------
def parse_day(text: Any, today: date) -> str:
    """A reconciliation date: ``YYYY-MM-DD``, today at the latest (UTC).

    Today runs as a *partial* day: everything written so far is checked and checkpointed, and
    the report is provisional (a later run of the same day sees more activity). The nightly run
    of the day, after it ended, redoes it from the same starting point and replaces the report
    and the checkpoints, so nothing of the partial run remains. Future days are refused.

    Raises:
        InvalidRequest: not a date, or a day after today.
    """
    if not isinstance(text, str):
        raise InvalidRequest("date must be a string YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest("date must be a date YYYY-MM-DD") from exc
    if len(text) != 10:
        raise InvalidRequest("date must be a date YYYY-MM-DD")
    if day > today:
        raise InvalidRequest("date must not be in the future (UTC)")
    return day.isoformat()


def closing_cutoff(now: str) -> str:
    """The instant a run closes every account at: a little before it started. Accounts are read
    one after another, so without one cut a transfer landing between two reads would count on
    one side only (a false trial-balance mismatch when reconciling today, or ``--full`` on a live
    table). The margin covers writes whose time was taken just before the run but that commit
    during it (the engine takes the time, then commits within its bounded retries)."""
    return to_iso(parse_iso(now) - CUTOFF_MARGIN)


def today_utc() -> date:
    return datetime.now(UTC).date()


def yesterday_utc() -> str:
    return (today_utc() - timedelta(days=1)).isoformat()


def _day_after(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _days(after: str, through: str) -> list[str]:
    days, current = [], _day_after(after)
    while current <= through:
        days.append(current)
        current = _day_after(current)
    return days


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
    store: ReconciliationStore,
    account: Account,
    checkpoint: Checkpoint | None,
    day: str | None,
    *,
    on_read: Callable[[str], None] | None = None,
    cutoff: str | None = None,
) -> AccountResult:
    """Check one account from ``checkpoint`` (from its first entry when None), the account item
    having been read before this call. ``day`` cuts the closing state (None: the last entry), and
    so does ``cutoff`` (an instant: entries written after it are not part of the closing state,
    so every account of one run closes at the same moment even while money moves)."""
    from chalicelib.adapters.dynamo.reconciliation_store import Checkpoint

    if on_read is not None:
        on_read(account.id)  # a test hook: writes may land between the two reads
    base_seq = checkpoint.seq if checkpoint else 0
    base_posted = checkpoint.posted if checkpoint else 0
    base_sk = checkpoint.entry_sk if checkpoint else None
    problems: list[dict[str, Any]] = []

    def problem(check: str, detail: str, **extra: Any) -> None:
        problems.append(_mismatch(check, detail, account_id=account.id, **extra))

    expected_seq, running = base_seq + 1, base_posted
    closing = (base_seq, base_posted, base_sk)
    at_last_seq = base_posted if account.last_seq == base_seq else None
    for sk, entry in store.entries_after(account.id, base_sk):
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


# -- transactions ---------------------------------------------------------------------------------
def _unbalanced(txn: Transaction) -> dict[str, Any] | None:
    sums: dict[str, int] = defaultdict(int)
    for p in txn.postings:
        sums[p.currency] += p.amount
    off = {code: format_amount(total, code) for code, total in sorted(sums.items()) if total}
    if not off:
        return None
    return _mismatch(
        "transaction_unbalanced",
        f"postings do not sum to zero: {off}",
        transaction_id=txn.id,
        actual=off,
    )


def _is_hold(txn: Transaction) -> bool:
    return txn.status is TransactionStatus.PENDING or txn.resolved_at is not None


def _open_at_end_of(txn: Transaction, day: str) -> bool:
    """A hold created on or before ``day`` and not resolved by its end."""
    if not _is_hold(txn) or txn.created_at[:10] > day:
        return False
    return txn.status is TransactionStatus.PENDING or (txn.resolved_at or "")[:10] > day


# -- Stripe ---------------------------------------------------------------------------------------
def _ledger_card_key(txn: Transaction) -> tuple[str, str] | None:
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
    if txn.type is TransactionType.REVERSAL and _moves_stripe_clearing(txn):
        # Any other reversal of money settled with Stripe (a refund, a deposit, a lost dispute
        # rolled back): Stripe has no balance transaction for it, so it can never pair and is
        # reported. Rollback refuses such reversals (409 not_reversible); one that got through
        # anyway would have paid a user twice.
        return ("reversal", txn.id)
    return None


def _moves_stripe_clearing(txn: Transaction) -> bool:
    for posting in txn.postings:
        platform = parse_platform_shard(posting.account_id)
        if platform is not None and platform[0].kind is PlatformKind.STRIPE_CLEARING:
            return True
    return False


def _stripe_key(bt: BalanceTransaction) -> tuple[str, str] | None:
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


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


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
    start = datetime.fromisoformat(first_day).replace(tzinfo=UTC)
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    low, high = _epoch(start), _epoch(end)

    def in_window(txn: Transaction) -> bool:
        return first_day <= txn.created_at[:10] <= day

    candidates: dict[tuple[str, str], Transaction] = {}
    # A second ledger transaction for one PaymentIntent or refund (money recorded twice) can never
    # pair with a Stripe item of its own: it is reported unmatched, not hidden behind the first.
    repeats: dict[str, tuple[tuple[str, str], Transaction]] = {}
    for txn in ledger:
        key = _ledger_card_key(txn)
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
        key = _stripe_key(bt)
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
                _mismatch(
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
            _mismatch(
                "stripe_unmatched_ledger",
                f"{view['type']} has no Stripe balance transaction",
                transaction_id=view["transaction_id"],
            )
        )
    for view in unmatched_stripe:
        mismatches.append(
            _mismatch(
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


def _no_stripe() -> dict[str, Any]:
    return {"matched": 0, "unmatched_ledger": [], "unmatched_stripe": []}


# -- a run ----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    report: Report
    checkpoints: list[Checkpoint] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    open_holds: list[str] = field(default_factory=list)
    # Accounts that did not verify: a checkpoint of this day left by an earlier run of it (a
    # run before the data changed) must go, or the next day would start from a balance the
    # totals do not include.
    failed: list[str] = field(default_factory=list)
    # False when the day had not ended at the run's cut-off: the report is provisional, writes
    # no checkpoint, and no later run starts from it.
    final: bool = True


def _touched(transactions: Iterable[Transaction]) -> list[str]:
    return list(dict.fromkeys(p.account_id for t in transactions for p in t.postings))


def _previous(store: ReconciliationStore, day: str) -> StoredReport | None:
    """The final report of the latest day before ``day`` (yesterday's by key; else a look back).
    A partial report (a run before its day ended) is never a starting point: what was written
    after its cut-off would never be checked."""
    start = date.fromisoformat(day)
    yesterday = (start - timedelta(days=1)).isoformat()
    found = store.reports([yesterday])
    if yesterday in found and found[yesterday].final:
        return found[yesterday]
    earlier = [(start - timedelta(days=n)).isoformat() for n in range(2, LOOKBACK_DAYS + 1)]
    finals = {d: r for d, r in store.reports(earlier).items() if r.final}
    return finals[max(finals)] if finals else None


def sweep_bucket(account_id: str) -> int:
    """The night of the week (0..6) on which the rolling sweep fully re-verifies the account."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % SWEEP_DAYS


def _swept(store: ReconciliationStore, days: list[str]) -> list[str]:
    """The accounts the rolling sweep re-verifies from their first entry in a run covering
    ``days``: one seventh of all accounts per day covered, so a run after a missed night sweeps
    that night's share too, and every account is fully verified at least once every 7 days."""
    buckets = {date.fromisoformat(d).toordinal() % SWEEP_DAYS for d in days}
    if not buckets:
        return []
    return [a for a in store.all_account_ids() if sweep_bucket(a) in buckets]


def _check_accounts(
    store: ReconciliationStore,
    account_ids: list[str],
    day: str | None,
    *,
    checkpoints_before: str | None,
    on_read: Callable[[str], None] | None,
    cutoff: str | None = None,
) -> tuple[list[AccountResult], list[dict[str, Any]]]:
    """Verify each account: from its newest checkpoint dated before ``checkpoints_before`` (the
    day after the report the run starts from), or from its first entry when that is None."""
    accounts = store.accounts(account_ids)  # read before any entry: see verify_account
    missing = [
        _mismatch(
            "account_missing",
            "a posting names an account that does not exist",
            account_id=account_id,
        )
        for account_id in account_ids
        if account_id not in accounts
    ]

    def check(account_id: str) -> AccountResult:
        checkpoint = (
            store.latest_checkpoint(account_id, checkpoints_before) if checkpoints_before else None
        )
        return verify_account(
            store, accounts[account_id], checkpoint, day, on_read=on_read, cutoff=cutoff
        )

    present = [a for a in account_ids if a in accounts]
    if len(present) < 2:
        return [check(a) for a in present], missing
    # Each account costs two queries that wait on the network, and accounts are independent:
    # READ_THREADS of them at a time (results in the order asked, so reports are stable).
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(present))) as pool:
        return list(pool.map(check, present)), missing


def _trial_balance(totals: Mapping[str, int]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    shown = {code: format_amount(total, code) for code, total in sorted(totals.items())}
    problems = [
        _mismatch(
            "trial_balance",
            f"balances in {code} sum to {shown[code]}, not zero",
            currency=code,
            actual=shown[code],
        )
        for code, total in sorted(totals.items())
        if total
    ]
    return shown, problems


def _expected_pending(holds: Iterable[Transaction]) -> dict[str, tuple[int, int]]:
    """Per account, what its open holds put in ``pending_out`` and ``pending_in``."""
    pending: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for txn in holds:
        if txn.status is not TransactionStatus.PENDING:
            continue
        for p in txn.postings:
            pending[p.account_id][0 if p.amount < 0 else 1] += abs(p.amount)
    return {account_id: (out, inc) for account_id, (out, inc) in pending.items()}


def _pending_differences(
    accounts: Mapping[str, Account], expected: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    return {
        account_id: expected.get(account_id, (0, 0))
        for account_id, account in accounts.items()
        if (account.pending_out, account.pending_in) != expected.get(account_id, (0, 0))
    }


def _check_pending(
    store: ReconciliationStore,
    accounts: Mapping[str, Account],
    holds: Mapping[str, Transaction],
    last_read_day: str,
    today: str,
) -> list[dict[str, Any]]:
    """Each account's ``pending_out`` / ``pending_in`` against the holds open now.

    ``holds`` are the transactions the run read, up to ``last_read_day``, their status as then.
    An account that disagrees with them is looked at once more before it is reported: money moves
    while the run reads (a hold made or resolved after its transactions were read), so its item,
    the status of every hold and the transactions created from ``last_read_day`` to ``today`` are
    read again. Only accounts that disagree cost that second look; normally none."""
    differing = _pending_differences(accounts, _expected_pending(holds.values()))
    if not differing:
        return []
    fresh_accounts = store.accounts(list(differing))
    known = [i for i, t in holds.items() if t.status is TransactionStatus.PENDING]
    fresh_holds = store.transactions(known)
    for day in [last_read_day, *_days(last_read_day, today)]:
        fresh_holds.update({t.id: t for t in store.transactions_created(day)})
    expected = _expected_pending(fresh_holds.values())
    problems = []
    for account_id, (want_out, want_in) in sorted(
        _pending_differences(fresh_accounts, expected).items()
    ):
        account = fresh_accounts[account_id]
        problems.append(
            _mismatch(
                "pending_amount",
                f"pending_outgoing {account.pending_out} and pending_incoming "
                f"{account.pending_in}, its open holds give {want_out} and {want_in}",
                account_id=account_id,
                expected=f"{want_out}/{want_in}",
                actual=f"{account.pending_out}/{account.pending_in}",
            )
        )
    return problems


def reconcile(
    store: ReconciliationStore,
    day: str,
    gateway: Any | None = None,
    *,
    on_read: Callable[[str], None] | None = None,
    now: Callable[[], str] = now_iso,
) -> Outcome:
    """Compute the report of ``day`` and what to write; reads only."""
    cutoff = closing_cutoff(now())
    final = cutoff[:10] > day
    previous = _previous(store, day)
    swept: list[AccountResult] = []
    if previous is None:
        # First run: every transaction and account up to the end of the day, from the start.
        transactions = [t for t in store.all_transactions() if t.created_at[:10] <= day]
        account_ids = store.all_account_ids()
        results, missing = _check_accounts(
            store, account_ids, day, checkpoints_before=None, on_read=on_read, cutoff=cutoff
        )
        read = results  # the pending check looks at all of them
        # Accounts opened after the day have no entries by its end: not part of it.
        results = [r for r in results if r.closing is not None or r.mismatches]
        totals: dict[str, int] = defaultdict(int)
        holds = transactions
        first_day = min((t.created_at[:10] for t in transactions), default=day)
    else:
        first_day = _day_after(previous.day)
        window = _days(previous.day, day)
        transactions = []
        for window_day in window:
            transactions += store.transactions_created(window_day)
        carried = list(store.transactions(previous.open_holds).values())
        resolved = [t for t in carried if t.resolved_at and t.resolved_at[:10] <= day]
        account_ids = _touched([*transactions, *resolved])
        results, missing = _check_accounts(
            store,
            account_ids,
            day,
            checkpoints_before=first_day,
            on_read=on_read,
            cutoff=cutoff,
        )
        # The rolling sweep: untouched accounts too, from their first entry (mismatches only).
        swept, swept_missing = _check_accounts(
            store, _swept(store, window), day, checkpoints_before=None, on_read=None
        )
        missing += [m for m in swept_missing if m not in missing]
        read = [*results, *swept]
        totals = defaultdict(int, previous.totals)
        holds = [*carried, *transactions]

    mismatches: list[dict[str, Any]] = []
    for txn in transactions:
        unbalanced = _unbalanced(txn)
        if unbalanced is not None:
            mismatches.append(unbalanced)
    mismatches += missing
    checkpoints, failed = [], [m["account_id"] for m in missing]
    for result in results:
        mismatches += result.mismatches
        totals[result.currency] += 0  # every currency seen shows in the trial balance
        if not result.ok:
            failed.append(result.account_id)
        elif result.closing is not None:
            checkpoints.append(result.closing)
            totals[result.currency] += result.closing.posted - result.base_posted
    for result in swept:
        mismatches += [m for m in result.mismatches if m not in mismatches]
        if not result.ok and result.account_id not in failed:
            failed.append(result.account_id)
    trial_balance, problems = _trial_balance(totals)
    mismatches += problems
    accounts = {r.account_id: r.account for r in read if r.account is not None}
    mismatches += _check_pending(store, accounts, {t.id: t for t in holds}, day, cutoff[:10])

    stripe = _no_stripe()
    if gateway is not None:
        stripe, stripe_problems = _stripe_check(store, first_day, day, transactions, gateway)
        mismatches += stripe_problems

    open_holds = sorted({t.id for t in holds if _open_at_end_of(t, day)})
    report = Report(
        date=day,
        status=MISMATCH if mismatches else OK,
        transactions_checked=len(transactions),
        accounts_checked=len(
            {r.account_id for r in [*results, *swept]} | {m["account_id"] for m in missing}
        ),
        trial_balance=trial_balance,
        mismatches=mismatches,
        stripe=stripe,
    )
    return Outcome(report, checkpoints, dict(totals), open_holds, failed, final)


def _stripe_check(
    store: ReconciliationStore,
    first_day: str,
    day: str,
    transactions: list[Transaction],
    gateway: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stripe's balance transactions of the days ``first_day`` through ``day`` against the
    ledger's card transactions of those days (and an hour either side, for pairs that straddle
    midnight)."""
    start = datetime.fromisoformat(first_day).replace(tzinfo=UTC)
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    before, after = (start - STRIPE_SLACK), (end + STRIPE_SLACK)
    ledger = [t for t in transactions if first_day <= t.created_at[:10] <= day]
    ledger += store.transactions_created(
        before.date().isoformat(), since=before.strftime("%Y-%m-%dT%H:%M:%S")
    )
    ledger += store.transactions_created(
        end.date().isoformat(), until=after.strftime("%Y-%m-%dT%H:%M:%S")
    )
    items = gateway.list_balance_transactions(_epoch(before), _epoch(after))
    return match_stripe(day, ledger, items, first_day=first_day)


# -- side effects ---------------------------------------------------------------------------------
def emit_metric(report: Report) -> None:
    """One CloudWatch EMF line (stdout; Lambda ships it): mismatches found, 0 on a clean run.
    infra/operations.json alarms on it."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=METRIC_NAME,
        unit=MetricUnit.Count,
        value=len(report.mismatches),
        namespace=METRIC_NAMESPACE,
    ) as metric:
        metric.add_metadata("date", report.date)


def emit_reported(report: Report) -> None:
    """One EMF line saying the nightly run of ``report.date`` finished and reported (whatever it
    found): the ``reconciliation-missing`` alarm fires when none came for 26 hours."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=REPORTED_METRIC_NAME, unit=MetricUnit.Count, value=1, namespace=METRIC_NAMESPACE
    ) as metric:
        metric.add_metadata("date", report.date)


def publish_alert(report: Report, topic_arn: str | None, region: str) -> bool:
    """Publish a mismatch report to the alert topic; without a topic, log it only."""
    from chalicelib.api.log import logger

    summary = {
        "date": report.date,
        "status": report.status,
        "mismatches": len(report.mismatches),
        "first": report.mismatches[:10],
    }
    from chalicelib.adapters import alerts

    subject = f"Ledger reconciliation mismatch {report.date}"
    sent = alerts.publish(topic_arn, region, subject, json.dumps(summary, sort_keys=True))
    note = "" if sent else " (no ALERT_TOPIC_ARN)"
    logger.warning(f"reconciliation mismatch{note}", extra=summary)
    return sent


def run(
    day: str,
    *,
    store: ReconciliationStore,
    gateway: Any | None = None,
    alert_topic_arn: str | None = None,
    region: str = "us-east-1",
    on_read: Callable[[str], None] | None = None,
    now: Callable[[], str] = now_iso,
) -> Report:
    """Reconcile ``day``: emit the metric, alert on a mismatch, write the checkpoints and the
    report. Running it again for the same day gives the same report. The metric and the alert go
    first: a report that cannot be stored (a DynamoDB error, an item over 400 KB on a very bad
    night) must not silence them."""
    from chalicelib.adapters.dynamo.reconciliation_store import StoredReport

    outcome = reconcile(store, day, gateway, on_read=on_read, now=now)
    report = outcome.report
    emit_metric(report)
    if report.status == MISMATCH:
        publish_alert(report, alert_topic_arn, region)
    if outcome.final:  # a partial day leaves the checkpoints to the run after it
        store.delete_checkpoints(outcome.failed, day)
        store.put_checkpoints(outcome.checkpoints)
    stored = StoredReport(
        day, report.as_dict(), outcome.totals, outcome.open_holds, final=outcome.final
    )
    store.put_report(stored, now_iso())
    return report


# -- runs on demand (the admin route) ------------------------------------------------------------
# A run ends within the reconciliation function's 15-minute limit; a marker older than this
# belongs to a run that died (a timeout) and no longer blocks a new one.
RUN_STALE_AFTER = timedelta(minutes=16)
RUNNING = "running"
FAILED = "failed"


class RunStarter(Protocol):
    def start(self, day: str, run_id: str) -> None:
        """Have ``run_started(day, run_id, ...)`` run in another invocation (or thread)."""
        ...


def start(
    store: ReconciliationStore,
    day: str,
    starter: RunStarter,
    *,
    by: str,
    now: Callable[[], str] = now_iso,
) -> str | None:
    """Mark ``day`` running and hand its run to ``starter``; the run's id, or None when a run
    of that day is running already (it is not started twice)."""
    import uuid

    started_at = now()
    stale_before = to_iso(parse_iso(started_at) - RUN_STALE_AFTER)
    run_id = uuid.uuid4().hex
    if not store.begin_run(day, run_id, started_at, by, stale_before):
        return None
    try:
        starter.start(day, run_id)
    except Exception:
        store.end_run(day, run_id, FAILED, now_iso())
        raise
    return run_id


def run_started(
    day: str,
    run_id: str,
    *,
    store: ReconciliationStore,
    gateway: Any | None = None,
    alert_topic_arn: str | None = None,
    region: str = "us-east-1",
) -> Report:
    """The work of a run started by ``start``: ``run``, then its marker says how it ended."""
    try:
        report = run(
            day, store=store, gateway=gateway, alert_topic_arn=alert_topic_arn, region=region
        )
    except Exception as exc:
        store.end_run(day, run_id, FAILED, now_iso(), error=type(exc).__name__)
        raise
    store.end_run(day, run_id, report.status, now_iso())
    return report


def is_running(store: ReconciliationStore, day: str, now: Callable[[], str] = now_iso) -> bool:
    marker = store.run_marker(day)
    return (
        marker is not None
        and marker.status == RUNNING
        and parse_iso(marker.started_at) > parse_iso(now()) - RUN_STALE_AFTER
    )


def raise_if_failed(store: ReconciliationStore, day: str) -> None:
    """After waiting for a run: its failure as the run itself would have raised it.

    Raises:
        ProviderUnavailable: Stripe could not be reached (the run wrote nothing).
        RuntimeError: the run failed otherwise (its log says why).
    """
    marker = store.run_marker(day)
    if marker is None or marker.status != FAILED:
        return
    if marker.error == "ProviderUnavailable":
        raise ProviderUnavailable("Stripe could not be reached; the run wrote nothing")
    raise RuntimeError(f"the reconciliation run of {day} failed ({marker.error})")


def running_report(day: str) -> dict[str, Any]:
    """What ``GET`` shows while a run of ``day`` is under way (API.md: ``status`` running)."""
    return {"date": day, "status": RUNNING}


def get_report(store: ReconciliationStore, day: str) -> Report:
    """Raises ReconciliationNotFound when no run wrote a report for ``day``."""
    found = store.reports([day])
    if day not in found:
        raise ReconciliationNotFound(f"no reconciliation ran for {day}")
    return Report.from_dict(found[day].report)


def full_check(table_name: str | None = None) -> Report:
    """Re-verify every account from its first entry, every transaction and the trial balance,
    on ``table_name`` (None: the configured table). Reads only; no Stripe part. For audits and
    the restore drill."""
    from chalicelib.adapters.dynamo import models
    from chalicelib.adapters.dynamo.reconciliation_store import ReconciliationStore
    from chalicelib.config import get_settings

    settings = get_settings()
    meta = models.AccountItem.Meta
    if (meta.table_name, meta.region, meta.host) != (
        settings.table_name,
        settings.region,
        settings.dynamodb_endpoint,
    ):
        models.bind(settings)  # a command's first use; a bound process keeps its client
    store = ReconciliationStore(table_name or settings.table_name)
    return full_report(store)


def full_report(
    store: ReconciliationStore, *, today: str | None = None, now: Callable[[], str] = now_iso
) -> Report:
    cutoff = closing_cutoff(now())
    transactions = store.all_transactions()
    results, missing = _check_accounts(
        store,
        store.all_account_ids(),
        None,
        checkpoints_before=None,
        on_read=None,
        cutoff=cutoff,
    )
    mismatches = [m for m in map(_unbalanced, transactions) if m is not None] + missing
    totals: dict[str, int] = defaultdict(int)
    for result in results:
        mismatches += result.mismatches
        totals[result.currency] += result.closing_posted
    trial_balance, problems = _trial_balance(totals)
    mismatches += problems
    accounts = {r.account_id: r.account for r in results if r.account is not None}
    holds = {t.id: t for t in transactions}
    mismatches += _check_pending(store, accounts, holds, cutoff[:10], cutoff[:10])
    return Report(
        date=today or today_utc().isoformat(),
        status=MISMATCH if mismatches else OK,
        transactions_checked=len(transactions),
        accounts_checked=len(results) + len(missing),
        trial_balance=trial_balance,
        mismatches=mismatches,
        stripe=_no_stripe(),
    )


# -- the command line -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m chalicelib.services.reconciliation --full [--table NAME]``: print the report
    (JSON) and exit 1 on a mismatch. ``--date D`` runs (and records) the nightly check of D."""
    import argparse
    import contextlib
    import sys

    parser = argparse.ArgumentParser(prog="python -m chalicelib.services.reconciliation")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--full", action="store_true", help="re-verify every account (read only)")
    mode.add_argument("--date", help="run the nightly reconciliation of this day (YYYY-MM-DD)")
    parser.add_argument("--table", help="table name (default: TABLE_NAME)")
    args = parser.parse_args(argv)
    if args.full:
        report = full_check(args.table)
    else:
        from chalicelib.adapters.dynamo import models
        from chalicelib.adapters.dynamo.reconciliation_store import ReconciliationStore
        from chalicelib.config import get_settings

        settings = get_settings()
        models.bind(settings)
        with contextlib.redirect_stdout(sys.stderr):  # the EMF metric line: stdout is the report
            report = run(
                parse_day(args.date, today_utc()),
                store=ReconciliationStore(args.table or settings.table_name),
                alert_topic_arn=settings.alert_topic_arn,
                region=settings.region,
            )
    print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    return 0 if report.status == OK else 1


if __name__ == "__main__":
    raise SystemExit(main())
