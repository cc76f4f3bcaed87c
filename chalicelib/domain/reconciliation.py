"""What reconciliation keeps between runs: per-account checkpoints, the stored report of a day,
and the marker of a run under way. Plain values: the service computes them
(``chalicelib.services.reconciliation``), the store keeps them
(``chalicelib.adapters.dynamo.reconciliation_store``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    """An account verified up to the end of ``day``: its last entry then, and the balance."""

    account_id: str
    day: str
    seq: int
    posted: int
    entry_sk: str | None  # the SK of the entry with ``seq`` (None before the first entry)


@dataclass(frozen=True)
class StoredReport:
    """A run's report and what the next day's run starts from."""

    day: str
    report: dict[str, Any]
    totals: dict[str, int]  # per currency: the sum of every account's checkpointed balance
    open_holds: list[str]  # holds still pending at the end of ``day``
    # False for a run made before ``day`` ended (a partial day): never the start of a later run.
    final: bool = True


@dataclass(frozen=True)
class RunMarker:
    run_id: str
    status: str  # running, ok, mismatch or failed
    started_at: str
    error: str | None  # a failed run's error class
