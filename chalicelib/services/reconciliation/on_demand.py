"""Runs an admin starts (``POST /v1/admin/reconciliations``): a marker per day says a run is
under way, so a second request starts nothing; the run itself happens elsewhere (a
``RunStarter``: another Lambda invocation, or a thread locally) and closes the marker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.domain.errors import ProviderUnavailable
from chalicelib.services.reconciliation import nightly

if TYPE_CHECKING:
    from chalicelib.services.alerts import Alerts
    from chalicelib.services.reconciliation.nightly import BalanceTransactions
    from chalicelib.services.reconciliation.report import Report
    from chalicelib.services.reconciliation.store import ReconciliationStore

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
    gateway: BalanceTransactions | None = None,
    alerts: Alerts | None = None,
) -> Report:
    """The work of a run started by ``start``: ``nightly.run``, then its marker says how it
    ended."""
    try:
        report = nightly.run(day, store=store, gateway=gateway, alerts=alerts)
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
