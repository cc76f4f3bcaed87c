"""Operators' adjustments (API.md, "Admin"): a correction of one user or facility account
against the platform's adjustment account of its currency, with four eyes above a threshold.

The rules (signs, who may approve, exactly once) are the domain's
(``chalicelib/domain/adjustments.py``); here the use cases:

* ``request``: below the threshold the adjustment posts at once (the transaction, the adjustment
  and its audit event in one write); at or above it, it is stored ``pending_approval`` with its
  audit event and moves no money yet;
* ``approve``: another admin approves it; the transaction (its id derived from the adjustment's)
  is written with the approval, on the condition that the adjustment is still pending, so two
  approvals at once post it once. The approver who posted it gets the same transaction back if
  they ask again (a retry after a lost answer); anyone else ``409 invalid_state``. A negative
  adjustment the account cannot cover is ``422 insufficient_funds`` and stays pending.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind
from chalicelib.domain.adjustments import Adjustment, AdjustmentStatus, needs_approval
from chalicelib.domain.errors import (
    AccountNotFound,
    AdjustmentNotFound,
    IdempotencyKeyReused,
    InvalidRequest,
    InvalidState,
    RateUnavailable,
)
from chalicelib.domain.fx import RateSource, convert
from chalicelib.domain.money import parse_amount, parse_signed_amount
from chalicelib.domain.transactions import Transaction, TransactionType
from chalicelib.domain.users import AuditEvent, User
from chalicelib.services.ledger import LedgerService, PostingRequest, Recorded
from chalicelib.services.operators import MAX_ID_LENGTH, reason_text

REQUESTED_ACTION = "adjustment.requested"
POSTED_ACTION = "adjustment.posted"
APPROVED_ACTION = "adjustment.approved"


class AdjustmentRepository(Protocol):
    def get(self, adjustment_id: str) -> Adjustment | None: ...
    def request(self, adjustment: Adjustment, event: AuditEvent) -> None: ...
    def posted_writes(self, adjustment: Adjustment, event: AuditEvent) -> list: ...


@dataclass(frozen=True)
class Requested:
    adjustment: Adjustment
    transaction: Transaction | None  # None: waiting for another admin's approval


def threshold_minor(text: str) -> int:
    """The configured threshold, a USD decimal string, in USD minor units."""
    return parse_amount(text, "USD")


def usd_equivalent(amount: int, code: str, rates: RateSource | None) -> int | None:
    if code == "USD":
        return amount
    if rates is None:
        return None
    try:
        return convert(abs(amount), code, "USD", rates.rate(code, "USD"))
    except RateUnavailable:
        return None


def _event(action: str, admin: User, adjustment: Adjustment, ip: str | None) -> AuditEvent:
    return AuditEvent.new(
        action,
        at=now_iso(),
        actor_id=admin.id,
        target=adjustment.account_id,
        ip=ip,
        adjustment_id=adjustment.id,
        amount=str(adjustment.amount),
        currency=adjustment.currency,
        reason=adjustment.reason,
        requested_by=adjustment.requested_by,
    )


def request(
    ledger: LedgerService,
    adjustments: AdjustmentRepository,
    rates: RateSource | None,
    admin: User,
    *,
    account_id: str,
    amount: str,
    reason: str,
    threshold: int,
    ip: str | None,
    request_mark: str | None = None,
) -> Requested:
    """Raises InvalidRequest, AccountNotFound, InvalidAmount, InsufficientFunds,
    VersionConflict.

    The adjustment's id is derived from ``request_mark`` (``api.idempotency.request_mark``: the
    admin and the Idempotency-Key) when there is one: the same request sent again after its
    answer was lost (the write committed) finds its own adjustment and answers as the first
    time, instead of adjusting the account a second time."""
    reason = reason_text(reason)
    account = None
    if 0 < len(account_id) <= MAX_ID_LENGTH:
        account = ledger.repository.read([account_id]).accounts.get(account_id)
    if account is None:
        raise AccountNotFound(account_id)
    if account.owner_type is OwnerType.PLATFORM:
        raise InvalidRequest(
            "adjustments apply to user and facility accounts",
            [{"field": "account_id", "message": "a platform account"}],
        )
    minor = parse_signed_amount(amount, account.currency)
    waits = needs_approval(usd_equivalent(minor, account.currency, rates), threshold)
    adjustment_id = f"adj_{request_mark or uuid.uuid4().hex}"
    earlier = adjustments.get(adjustment_id) if request_mark else None
    if earlier is not None:
        if (earlier.account_id, earlier.amount, earlier.reason) != (account.id, minor, reason):
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        return _again(ledger, earlier)
    adjustment = Adjustment(
        id=adjustment_id,
        account_id=account.id,
        currency=account.currency,
        amount=minor,
        reason=reason,
        status=AdjustmentStatus.PENDING_APPROVAL if waits else AdjustmentStatus.POSTED,
        requested_by=admin.id,
        requested_at=now_iso(),
    )
    try:
        if waits:
            adjustments.request(adjustment, _event(REQUESTED_ACTION, admin, adjustment, ip))
            return Requested(adjustment, None)
        event = _event(POSTED_ACTION, admin, adjustment, ip)
        recorded = _post(ledger, adjustments, adjustment, event)
    except InvalidState:  # the same request, racing itself: the first one wrote it
        earlier = adjustments.get(adjustment_id)
        if earlier is None:
            raise
        return _again(ledger, earlier)
    return Requested(adjustment, recorded.transaction)


def _again(ledger: LedgerService, earlier: Adjustment) -> Requested:
    """The answer a request that already wrote ``earlier`` gave (or would have given)."""
    if earlier.status is AdjustmentStatus.PENDING_APPROVAL or earlier.approved_by is not None:
        return Requested(earlier, None)  # still waiting, or approved since: the 202 it got
    return Requested(earlier, _posted(ledger, earlier))


def approve(
    ledger: LedgerService,
    adjustments: AdjustmentRepository,
    admin: User,
    adjustment_id: str,
    ip: str | None,
) -> Transaction:
    """Raises AdjustmentNotFound, Forbidden (the admin who asked), InvalidState (not pending),
    InsufficientFunds, VersionConflict."""
    found = adjustments.get(adjustment_id) if 0 < len(adjustment_id) <= MAX_ID_LENGTH else None
    if found is None:
        raise AdjustmentNotFound(f"adjustment {adjustment_id} does not exist")
    if found.status is AdjustmentStatus.POSTED and found.approved_by == admin.id:
        return _posted(ledger, found)  # this admin's retry (the first answer was lost)
    approved = found.approved(admin.id, now_iso())
    recorded = _post(ledger, adjustments, approved, _event(APPROVED_ACTION, admin, approved, ip))
    if not recorded.created:  # posted meanwhile: by this admin (a retry) or by another one
        now = adjustments.get(adjustment_id)
        if now is None or now.approved_by != admin.id:
            raise InvalidState(f"adjustment {adjustment_id} was approved by another admin")
    return recorded.transaction


def _posted(ledger: LedgerService, adjustment: Adjustment) -> Transaction:
    txn_id = adjustment.transaction_id
    found = ledger.repository.read([], [txn_id]).transactions.get(txn_id)
    if found is None:  # an approval with no money would break the write's atomicity
        raise InvalidState(f"adjustment {adjustment.id} is posted but has no transaction")
    return found


def _post(
    ledger: LedgerService,
    adjustments: AdjustmentRepository,
    adjustment: Adjustment,
    event: AuditEvent,
) -> Recorded:
    platform = PlatformAccount(PlatformKind.ADJUSTMENTS, adjustment.currency)
    code = adjustment.currency
    return ledger.record(
        transaction_id=adjustment.transaction_id,
        type=TransactionType.ADJUSTMENT,
        postings=[
            PostingRequest(adjustment.account_id, code, adjustment.amount),
            PostingRequest(platform, code, -adjustment.amount),
        ],
        memo=f"adjustment: {adjustment.reason}",
        metadata={
            "adjustment_id": adjustment.id,
            "reason": adjustment.reason,
            "requested_by": adjustment.requested_by,
        },
        extra=adjustments.posted_writes(adjustment, event),
    )
