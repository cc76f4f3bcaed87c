"""Withdrawals: request (a hold), cancel, and an admin's approve or reject.

Life of a withdrawal: ``pending_review`` (the amount is held: ``available`` drops, ``posted`` does
not) -> ``processing`` (approved; a payout request is queued for the crypto gateway in the same
write, then handed to the gateway, or later by the retry: ``chalicelib/services/payouts.py``) ->
``completed`` / ``failed`` (the gateway's webhooks, ``chalicelib/services/crypto.py``); or
``pending_review`` -> ``cancelled`` (by the user) / ``rejected`` (by an admin), which void the hold.
The lifecycle and its rules are ``chalicelib/domain/withdrawals.py``; a ``WithdrawalRepository``
(``adapters/dynamo/withdrawal_repository.py``) stores each transition as a conditional write on
the current status, in the same transaction as the hold's change, so two decisions cannot both
happen.

Limits: a minimum per currency, and a daily total per user and currency kept in a counter item
that the request's write raises with a condition (``total + amount <= limit``), so concurrent
requests cannot exceed it either. Cancelled and rejected amounts are given back to the day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Protocol

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.adapters.crypto_gateway import CryptoGateway
from chalicelib.config import Settings
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    EmailUnverified,
    HoldNotPending,
    InvalidRequest,
    InvalidState,
    VersionConflict,
    WithdrawalNotFound,
    WithdrawalNotPendingReview,
)
from chalicelib.domain.holds import HoldExpiry, HoldOwner
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.payouts import PayoutRequest, PayoutStatus
from chalicelib.domain.risk import Check, Operation
from chalicelib.domain.transactions import TransactionType
from chalicelib.domain.users import AuditEvent, User
from chalicelib.domain.withdrawals import Withdrawal, WithdrawalStatus, checked_reason
from chalicelib.services import payouts
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite
from chalicelib.services.payouts import PayoutRepository
from chalicelib.services.risk import HoldDeadlines, Risk, record_assessed

logger = Logger(child=True)
# How far back the expiry job looks past the review window: a withdrawal older than window +
# lookback would have been expired by one of the job's hourly runs over those days.
EXPIRY_LOOKBACK_DAYS = 30
STATUSES = tuple(status.value for status in WithdrawalStatus)


class WithdrawalRepository(Protocol):
    """Withdrawals and their daily totals
    (``adapters.dynamo.withdrawal_repository.DynamoWithdrawalRepository``)."""

    def get(self, withdrawal_id: str) -> Withdrawal | None: ...

    def requested_writes(self, w: Withdrawal, daily_limit: int | None) -> list[SideWrite]:
        """The new withdrawal (fails VersionConflict if its id is taken) and, under a daily
        limit, its amount added to the day's total (fails WithdrawalLimitExceeded past it)."""
        ...

    def decided_writes(self, w: Withdrawal, event: AuditEvent | None) -> list[SideWrite]:
        """``w`` as decided, if still pending review (fails WithdrawalNotPendingReview), and the
        audit event."""
        ...

    def settled_writes(self, w: Withdrawal, event: AuditEvent | None) -> list[SideWrite]:
        """``w`` as settled, if still processing (fails WithdrawalNotProcessing), and the audit
        event."""
        ...

    def given_back(self, w: Withdrawal) -> list[SideWrite]:
        """``w``'s amount off its day's total; nothing when that total does not exist."""
        ...

    def approve(self, w: Withdrawal, event: AuditEvent, with_writes: Sequence[SideWrite]) -> None:
        """Store the approval, ``with_writes`` and the event in one write, without money.
        Raises WithdrawalNotPendingReview (nothing written)."""
        ...

    def pending_review_between(self, oldest: str, newest: str) -> Iterable[Withdrawal]: ...

    def page(
        self, status: WithdrawalStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Withdrawal], str | None]:
        """Newest first; raises ValueError for a cursor it did not return."""
        ...


def give_back(withdrawals: WithdrawalRepository, w: Withdrawal) -> list[SideWrite]:
    """Return a voided (or failed) withdrawal's amount to its day's total, when that total
    still counts: the day is today and its counter exists. A withdrawal of a past day (its
    counter expires by TTL after 3 days), or of a currency without a daily limit (no counter),
    gives nothing back, so releasing its hold never depends on the counter being there."""
    if w.day != now_iso()[:10]:
        return []
    return withdrawals.given_back(w)


def _event(action: str, actor: str, w: Withdrawal, ip: str | None, **details: str) -> AuditEvent:
    return AuditEvent.new(
        action,
        at=now_iso(),
        actor_id=actor,
        target=w.id,
        ip=ip,
        amount=str(w.amount),
        currency=w.currency,
        **details,
    )


def get(withdrawals: WithdrawalRepository, withdrawal_id: str) -> Withdrawal | None:
    return withdrawals.get(withdrawal_id)


def get_own(withdrawals: WithdrawalRepository, user: User, withdrawal_id: str) -> Withdrawal:
    """Raises WithdrawalNotFound for another user's withdrawal, exactly as for a missing one."""
    found = withdrawals.get(withdrawal_id)
    if found is None or found.user_id != user.id:
        raise WithdrawalNotFound(f"withdrawal {withdrawal_id} not found")
    return found


def _found(withdrawals: WithdrawalRepository, withdrawal_id: str) -> Withdrawal:
    found = withdrawals.get(withdrawal_id)
    if found is None:
        raise WithdrawalNotFound(f"withdrawal {withdrawal_id} not found")
    return found


def request(
    ledger: LedgerService,
    withdrawals: WithdrawalRepository,
    settings: Settings,
    risk: Risk,
    *,
    user: User,
    amount: str,
    currency_code: str,
    destination: str,
    idempotency_key: str,
    deadlines: HoldDeadlines | None = None,
) -> Withdrawal:
    """Hold the amount and queue the withdrawal for review.

    With ``deadlines``, the hold is written with its deadline (``WITHDRAWAL_REVIEW_DAYS`` after
    the request), which the hold sweeper enforces through ``expire_one``.

    Risk rules are checked first (``services.risk.record_assessed``): ``block`` refuses it;
    ``review`` names the rule on the withdrawal (``risk_rule``), whose own review then decides
    it: one hold, one review.

    Raises (in order): EmailUnverified, UnsupportedCurrency, InvalidAmount, InvalidRequest
    (destination), AmountBelowMinimum, WithdrawalLimitExceeded (the request alone),
    RiskDeclined, WithdrawalLimitExceeded (with the day's total), InsufficientFunds.
    """
    if not user.email_verified:
        raise EmailUnverified("verify your email before withdrawing")
    code = currency(currency_code).code
    minor = parse_amount(amount, code)
    daily = settings.withdrawal_daily_limits.get(code)
    withdrawal = Withdrawal.requested(
        user_id=user.id,
        currency=code,
        amount=minor,
        destination=destination,
        idempotency_key=idempotency_key,
        at=now_iso(),
        minimum=settings.withdrawal_minimums.get(code),
        daily_limit=daily,
    )
    check = Check(
        user_id=user.id,
        operation=Operation.WITHDRAWAL,
        amount=minor,
        currency=code,
        at=withdrawal.created_at,
        recipient=f"address:{code}:{destination}",
        user_created_at=user.created_at,
    )
    deadline = []
    if deadlines is not None:
        due = parse_iso(withdrawal.created_at) + timedelta(days=settings.withdrawal_review_days)
        expiry = HoldExpiry(
            withdrawal.transaction_id, to_iso(due), HoldOwner.WITHDRAWAL, withdrawal.id
        )
        deadline.append(deadlines.expiry_write(expiry))
    guarded = record_assessed(
        ledger,
        risk,
        check,
        transaction_id=withdrawal.transaction_id,
        type=TransactionType.WITHDRAWAL,
        postings=[
            PostingRequest(wallet_id(OwnerType.USER, user.id, code), code, -minor),
            PostingRequest(PlatformAccount(PlatformKind.CRYPTO_CUSTODY, code), code, minor),
        ],
        memo=f"withdrawal to {destination}",
        metadata={"withdrawal_id": withdrawal.id, "destination": destination},
        pending=True,
        lifecycle_review=True,
        extra_for=lambda _txn, verdict, _review: [
            *withdrawals.requested_writes(replace(withdrawal, risk_rule=verdict.rule_id), daily),
            *deadline,
        ],
    )
    if guarded.recorded.created:
        return replace(withdrawal, risk_rule=guarded.verdict.rule_id)
    # A retry of a request that was recorded before: answer with the withdrawal as it is now.
    stored = withdrawals.get(withdrawal.id)
    if stored is None:
        raise VersionConflict("withdrawal record missing for an existing hold")
    return stored


def _release(
    ledger: LedgerService,
    withdrawals: WithdrawalRepository,
    w: Withdrawal,
    status: WithdrawalStatus,
    decide: Callable[[Withdrawal], Withdrawal],
    *,
    event: AuditEvent | None,
    request: str | None,
) -> Withdrawal:
    """Decide a pending withdrawal (``decide``: cancel, reject, expire) and release its hold,
    giving its amount back to the day, in one write."""
    if w.decided_by_request(status, request):
        return w
    decided = decide(w)
    extra = [*withdrawals.decided_writes(decided, event), *give_back(withdrawals, w)]
    try:
        ledger.void_pending(w.transaction_id, extra=extra)
    except (HoldNotPending, InvalidState) as exc:
        now = withdrawals.get(w.id)
        if now is not None and now.decided_by_request(status, request):
            return now  # a twin of this request (same key) got there first
        raise WithdrawalNotPendingReview(f"withdrawal {w.id} is no longer pending review") from exc
    return withdrawals.get(w.id) or decided


def cancel(
    ledger: LedgerService,
    withdrawals: WithdrawalRepository,
    user: User,
    withdrawal_id: str,
    request: str | None = None,
) -> Withdrawal:
    """The user takes the request back; the hold is released. Raises WithdrawalNotFound,
    WithdrawalNotPendingReview.

    ``request`` (``api.idempotency.request_mark``, when the call had an Idempotency-Key) is
    stored with the decision: the same request sent again, after an answer lost once the
    cancellation had committed, gets the cancelled withdrawal instead of ``invalid_state``."""
    w = get_own(withdrawals, user, withdrawal_id)
    return _release(
        ledger,
        withdrawals,
        w,
        WithdrawalStatus.CANCELLED,
        lambda found: found.cancelled(user.id, now_iso(), request),
        event=None,
        request=request,
    )


def reject(
    ledger: LedgerService,
    withdrawals: WithdrawalRepository,
    admin: User,
    withdrawal_id: str,
    reason: str,
    ip: str | None,
    request: str | None = None,
) -> Withdrawal:
    """An admin refuses it; the hold is released. Raises WithdrawalNotFound, InvalidRequest
    (reason), WithdrawalNotPendingReview. ``request``: as for ``cancel``."""
    w = _found(withdrawals, withdrawal_id)
    reason = checked_reason(reason)
    return _release(
        ledger,
        withdrawals,
        w,
        WithdrawalStatus.REJECTED,
        lambda found: found.rejected(admin.id, now_iso(), reason, request),
        event=_event("withdrawal.rejected", admin.id, w, ip, reason=reason),
        request=request,
    )


def settlement_writes(
    withdrawals: WithdrawalRepository,
    payout_requests: PayoutRepository,
    settled: Withdrawal,
    event: AuditEvent | None = None,
) -> list[SideWrite]:
    """The writes that end a ``processing`` withdrawal as ``settled`` (completed or failed,
    ``Withdrawal.completed`` / ``failed``): its status (only from processing), its payout
    request's, out of the "still to send" queue (the retry must not send it), and for a failure
    its amount given back to the day. Written with the posting or the release of its hold."""
    writes = [
        *withdrawals.settled_writes(settled, event),
        payout_requests.settled_write(settled.id, PayoutStatus(settled.status.value)),
    ]
    if settled.releases_hold:
        writes += give_back(withdrawals, settled)
    return writes


def fail_undeliverable(
    ledger: LedgerService,
    withdrawals: WithdrawalRepository,
    payout_requests: PayoutRepository,
    withdrawal_id: str,
    attempts: int,
) -> bool:
    """Give up a payout the gateway refused ``attempts`` times: the withdrawal turns ``failed``,
    its hold is released and its amount given back to the day's total, the payout request leaves
    the "still to send" queue, with an audit event, all in one write. False if it was settled
    meanwhile (a webhook) or is not processing: nothing is written then.
    """
    w = withdrawals.get(withdrawal_id)
    if w is None or w.status is not WithdrawalStatus.PROCESSING:
        return False
    failed = w.failed(now_iso(), f"the crypto gateway refused the payout {attempts} times")
    event = _event("withdrawal.payout_given_up", "system", w, None, attempts=str(attempts))
    extra = settlement_writes(withdrawals, payout_requests, failed, event)
    try:
        ledger.void_pending(w.transaction_id, extra=extra)
    except (HoldNotPending, InvalidState):
        return False
    return True


def approve(
    withdrawals: WithdrawalRepository,
    payout_requests: PayoutRepository,
    admin: User,
    withdrawal_id: str,
    ip: str | None,
    gateway: CryptoGateway | None = None,
    request: str | None = None,
) -> Withdrawal:
    """An admin approves it: status processing, and a payout request queued for the crypto
    gateway in the same write (the hold stays until the gateway reports the payout). Then, with
    a ``gateway``, the payout is handed to it (``send_payout``); a failure there leaves the
    request ``requested`` for a retry and does not undo the approval. ``request``: as for
    ``cancel``; the approval's retry also hands the payout over if it is still to send.

    Raises WithdrawalNotFound, WithdrawalNotPendingReview."""
    w = _found(withdrawals, withdrawal_id)
    if not w.decided_by_request(WithdrawalStatus.PROCESSING, request):
        now = now_iso()
        approved = w.approved(admin.id, now, request)
        payout = PayoutRequest.for_withdrawal(w.id, w.currency, w.amount, w.destination, now)
        withdrawals.approve(
            approved,
            _event("withdrawal.approved", admin.id, w, ip),
            [payout_requests.requested_write(payout)],
        )
    if gateway is not None:
        send_payout(gateway, withdrawals, payout_requests, w.id)
    return withdrawals.get(w.id) or w


def send_payout(
    gateway: CryptoGateway,
    withdrawals: WithdrawalRepository,
    payout_requests: PayoutRepository,
    withdrawal_id: str,
) -> bool:
    """Hand a ``requested`` payout to the gateway and mark it ``sent``; safe to call again.

    True if the gateway has it (now or before). False if it is not owed, another sender is
    handing it over right now, or the gateway failed (logged): then the request stays
    ``requested`` and ``payouts.retry_requested`` sends it later.
    """
    outcome = payouts.hand_off(gateway, payout_requests, withdrawals, withdrawal_id)
    return outcome in (payouts.HANDED_OVER, payouts.ALREADY_SENT)


def expire_one(
    ledger: LedgerService, withdrawals: WithdrawalRepository, withdrawal_id: str
) -> bool:
    """Expire one withdrawal still ``pending_review`` now (the hold sweeper found its deadline
    passed): ``expired``, hold released, the day's total given back when it still counts,
    audited, in one write. False if it was decided meanwhile (nothing written)."""
    w = withdrawals.get(withdrawal_id)
    if w is None or w.status is not WithdrawalStatus.PENDING_REVIEW:
        return False
    reason = "not reviewed before its deadline"
    try:
        _release(
            ledger,
            withdrawals,
            w,
            WithdrawalStatus.EXPIRED,
            lambda found: found.expired(now_iso(), reason),
            event=_event("withdrawal.expired", "system", w, None, reason=reason),
            request=None,
        )
    except InvalidState:
        return False
    return True


def expire_stale(
    ledger: LedgerService,
    withdrawals: WithdrawalRepository,
    review_days: int,
    now: str | None = None,
) -> list[str]:
    """Expire every withdrawal still ``pending_review`` ``review_days`` after it was made: status
    ``expired``, hold released (and the day's total given back when it still counts), audited,
    in one write each. Safe to run again and alongside an admin's decision (whichever writes
    first wins; the other finds it no longer pending). Returns the ids expired by this run."""
    moment = parse_iso(now or now_iso())
    cutoff = to_iso(moment - timedelta(days=review_days))
    oldest = to_iso(moment - timedelta(days=review_days + EXPIRY_LOOKBACK_DAYS))
    reason = f"not reviewed within {review_days} days"
    expired = []
    for w in withdrawals.pending_review_between(oldest, cutoff):
        try:
            _release(
                ledger,
                withdrawals,
                w,
                WithdrawalStatus.EXPIRED,
                lambda found: found.expired(now_iso(), reason),
                event=_event("withdrawal.expired", "system", w, None, reason=reason),
                request=None,
            )
        except InvalidState:
            continue  # decided meanwhile
        expired.append(w.id)
    return expired


@dataclass(frozen=True)
class WithdrawalPage:
    withdrawals: list[Withdrawal]
    next_cursor: str | None


def review_queue(
    withdrawals: WithdrawalRepository, status: str | None, limit: int, cursor: str | None
) -> WithdrawalPage:
    """Withdrawals newest first, optionally of one status (admin view).

    Raises InvalidRequest (an unknown status), ValueError (a cursor this query did not return).
    """
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
    wanted = WithdrawalStatus(status) if status else None
    found, next_cursor = withdrawals.page(wanted, max(1, min(limit, 100)), cursor)
    return WithdrawalPage(found, next_cursor)
