"""What reconciliation reads and writes, as the service sees it: the ``ReconciliationStore``
port (the values it carries are ``chalicelib.domain.reconciliation``'s, re-exported here).
``chalicelib.adapters.dynamo.reconciliation_store`` keeps them in the table (reports,
checkpoints, run markers) and reads the ledger's items for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from chalicelib.domain.accounts import Account
from chalicelib.domain.reconciliation import Checkpoint, RunMarker, StoredReport
from chalicelib.domain.transactions import Entry, Transaction

__all__ = ["Checkpoint", "ReconciliationStore", "RunMarker", "StoredReport"]


class ReconciliationStore(Protocol):
    """The ledger as reconciliation reads it (strongly consistent where it matters), and the
    only items a run writes: checkpoints, reports and run markers. Never a balance."""

    # -- ledger reads
    def accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        """The accounts that exist among ``account_ids``, by id (consistent reads)."""
        ...

    def transactions(self, transaction_ids: Iterable[str]) -> dict[str, Transaction]:
        """The transactions that exist among ``transaction_ids``, by id."""
        ...

    def transactions_created(
        self, day: str, since: str | None = None, until: str | None = None
    ) -> list[Transaction]:
        """Transactions created on ``day``, optionally within [since, until], oldest first."""
        ...

    def all_transactions(self) -> list[Transaction]:
        """Every transaction, oldest first: for the full audit, never for the nightly run."""
        ...

    def all_account_ids(self) -> list[str]:
        """Every account id, sorted."""
        ...

    def entries_after(self, account_id: str, after_sk: str | None) -> list[tuple[str, Entry]]:
        """An account's entries after ``after_sk`` (all when None), oldest first, with their
        sort keys (a checkpoint names where it stopped by one)."""
        ...

    # -- checkpoints
    def latest_checkpoint(self, account_id: str, before_day: str) -> Checkpoint | None:
        """The account's newest checkpoint dated before ``before_day``."""
        ...

    def put_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None: ...

    def delete_checkpoints(self, account_ids: Iterable[str], day: str) -> None:
        """Remove the accounts' checkpoints dated ``day`` (absent ones are no-ops)."""
        ...

    # -- runs started on demand
    def begin_run(self, day: str, run_id: str, started_at: str, by: str, stale_before: str) -> bool:
        """Mark a run of ``day`` running; False when another one, started after
        ``stale_before``, is running."""
        ...

    def end_run(
        self, day: str, run_id: str, status: str, ended_at: str, error: str | None = None
    ) -> None:
        """Record how the run ``run_id`` ended (nothing if a later run has taken the marker)."""
        ...

    def run_marker(self, day: str) -> RunMarker | None: ...

    # -- reports
    def put_report(self, stored: StoredReport, ran_at: str) -> None: ...

    def reports(self, days: Iterable[str]) -> dict[str, StoredReport]: ...
