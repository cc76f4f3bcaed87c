"""A reconciliation run: what to read for day ``D``, the checks over it, and what to write.

See the package's docstring for what a run proves and why its cost grows with the day's activity
only. This module reads through the ``ReconciliationStore`` port and Stripe's
``list_balance_transactions``, hands what it read to ``checks``, and writes only reports and
checkpoints; the metric and the alert go out through ``alerting``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.errors import ReconciliationNotFound
from chalicelib.domain.transactions import TransactionStatus
from chalicelib.services.reconciliation import alerting
from chalicelib.services.reconciliation.checks import (
    STRIPE_SLACK,
    AccountResult,
    account_missing,
    epoch,
    expected_pending,
    match_stripe,
    open_at_end_of,
    pending_differences,
    pending_mismatches,
    stripe_window,
    sweep_bucket,
    sweep_buckets,
    touched,
    trial_balance,
    unbalanced,
    verify_account,
)
from chalicelib.services.reconciliation.dates import (
    closing_cutoff,
    day_after,
    days_between,
    today_utc,
)
from chalicelib.services.reconciliation.report import MISMATCH, OK, Report, no_stripe
from chalicelib.services.reconciliation.store import (
    Checkpoint,
    ReconciliationStore,
    StoredReport,
)

if TYPE_CHECKING:
    from chalicelib.adapters.stripe_gateway import BalanceTransaction
    from chalicelib.domain.accounts import Account
    from chalicelib.domain.transactions import Transaction
    from chalicelib.services.alerts import Alerts

LOOKBACK_DAYS = 35
READ_THREADS = 8  # accounts verified at once (their reads overlap)


class BalanceTransactions(Protocol):
    """Stripe as the run reads it (``StripeGateway``)."""

    def list_balance_transactions(self, start: int, end: int) -> list[BalanceTransaction]:
        """Balance transactions created in [start, end) (epoch seconds).

        Raises:
            ProviderUnavailable: Stripe could not be reached.
        """
        ...


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


def run(
    day: str,
    *,
    store: ReconciliationStore,
    gateway: BalanceTransactions | None = None,
    alerts: Alerts | None = None,
    on_read: Callable[[str], None] | None = None,
    now: Callable[[], str] = now_iso,
) -> Report:
    """Reconcile ``day``: emit the metric, alert on a mismatch, write the checkpoints and the
    report. Running it again for the same day gives the same report. The metric and the alert go
    first: a report that cannot be stored (a DynamoDB error, an item over 400 KB on a very bad
    night) must not silence them. Without ``alerts`` a mismatch is logged only; without
    ``gateway`` the Stripe part is left out."""
    outcome = reconcile(store, day, gateway, on_read=on_read, now=now)
    report = outcome.report
    alerting.emit_metric(report)
    if report.status == MISMATCH:
        alerting.publish_alert(report, alerts)
    if outcome.final:  # a partial day leaves the checkpoints to the run after it
        store.delete_checkpoints(outcome.failed, day)
        store.put_checkpoints(outcome.checkpoints)
    stored = StoredReport(
        day, report.as_dict(), outcome.totals, outcome.open_holds, final=outcome.final
    )
    store.put_report(stored, now_iso())
    return report


def get_report(store: ReconciliationStore, day: str) -> Report:
    """Raises ReconciliationNotFound when no run wrote a report for ``day``."""
    found = store.reports([day])
    if day not in found:
        raise ReconciliationNotFound(f"no reconciliation ran for {day}")
    return Report.from_dict(found[day].report)


def reconcile(
    store: ReconciliationStore,
    day: str,
    gateway: BalanceTransactions | None = None,
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
        first_day = day_after(previous.day)
        window = days_between(previous.day, day)
        transactions = []
        for window_day in window:
            transactions += store.transactions_created(window_day)
        carried = list(store.transactions(previous.open_holds).values())
        resolved = [t for t in carried if t.resolved_at and t.resolved_at[:10] <= day]
        account_ids = touched([*transactions, *resolved])
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
        problem = unbalanced(txn)
        if problem is not None:
            mismatches.append(problem)
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
    shown, problems = trial_balance(totals)
    mismatches += problems
    accounts = {r.account_id: r.account for r in read if r.account is not None}
    mismatches += _check_pending(store, accounts, {t.id: t for t in holds}, day, cutoff[:10])

    stripe = no_stripe()
    if gateway is not None:
        stripe, stripe_problems = _stripe_check(store, first_day, day, transactions, gateway)
        mismatches += stripe_problems

    open_holds = sorted({t.id for t in holds if open_at_end_of(t, day)})
    report = Report(
        date=day,
        status=MISMATCH if mismatches else OK,
        transactions_checked=len(transactions),
        accounts_checked=len(
            {r.account_id for r in [*results, *swept]} | {m["account_id"] for m in missing}
        ),
        trial_balance=shown,
        mismatches=mismatches,
        stripe=stripe,
    )
    return Outcome(report, checkpoints, dict(totals), open_holds, failed, final)


def full_report(
    store: ReconciliationStore, *, today: str | None = None, now: Callable[[], str] = now_iso
) -> Report:
    """Re-verify every account from its first entry, every transaction and the trial balance.
    Reads only; no Stripe part. For audits and the restore drill (a store on another table
    checks that table)."""
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
    mismatches = [m for m in map(unbalanced, transactions) if m is not None] + missing
    totals: dict[str, int] = defaultdict(int)
    for result in results:
        mismatches += result.mismatches
        totals[result.currency] += result.closing_posted
    shown, problems = trial_balance(totals)
    mismatches += problems
    accounts = {r.account_id: r.account for r in results if r.account is not None}
    holds = {t.id: t for t in transactions}
    mismatches += _check_pending(store, accounts, holds, cutoff[:10], cutoff[:10])
    return Report(
        date=today or today_utc().isoformat(),
        status=MISMATCH if mismatches else OK,
        transactions_checked=len(transactions),
        accounts_checked=len(results) + len(missing),
        trial_balance=shown,
        mismatches=mismatches,
        stripe=no_stripe(),
    )


# -- reads ----------------------------------------------------------------------------------------
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


def _swept(store: ReconciliationStore, days: list[str]) -> list[str]:
    """The accounts the rolling sweep re-verifies from their first entry in a run covering
    ``days``: one seventh of all accounts per day covered, so a run after a missed night sweeps
    that night's share too, and every account is fully verified at least once every 7 days."""
    buckets = sweep_buckets(days)
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
        account_missing(account_id) for account_id in account_ids if account_id not in accounts
    ]

    def check(account_id: str) -> AccountResult:
        checkpoint = (
            store.latest_checkpoint(account_id, checkpoints_before) if checkpoints_before else None
        )
        if on_read is not None:
            on_read(account_id)  # a test hook: writes may land between the two reads
        entries = store.entries_after(account_id, checkpoint.entry_sk if checkpoint else None)
        return verify_account(accounts[account_id], checkpoint, entries, day, cutoff=cutoff)

    present = [a for a in account_ids if a in accounts]
    if len(present) < 2:
        return [check(a) for a in present], missing
    # Each account costs two queries that wait on the network, and accounts are independent:
    # READ_THREADS of them at a time (results in the order asked, so reports are stable).
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(present))) as pool:
        return list(pool.map(check, present)), missing


def _check_pending(
    store: ReconciliationStore,
    accounts: dict[str, Account],
    holds: dict[str, Transaction],
    last_read_day: str,
    today: str,
) -> list[dict[str, Any]]:
    """Each account's ``pending_out`` / ``pending_in`` against the holds open now.

    ``holds`` are the transactions the run read, up to ``last_read_day``, their status as then.
    An account that disagrees with them is looked at once more before it is reported: money moves
    while the run reads (a hold made or resolved after its transactions were read), so its item,
    the status of every hold and the transactions created from ``last_read_day`` to ``today`` are
    read again. Only accounts that disagree cost that second look; normally none."""
    differing = pending_differences(accounts, expected_pending(holds.values()))
    if not differing:
        return []
    fresh_accounts = store.accounts(list(differing))
    known = [i for i, t in holds.items() if t.status is TransactionStatus.PENDING]
    fresh_holds = store.transactions(known)
    for day in [last_read_day, *days_between(last_read_day, today)]:
        fresh_holds.update({t.id: t for t in store.transactions_created(day)})
    return pending_mismatches(fresh_accounts, fresh_holds.values())


def _stripe_check(
    store: ReconciliationStore,
    first_day: str,
    day: str,
    transactions: list[Transaction],
    gateway: BalanceTransactions,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stripe's balance transactions of the days ``first_day`` through ``day`` against the
    ledger's card transactions of those days (and an hour either side, for pairs that straddle
    midnight)."""
    start, end = stripe_window(first_day, day)
    before, after = (start - STRIPE_SLACK), (end + STRIPE_SLACK)
    ledger = [t for t in transactions if first_day <= t.created_at[:10] <= day]
    ledger += store.transactions_created(
        before.date().isoformat(), since=before.strftime("%Y-%m-%dT%H:%M:%S")
    )
    ledger += store.transactions_created(
        end.date().isoformat(), until=after.strftime("%Y-%m-%dT%H:%M:%S")
    )
    items = gateway.list_balance_transactions(epoch(before), epoch(after))
    return match_stripe(day, ledger, items, first_day=first_day)
