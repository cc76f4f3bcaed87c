"""Withdrawals: request (a hold), cancel, and an admin's approve or reject.

Life of a withdrawal: ``pending_review`` (the amount is held: ``available`` drops, ``posted`` does
not) -> ``processing`` (approved; a payout request is queued for the crypto gateway in the same
write, then handed to the gateway, or later by the retry: ``chalicelib/services/payouts.py``) ->
``completed`` / ``failed`` (the gateway's webhooks, ``chalicelib/services/crypto.py``); or
``pending_review`` -> ``cancelled`` (by the user) / ``rejected`` (by an admin), which void the hold.
Every transition is a conditional write on the current status, in the same transaction as the
hold's change, so two decisions cannot both happen.

Limits: a minimum per currency, and a daily total per user and currency kept in a counter item
that the request's write raises with a condition (``total + amount <= limit``), so concurrent
requests cannot exceed it either. Cancelled and rejected amounts are given back to the day.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.adapters.crypto_gateway import CryptoGateway
from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import (
    PayoutItem,
    WithdrawalItem,
    WithdrawalLimitItem,
)
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.config import Settings
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    AmountBelowMinimum,
    EmailUnverified,
    HoldNotPending,
    InvalidRequest,
    InvalidState,
    VersionConflict,
    WithdrawalLimitExceeded,
    WithdrawalNotFound,
)
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.domain.users import AuditEvent, User
from chalicelib.services import payouts
from chalicelib.services.ledger import LedgerService, PostingRequest

logger = Logger(child=True)
PENDING_REVIEW, PROCESSING = "pending_review", "processing"
CANCELLED, REJECTED, FAILED = "cancelled", "rejected", "failed"
EXPIRED = "expired"  # left in pending_review past the review window; hold released
STATUSES = (PENDING_REVIEW, PROCESSING, "completed", REJECTED, CANCELLED, FAILED, EXPIRED)
# How far back the expiry job looks past the review window: a withdrawal older than window +
# lookback would have been expired by one of the job's hourly runs over those days.
EXPIRY_LOOKBACK_DAYS = 30
_DESTINATION = re.compile(r"[A-Za-z0-9:._-]{8,128}")
MAX_REASON_LENGTH = 500


@dataclass(frozen=True)
class Withdrawal:
    id: str
    user_id: str
    currency: str
    amount: int
    destination: str
    status: str
    transaction_id: str
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    decided_request: str | None = None


def _from_item(item: WithdrawalItem) -> Withdrawal:
    return Withdrawal(
        id=item.withdrawal_id,
        user_id=item.user_id,
        currency=item.currency,
        amount=int(item.amount),
        destination=item.destination,
        status=item.status,
        transaction_id=item.transaction_id,
        created_at=item.created_at,
        decided_by=item.decided_by,
        decided_at=item.decided_at,
        reason=item.reason,
        decided_request=item.decided_request,
    )


def _to_item(w: Withdrawal) -> WithdrawalItem:
    return WithdrawalItem(
        keys.withdrawal_pk(w.id),
        keys.WITHDRAWAL_SK,
        item_type=WithdrawalItem.ITEM_TYPE,
        GSI2PK=keys.WITHDRAWALS_GSI_PK,
        GSI2SK=keys.withdrawals_gsi_sk(w.created_at, w.id),
        withdrawal_id=w.id,
        user_id=w.user_id,
        currency=w.currency,
        amount=w.amount,
        destination=w.destination,
        status=w.status,
        transaction_id=w.transaction_id,
        created_at=w.created_at,
    )


def _limit(settings_json: str, code: str) -> int | None:
    table = json.loads(settings_json)
    return parse_amount(str(Decimal(table[code])), code) if code in table else None


def _limit_item(user_id: str, code: str, day: str) -> WithdrawalLimitItem:
    return WithdrawalLimitItem(
        keys.withdrawal_limit_pk(user_id, code, day), keys.WITHDRAWAL_LIMIT_SK
    )


def give_back(w: Withdrawal) -> list[ExtraWrite]:
    """Return a voided (or failed) withdrawal's amount to its day's total, when that total
    still counts: the day is today and its counter exists. A withdrawal of a past day (its
    counter expires by TTL after 3 days), or of a currency without a daily limit (no counter),
    gives nothing back, so releasing its hold never depends on the counter being there."""
    day = w.created_at[:10]
    if day != now_iso()[:10]:
        return []
    counter = _limit_item(w.user_id, w.currency, day)
    try:
        counter.refresh(consistent_read=True)
    except WithdrawalLimitItem.DoesNotExist:
        return []
    return [
        ExtraWrite(
            model=counter,
            condition=WithdrawalLimitItem.PK.exists(),
            error=VersionConflict("limit counter changed; retry"),
            actions=[WithdrawalLimitItem.total.add(-w.amount)],
        )
    ]


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


def get(withdrawal_id: str) -> Withdrawal | None:
    try:
        item = WithdrawalItem.get(
            keys.withdrawal_pk(withdrawal_id), keys.WITHDRAWAL_SK, consistent_read=True
        )
    except WithdrawalItem.DoesNotExist:
        return None
    return _from_item(item)


def get_own(user: User, withdrawal_id: str) -> Withdrawal:
    """Raises WithdrawalNotFound for another user's withdrawal, exactly as for a missing one."""
    found = get(withdrawal_id)
    if found is None or found.user_id != user.id:
        raise WithdrawalNotFound(f"withdrawal {withdrawal_id} not found")
    return found


def request(
    ledger: LedgerService,
    settings: Settings,
    *,
    user: User,
    amount: str,
    currency_code: str,
    destination: str,
    idempotency_key: str,
) -> Withdrawal:
    """Hold the amount and queue the withdrawal for review.

    Raises (in order): EmailUnverified, UnsupportedCurrency, InvalidAmount, InvalidRequest
    (destination), AmountBelowMinimum, WithdrawalLimitExceeded, InsufficientFunds.
    """
    if not user.email_verified:
        raise EmailUnverified("verify your email before withdrawing")
    code = currency(currency_code).code
    minor = parse_amount(amount, code)
    if not isinstance(destination, str) or not _DESTINATION.fullmatch(destination):
        raise InvalidRequest(
            "destination must be 8 to 128 letters, digits or :._-",
            [{"field": "destination", "message": "not a valid address"}],
        )
    minimum = _limit(settings.withdrawal_minimums, code)
    if minimum is not None and minor < minimum:
        raise AmountBelowMinimum(f"the minimum {code} withdrawal is {minimum} minor units")
    daily = _limit(settings.withdrawal_daily_limits, code)
    if daily is not None and minor > daily:
        raise WithdrawalLimitExceeded(f"the daily {code} limit is {daily} minor units")

    wallet = wallet_id(OwnerType.USER, user.id, code)
    txn_id = derive_transaction_id("withdrawal", user.id, idempotency_key)
    withdrawal_id = "wd_" + txn_id.removeprefix("txn_")
    created_at = now_iso()
    withdrawal = Withdrawal(
        id=withdrawal_id,
        user_id=user.id,
        currency=code,
        amount=minor,
        destination=destination,
        status=PENDING_REVIEW,
        transaction_id=txn_id,
        created_at=created_at,
    )
    item = _to_item(withdrawal)
    counter = _limit_item(user.id, code, created_at[:10])
    extra = [
        ExtraWrite(
            model=item,
            condition=WithdrawalItem.PK.does_not_exist(),
            error=VersionConflict("withdrawal id taken"),
        ),
    ]
    if daily is not None:
        extra.append(
            ExtraWrite(
                model=counter,
                condition=WithdrawalLimitItem.PK.does_not_exist()
                | (WithdrawalLimitItem.total <= daily - minor),
                error=WithdrawalLimitExceeded(f"the daily {code} limit would be exceeded"),
                actions=[
                    WithdrawalLimitItem.total.add(minor),
                    WithdrawalLimitItem.item_type.set(WithdrawalLimitItem.ITEM_TYPE),
                    WithdrawalLimitItem.expires_at.set(int(time.time()) + 3 * 24 * 3600),
                ],
            )
        )
    recorded = ledger.record(
        transaction_id=txn_id,
        type=TransactionType.WITHDRAWAL,
        postings=[
            PostingRequest(wallet, code, -minor),
            PostingRequest(PlatformAccount(PlatformKind.CRYPTO_CUSTODY, code), code, minor),
        ],
        memo=f"withdrawal to {destination}",
        metadata={"withdrawal_id": withdrawal_id, "destination": destination},
        pending=True,
        extra=extra,
    )
    if recorded.created:
        return withdrawal
    # A retry of a request that was recorded before: answer with the withdrawal as it is now.
    stored = get(withdrawal_id)
    if stored is None:
        raise VersionConflict("withdrawal record missing for an existing hold")
    return stored


def _status_is(expected: str) -> object:
    return WithdrawalItem.status == expected


def _transition(
    w: Withdrawal, status: str, *, by: str, reason: str | None, request: str | None
) -> ExtraWrite:
    now = now_iso()
    actions = [
        WithdrawalItem.status.set(status),
        WithdrawalItem.decided_by.set(by),
        WithdrawalItem.decided_at.set(now),
    ]
    if reason is not None:
        actions.append(WithdrawalItem.reason.set(reason))
    if request is not None:
        actions.append(WithdrawalItem.decided_request.set(request))
    return ExtraWrite(
        model=WithdrawalItem(keys.withdrawal_pk(w.id), keys.WITHDRAWAL_SK),
        condition=_status_is(PENDING_REVIEW),
        error=InvalidState(f"withdrawal {w.id} is no longer pending review"),
        actions=actions,
    )


def decided_by_request(w: Withdrawal, status: str, request: str | None) -> bool:
    """True when ``w`` is already ``status`` by the request marked ``request``: this request's
    own earlier decision, whose answer was lost after it committed."""
    return request is not None and w.status == status and w.decided_request == request


def _void(
    ledger: LedgerService,
    w: Withdrawal,
    status: str,
    *,
    by: str,
    reason: str | None,
    event: AuditEvent | None,
    request: str | None,
) -> Withdrawal:
    if decided_by_request(w, status, request):
        return w
    if w.status != PENDING_REVIEW:
        raise InvalidState(f"withdrawal {w.id} is {w.status}, not pending review")
    extra = [_transition(w, status, by=by, reason=reason, request=request), *give_back(w)]
    if event is not None:
        extra.append(audit_entry(event))
    try:
        ledger.void_pending(w.transaction_id, extra=extra)
    except (HoldNotPending, InvalidState) as exc:
        now = get(w.id)
        if now is not None and decided_by_request(now, status, request):
            return now  # a twin of this request (same key) got there first
        raise InvalidState(f"withdrawal {w.id} is no longer pending review") from exc
    return get(w.id) or w


def cancel(
    ledger: LedgerService, user: User, withdrawal_id: str, request: str | None = None
) -> Withdrawal:
    """The user takes the request back; the hold is released. Raises InvalidState.

    ``request`` (``api.idempotency.request_mark``, when the call had an Idempotency-Key) is
    stored with the decision: the same request sent again, after an answer lost once the
    cancellation had committed, gets the cancelled withdrawal instead of ``invalid_state``."""
    w = get_own(user, withdrawal_id)
    return _void(ledger, w, CANCELLED, by=user.id, reason=None, event=None, request=request)


def reject(
    ledger: LedgerService,
    admin: User,
    withdrawal_id: str,
    reason: str,
    ip: str | None,
    request: str | None = None,
) -> Withdrawal:
    """An admin refuses it; the hold is released. Raises WithdrawalNotFound, InvalidState.
    ``request``: as for ``cancel``."""
    w = get(withdrawal_id)
    if w is None:
        raise WithdrawalNotFound(f"withdrawal {withdrawal_id} not found")
    reason = _reason(reason)
    event = _event("withdrawal.rejected", admin.id, w, ip, reason=reason)
    return _void(ledger, w, REJECTED, by=admin.id, reason=reason, event=event, request=request)


def settled(w: Withdrawal, status: str, reason: str | None) -> list[ExtraWrite]:
    """The writes that end a ``processing`` withdrawal as ``completed`` or ``failed``: its
    status (only from processing) and its payout request's, out of the "still to send" index
    (the retry must not send it). Written with the posting or the release of its hold."""
    actions = [WithdrawalItem.status.set(status), WithdrawalItem.decided_at.set(now_iso())]
    if reason:
        actions.append(WithdrawalItem.reason.set(reason[:MAX_REASON_LENGTH]))
    return [
        ExtraWrite(
            model=WithdrawalItem(keys.withdrawal_pk(w.id), keys.WITHDRAWAL_SK),
            condition=_status_is(PROCESSING),
            error=InvalidState(f"withdrawal {w.id} is no longer processing"),
            actions=actions,
        ),
        ExtraWrite(
            model=PayoutItem(keys.payout_pk(w.id), keys.PAYOUT_SK),
            condition=PayoutItem.PK.exists(),
            error=InvalidState(f"withdrawal {w.id} has no payout request"),
            actions=[PayoutItem.status.set(status), *payouts.leave_index_actions()],
        ),
    ]


def fail_undeliverable(ledger: LedgerService, withdrawal_id: str, attempts: int) -> bool:
    """Give up a payout the gateway refused ``attempts`` times: the withdrawal turns ``failed``,
    its hold is released and its amount given back to the day's total, the payout request leaves
    the "still to send" index, with an audit event, all in one write. False if it was settled
    meanwhile (a webhook) or is not processing: nothing is written then.
    """
    w = get(withdrawal_id)
    if w is None or w.status != PROCESSING:
        return False
    reason = f"the crypto gateway refused the payout {attempts} times"
    event = _event("withdrawal.payout_given_up", "system", w, None, attempts=str(attempts))
    extra = [*settled(w, FAILED, reason), *give_back(w), audit_entry(event)]
    try:
        ledger.void_pending(w.transaction_id, extra=extra)
    except (HoldNotPending, InvalidState):
        return False
    return True


def approve(
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
    ``cancel``; the approval's retry also hands the payout over if it is still to send."""
    w = get(withdrawal_id)
    if w is None:
        raise WithdrawalNotFound(f"withdrawal {withdrawal_id} not found")
    if decided_by_request(w, PROCESSING, request):
        if gateway is not None:
            send_payout(gateway, w.id)
        return get(w.id) or w
    if w.status != PENDING_REVIEW:
        raise InvalidState(f"withdrawal {w.id} is {w.status}, not pending review")
    transition = _transition(w, PROCESSING, by=admin.id, reason=None, request=request)
    write = AtomicWrite()
    write.update(transition.model, transition.actions or [], transition.condition, transition.error)
    requested_at = now_iso()
    payout = PayoutItem(
        keys.payout_pk(w.id),
        keys.PAYOUT_SK,
        item_type=PayoutItem.ITEM_TYPE,
        withdrawal_id=w.id,
        currency=w.currency,
        amount=w.amount,
        destination=w.destination,
        status="requested",
        requested_at=requested_at,
        # In the "still to send" index until handed over: the retry finds it there.
        **payouts.requested_index_keys(requested_at, w.id),
    )
    write.put(payout, PayoutItem.PK.does_not_exist(), InvalidState("payout already requested"))
    write.append_audit(_event("withdrawal.approved", admin.id, w, ip))
    write.send_or_raise_tag()
    if gateway is not None:
        send_payout(gateway, w.id)
    return get(w.id) or w


def send_payout(gateway: CryptoGateway, withdrawal_id: str) -> bool:
    """Hand a ``requested`` payout to the gateway and mark it ``sent``; safe to call again.

    True if the gateway has it (now or before). False if it is not owed, another sender is
    handing it over right now, or the gateway failed (logged): then the request stays
    ``requested`` and ``payouts.retry_requested`` sends it later.
    """
    return payouts.hand_off(gateway, withdrawal_id) in (payouts.HANDED_OVER, payouts.ALREADY_SENT)


def _reason(reason: str) -> str:
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(
            f"reason must have 1 to {MAX_REASON_LENGTH} characters",
            [{"field": "reason", "message": "blank or too long"}],
        )
    return reason


def expire_stale(ledger: LedgerService, review_days: int, now: str | None = None) -> list[str]:
    """Expire every withdrawal still ``pending_review`` ``review_days`` after it was made: status
    ``expired``, hold released (and the day's total given back when it still counts), audited,
    in one write each. Safe to run again and alongside an admin's decision (whichever writes
    first wins; the other finds it no longer pending). Returns the ids expired by this run."""
    moment = parse_iso(now or now_iso())
    cutoff = to_iso(moment - timedelta(days=review_days))
    oldest = to_iso(moment - timedelta(days=review_days + EXPIRY_LOOKBACK_DAYS))
    stale = WithdrawalItem.review_index.query(
        keys.WITHDRAWALS_GSI_PK,
        WithdrawalItem.GSI2SK.between(oldest, cutoff),
        filter_condition=WithdrawalItem.status == PENDING_REVIEW,
    )
    expired = []
    for item in stale:
        w = _from_item(item)
        reason = f"not reviewed within {review_days} days"
        event = _event("withdrawal.expired", "system", w, None, reason=reason)
        try:
            _void(ledger, w, EXPIRED, by="system", reason=reason, event=event, request=None)
        except InvalidState:
            continue  # decided meanwhile
        expired.append(w.id)
    return expired


@dataclass(frozen=True)
class WithdrawalPage:
    withdrawals: list[Withdrawal]
    next_cursor: str | None


def review_queue(status: str | None, limit: int, cursor: str | None) -> WithdrawalPage:
    """Withdrawals newest first, optionally of one status (admin view)."""
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
    limit = max(1, min(limit, 100))
    pk = keys.WITHDRAWALS_GSI_PK
    start = None
    if cursor:
        # Table keys of a withdrawal item, and its place in the index.
        start = cursors.decode(
            cursor,
            partition={"GSI2PK": pk, "SK": keys.WITHDRAWAL_SK},
            ranges={
                "PK": (keys.WITHDRAWAL_PREFIX, keys.WITHDRAWAL_PREFIX + "~"),
                "GSI2SK": ("", "~"),
            },
        )
    results = WithdrawalItem.review_index.query(
        pk,
        scan_index_forward=False,
        filter_condition=(WithdrawalItem.status == status) if status else None,
        limit=limit,
        last_evaluated_key=start,
        page_size=limit,
    )
    found = [_from_item(i) for i in results]
    last = results.last_evaluated_key
    return WithdrawalPage(found, cursors.encode(last) if last and len(found) == limit else None)
