"""The hold sweeper: every hold written with a deadline (``domain/holds.py``) is voided by the
first sweep after it, exactly once, through its owner's lifecycle when it has one.

A router, like ``services/stripe_events.py``: it is the one place where the lifecycles whose
holds carry deadlines meet (risk reviews, withdrawals); neither imports the other.

* a risk review's hold: the review turns ``expired`` and the hold is voided, in one write
  (``risk.expire_review``);
* a withdrawal's hold: the withdrawal turns ``expired``, the hold is released and the day's total
  given back, in one write (``withdrawals.expire_one``);
* a hold without an owner: voided alone, with a ``hold.expired`` audit event in the same write.

Every step is conditional (the hold still ``pending``, the owner still open), so a sweep that
runs twice, or alongside an admin's decision or the owners' own expiry jobs, changes nothing
more; a deadline whose hold already ended is only marked ``done``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.errors import HoldNotPending, InvalidState
from chalicelib.domain.holds import HoldExpiry, HoldOwner
from chalicelib.domain.transactions import TransactionStatus
from chalicelib.domain.users import AuditEvent
from chalicelib.services import risk as risk_service
from chalicelib.services import withdrawals as withdrawal_service
from chalicelib.services.ledger import LedgerService, SideWrite
from chalicelib.services.risk import Risk
from chalicelib.services.withdrawals import WithdrawalRepository


class HoldExpiries(Protocol):
    """``adapters.dynamo.hold_expiry_repository.DynamoHoldExpiries``."""

    def expiry_write(self, expiry: HoldExpiry) -> SideWrite: ...
    def due(self, now: str) -> Iterable[HoldExpiry]: ...
    def mark_done(self, expiry: HoldExpiry) -> None: ...


@dataclass
class SweepReport:
    expired: list[str] = field(default_factory=list)  # transaction ids voided by this sweep
    already_ended: list[str] = field(default_factory=list)  # posted or voided before


def sweep(
    ledger: LedgerService,
    expiries: HoldExpiries,
    *,
    risk: Risk,
    withdrawals: WithdrawalRepository,
    now: str | None = None,
) -> SweepReport:
    """Void every hold whose deadline is at or before ``now``, through its owner."""
    report = SweepReport()
    for expiry in list(expiries.due(now or now_iso())):
        txn = ledger.repository.read([], [expiry.transaction_id]).transactions.get(
            expiry.transaction_id
        )
        if txn is None or txn.status is not TransactionStatus.PENDING:
            report.already_ended.append(expiry.transaction_id)
        elif _end(ledger, expiry, risk, withdrawals):
            report.expired.append(expiry.transaction_id)
        else:
            report.already_ended.append(expiry.transaction_id)
        expiries.mark_done(expiry)
    return report


def _end(
    ledger: LedgerService, expiry: HoldExpiry, risk: Risk, withdrawals: WithdrawalRepository
) -> bool:
    if expiry.owner is HoldOwner.REVIEW:
        return risk_service.expire_review(ledger, risk, expiry.owner_id)
    if expiry.owner is HoldOwner.WITHDRAWAL:
        return withdrawal_service.expire_one(ledger, withdrawals, expiry.owner_id)
    event = AuditEvent.new(
        "hold.expired",
        at=now_iso(),
        actor_id="system",
        target=expiry.transaction_id,
        ip=None,
        deadline=expiry.expires_at,
    )
    try:
        ledger.void_pending(expiry.transaction_id, extra=[ledger.repository.audit(event)])
    except (HoldNotPending, InvalidState):
        return False
    return True
