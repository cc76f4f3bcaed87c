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

The package:

* ``checks``: the checks themselves, over plain values (accounts, entries, transactions, Stripe's
  balance transactions); no I/O;
* ``nightly``: a run (what to read, the checks, the checkpoints and report to write) and the
  full audit (``full_report``);
* ``on_demand``: runs an admin starts, with a marker per day;
* ``alerting``: the metric, the heartbeat and the alert a run sends;
* ``store``: the ``ReconciliationStore`` port (``adapters/dynamo/reconciliation_store.py``);
* ``report``, ``dates``: the report's shape and the days a run covers.

Concrete adapters (the store, Stripe, the alert topic) come from the callers: the schedule and
the admin routes (``chalicelib/api/reconciliations.py``), ``python -m infra.reconcile``, the
restore drill.
"""

from chalicelib.services.reconciliation.alerting import emit_metric, emit_reported, publish_alert
from chalicelib.services.reconciliation.checks import (
    STRIPE_SLACK,
    SWEEP_DAYS,
    AccountResult,
    match_stripe,
    sweep_bucket,
    verify_account,
)
from chalicelib.services.reconciliation.dates import (
    CUTOFF_MARGIN,
    closing_cutoff,
    parse_day,
    today_utc,
    yesterday_utc,
)
from chalicelib.services.reconciliation.nightly import (
    BalanceTransactions,
    Outcome,
    full_report,
    get_report,
    reconcile,
    run,
)
from chalicelib.services.reconciliation.on_demand import (
    FAILED,
    RUNNING,
    RunStarter,
    is_running,
    raise_if_failed,
    run_started,
    running_report,
    start,
)
from chalicelib.services.reconciliation.report import MISMATCH, OK, Report
from chalicelib.services.reconciliation.store import (
    Checkpoint,
    ReconciliationStore,
    RunMarker,
    StoredReport,
)

__all__ = [
    "CUTOFF_MARGIN",
    "FAILED",
    "MISMATCH",
    "OK",
    "RUNNING",
    "STRIPE_SLACK",
    "SWEEP_DAYS",
    "AccountResult",
    "BalanceTransactions",
    "Checkpoint",
    "Outcome",
    "ReconciliationStore",
    "Report",
    "RunMarker",
    "RunStarter",
    "StoredReport",
    "closing_cutoff",
    "emit_metric",
    "emit_reported",
    "full_report",
    "get_report",
    "is_running",
    "match_stripe",
    "parse_day",
    "publish_alert",
    "raise_if_failed",
    "reconcile",
    "run",
    "run_started",
    "running_report",
    "start",
    "sweep_bucket",
    "today_utc",
    "verify_account",
    "yesterday_utc",
]
