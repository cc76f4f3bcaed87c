"""Refunds of card deposits: hold the user's funds, refund through Stripe, then post or void.

Life of a refund (DESIGN.md, "Flows: Refund"):

1. **Hold.** One write: a pending ``refund`` transaction (wallet -> Stripe clearing) that
   reserves the amount on the wallet, the refund item (``REFUND#<id>``, status ``pending``), the
   deposit's ``refund_reserved`` raised by the amount, and the admin's audit event. The deposit's
   condition ``refund_reserved <= credited_amount - amount`` makes over-refunding impossible even
   for racing requests, although Stripe's fake would accept it; the wallet's ``available``
   condition refuses a refund of money the user has already spent (``InsufficientFunds``).
2. **Stripe.** ``Refund.create`` with the refund id as idempotency key and in the metadata.
3. **Outcome.** ``succeeded``: the hold is posted, ``refunded_amount`` raised, the refund item
   ``succeeded``; ``failed``/``canceled`` (or a definite refusal from Stripe): the hold is voided
   and the reservation given back; anything else (Stripe's ``pending``): the hold stays and
   Stripe's later ``refund.updated`` / ``charge.refunded`` event finishes it.

Exactly once: the refund id is derived from the deposit and the Idempotency-Key, the hold's
transaction id from the refund id, and finishing is conditional on the hold being pending. A crash
anywhere leaves a state the next attempt completes: a retry with the same key finds the refund,
looks for its Stripe refund (by metadata, since an idempotency key may have expired and
localstripe ignores them) before creating one, and applies the outcome; a Stripe webhook for the
refund applies it too. Stripe being unreachable answers 503 and keeps the hold, so the money is
neither lost nor refunded twice; ``finish_pending`` (scheduled every 15 minutes) finishes refunds
left pending for 5 minutes, whether Stripe never got them or its event never came.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from aws_lambda_powertools import Logger
from pynamodb.exceptions import UpdateError

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import DepositItem, RefundItem
from chalicelib.adapters.dynamo.transact import condition_failed
from chalicelib.adapters.stripe_gateway import PaymentGateway, StripeRefund, WebhookEvent
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    AlreadyReversed,
    DepositNotFound,
    HoldNotPending,
    InvalidRequest,
    InvalidState,
    ProviderRefused,
    RefundExceedsDeposit,
    WebhookEventSeen,
)
from chalicelib.domain.money import parse_amount
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.domain.users import AuditEvent, User
from chalicelib.services import deposits, inbox
from chalicelib.services.ledger import LedgerService, PostingRequest

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
logger = Logger(child=True)
STRIPE_DONE = {"succeeded"}
STRIPE_FAILED = {"failed", "canceled"}
PROVIDER_ACTOR = deposits.PROVIDER  # the audit actor of what Stripe reports
MAX_REASON = 500


@dataclass(frozen=True)
class Refund:
    id: str
    deposit_id: str
    user_id: str
    amount: int
    currency: str
    status: str
    reason: str
    requested_by: str
    transaction_id: str
    payment_intent_id: str
    created_at: str
    stripe_refund_id: str | None = None
    failure_reason: str | None = None


def _from_item(item: RefundItem) -> Refund:
    return Refund(
        id=item.refund_id,
        deposit_id=item.deposit_id,
        user_id=item.user_id,
        amount=int(item.amount),
        currency=item.currency,
        status=item.status,
        reason=item.reason,
        requested_by=item.requested_by,
        transaction_id=item.transaction_id,
        payment_intent_id=item.payment_intent_id,
        created_at=item.created_at,
        stripe_refund_id=item.stripe_refund_id,
        failure_reason=item.failure_reason,
    )


def _key(refund_id: str) -> RefundItem:
    return RefundItem(keys.refund_pk(refund_id), keys.REFUND_SK)


def get(refund_id: str) -> Refund | None:
    try:
        item = RefundItem.get(keys.refund_pk(refund_id), keys.REFUND_SK, consistent_read=True)
    except RefundItem.DoesNotExist:
        return None
    return _from_item(item)


def refundable(deposit: deposits.Deposit) -> int:
    """What is left to refund: credited, less refunds succeeded or in flight."""
    return (deposit.credited_amount or 0) - deposit.refund_reserved


def audit_event(
    action: str, actor: str, refund: Refund, ip: str | None, **details: str
) -> ExtraWrite:
    event = AuditEvent.new(
        action,
        at=now_iso(),
        actor_id=actor,
        target=refund.id,
        ip=ip,
        deposit_id=refund.deposit_id,
        user_id=refund.user_id,
        amount=str(refund.amount),
        currency=refund.currency,
        **details,
    )
    return audit_entry(event)


# -- the admin's request --------------------------------------------------------------------------
def request_refund(
    ledger: LedgerService,
    gateway: PaymentGateway,
    *,
    admin: User,
    deposit_id: str,
    amount: str | None,
    reason: str,
    idempotency_key: str,
    ip: str | None,
) -> Refund:
    """Refund a card deposit (all that is refundable when ``amount`` is None).

    Raises:
        DepositNotFound; InvalidState (the deposit was never credited); InvalidAmount;
        InvalidRequest (empty reason); RefundExceedsDeposit; InsufficientFunds (the user has
        spent the money); ProviderUnavailable (Stripe unreachable: the hold stays, retry).
    """
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidRequest(f"reason must be 1 to {MAX_REASON} characters")
    deposit = deposits.get(deposit_id)
    if deposit is None:
        raise DepositNotFound(f"deposit {deposit_id} not found")
    refund_id = "rf_" + derive_transaction_id("refund", deposit_id, idempotency_key)[4:]
    refund = get(refund_id)
    retry = refund is not None
    if refund is None:
        refund = _hold(ledger, admin, deposit, refund_id, amount, reason, ip)
    if refund.status != PENDING:
        return refund
    return _submit(ledger, gateway, refund, look_first=retry or refund.stripe_refund_id is not None)


def _hold(
    ledger: LedgerService,
    admin: User,
    deposit: deposits.Deposit,
    refund_id: str,
    amount: str | None,
    reason: str,
    ip: str | None,
) -> Refund:
    if deposit.status != deposits.SUCCEEDED or not deposit.credited_amount:
        raise InvalidState(f"deposit {deposit.id} is {deposit.status}: nothing to refund")
    if deposit.rolled_back_by:
        raise InvalidState(f"deposit {deposit.id} was rolled back: nothing left to refund")
    left = refundable(deposit)
    minor = left if amount is None else parse_amount(amount, deposit.currency)
    if minor <= 0 or minor > left:
        raise RefundExceedsDeposit(
            f"deposit {deposit.id} has {left} minor units left to refund, asked for {minor}"
        )
    code = deposit.currency
    refund = Refund(
        id=refund_id,
        deposit_id=deposit.id,
        user_id=deposit.user_id,
        amount=minor,
        currency=code,
        status=PENDING,
        reason=reason,
        requested_by=admin.id,
        transaction_id=derive_transaction_id("refund", refund_id),
        payment_intent_id=str(deposit.payment_intent_id),
        created_at=now_iso(),
    )
    item = RefundItem(
        keys.refund_pk(refund.id),
        keys.REFUND_SK,
        item_type=RefundItem.ITEM_TYPE,
        refund_id=refund.id,
        deposit_id=refund.deposit_id,
        user_id=refund.user_id,
        amount=refund.amount,
        currency=code,
        status=PENDING,
        reason=reason,
        requested_by=admin.id,
        transaction_id=refund.transaction_id,
        payment_intent_id=refund.payment_intent_id,
        created_at=refund.created_at,
        GSI2PK=keys.PENDING_REFUNDS_GSI_PK,
        GSI2SK=keys.pending_refunds_gsi_sk(refund.created_at, refund.id),
    )
    reserve = ExtraWrite(
        model=DepositItem(keys.deposit_pk(deposit.id), keys.DEPOSIT_SK),
        condition=(DepositItem.status == deposits.SUCCEEDED)
        & DepositItem.rolled_back_by.does_not_exist()
        & (
            DepositItem.refund_reserved.does_not_exist()
            | (DepositItem.refund_reserved <= deposit.credited_amount - minor)
        ),
        error=RefundExceedsDeposit(f"the refund would exceed what is left of {deposit.id}"),
        actions=[DepositItem.refund_reserved.add(minor), DepositItem.updated_at.set(now_iso())],
    )
    recorded = ledger.record(
        transaction_id=refund.transaction_id,
        type=TransactionType.REFUND,
        postings=[
            PostingRequest(wallet_id(OwnerType.USER, deposit.user_id, code), code, -minor),
            PostingRequest(PlatformAccount(PlatformKind.STRIPE_CLEARING, code), code, minor),
        ],
        memo="card deposit refund",
        metadata={
            "refund_id": refund.id,
            "deposit_id": deposit.id,
            "payment_intent_id": refund.payment_intent_id,
        },
        pending=True,
        extra=[
            ExtraWrite(item, RefundItem.PK.does_not_exist(), InvalidState("refund id taken")),
            reserve,
            audit_event("refund.requested", admin.id, refund, ip, reason=reason),
        ],
    )
    if recorded.created:
        return refund  # exactly what the hold's write stored
    return get(refund.id) or refund  # a racing copy of this request wrote it first


def _submit(
    ledger: LedgerService, gateway: PaymentGateway, refund: Refund, *, look_first: bool
) -> Refund:
    found: StripeRefund | None = None
    if look_first:  # an earlier attempt may have created it before failing
        found = next(
            (r for r in gateway.list_refunds(refund.payment_intent_id) if _ours(r, refund)),
            None,
        )
    if found is None:
        try:
            found = gateway.create_refund(
                payment_intent_id=refund.payment_intent_id,
                amount=refund.amount,
                refund_id=refund.id,
                deposit_id=refund.deposit_id,
            )
        except ProviderRefused as exc:
            return finish(ledger, refund, succeeded=False, failure=str(exc))
    return apply(ledger, refund, found)


def _ours(stripe_refund: StripeRefund, refund: Refund) -> bool:
    return stripe_refund.metadata.get("refund_id") == refund.id


# -- outcomes -------------------------------------------------------------------------------------
def apply(
    ledger: LedgerService,
    refund: Refund,
    stripe_refund: StripeRefund,
    event: WebhookEvent | None = None,
) -> Refund:
    """Apply what Stripe reports about a refund; a refund already finished is left alone."""
    if stripe_refund.status in STRIPE_DONE:
        return finish(ledger, refund, succeeded=True, stripe_id=stripe_refund.id, event=event)
    if stripe_refund.status in STRIPE_FAILED:
        failure = stripe_refund.failure_reason or stripe_refund.status
        return finish(
            ledger,
            refund,
            succeeded=False,
            stripe_id=stripe_refund.id,
            failure=failure,
            event=event,
        )
    _remember_stripe_id(refund, stripe_refund.id)  # still pending at Stripe: wait for its event
    if event is not None:
        inbox.record(deposits.PROVIDER, event, "refund_pending", refund.id)
    return get(refund.id) or refund


def finish(
    ledger: LedgerService,
    refund: Refund,
    *,
    succeeded: bool,
    stripe_id: str | None = None,
    failure: str | None = None,
    event: WebhookEvent | None = None,
) -> Refund:
    """Post (``succeeded``) or void the refund's hold, with the refund item, the deposit's totals,
    the audit event and the webhook's inbox item in the same write; at most once."""
    now = now_iso()
    status = SUCCEEDED if succeeded else FAILED
    actions = [
        RefundItem.status.set(status),
        RefundItem.updated_at.set(now),
        RefundItem.GSI2PK.remove(),
        RefundItem.GSI2SK.remove(),
    ]
    if stripe_id is not None:
        actions.append(RefundItem.stripe_refund_id.set(stripe_id))
    if failure is not None:
        actions.append(RefundItem.failure_reason.set(failure[:MAX_REASON]))
    deposit_actions = (
        [DepositItem.refunded_amount.add(refund.amount)]
        if succeeded
        else [DepositItem.refund_reserved.add(-refund.amount)]
    )
    details = {"stripe_refund_id": stripe_id or ""}
    if failure is not None:
        details["failure"] = failure[:MAX_REASON]
    extra = [
        ExtraWrite(
            _key(refund.id),
            RefundItem.status == PENDING,
            InvalidState(f"refund {refund.id} is finished"),
            actions,
        ),
        ExtraWrite(
            DepositItem(keys.deposit_pk(refund.deposit_id), keys.DEPOSIT_SK),
            DepositItem.PK.exists(),
            DepositNotFound(f"deposit {refund.deposit_id} disappeared"),
            [*deposit_actions, DepositItem.updated_at.set(now)],
        ),
        audit_event(f"refund.{status}", PROVIDER_ACTOR, refund, None, **details),
    ]
    if event is not None:
        extra.append(inbox.entry(deposits.PROVIDER, event, f"refund_{status}", refund.id))
    resolve = ledger.post_pending if succeeded else ledger.void_pending
    try:
        resolve(refund.transaction_id, extra=extra)
    except (HoldNotPending, InvalidState):
        # Finished before (by the request, a retry or another event): nothing moves again.
        if event is not None:
            inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, refund.id)
    except WebhookEventSeen:
        pass
    else:  # this write finished it: the item now says exactly this
        return replace(
            refund,
            status=status,
            stripe_refund_id=stripe_id or refund.stripe_refund_id,
            failure_reason=failure[:MAX_REASON] if failure is not None else refund.failure_reason,
        )
    return get(refund.id) or refund


def _remember_stripe_id(refund: Refund, stripe_id: str) -> None:
    try:
        _key(refund.id).update(
            actions=[RefundItem.stripe_refund_id.set(stripe_id)],
            condition=RefundItem.stripe_refund_id.does_not_exist()
            | (RefundItem.stripe_refund_id == stripe_id),
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


# -- Stripe's refund events -----------------------------------------------------------------------
def on_refund_event(ledger: LedgerService, gateway: PaymentGateway, event: WebhookEvent) -> str:
    """``refund.updated`` / ``refund.created`` / ``refund.failed``: re-fetch the refund from Stripe
    and apply its state to the ledger's refund named in its metadata."""
    stripe_refund = gateway.retrieve_refund(str(event.object_id))
    refund = get(stripe_refund.metadata.get("refund_id", ""))
    if refund is None or refund.payment_intent_id != stripe_refund.payment_intent_id:
        # Not made through the ledger (e.g. from Stripe's dashboard): reconciliation lists it.
        return inbox.record(deposits.PROVIDER, event, deposits.UNMATCHED, stripe_refund.id)
    if refund.status == SUCCEEDED and stripe_refund.status in STRIPE_FAILED:
        return _failed_after_success(ledger, refund, stripe_refund, event)
    if refund.status != PENDING:
        return inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, refund.id)
    return apply(ledger, refund, stripe_refund, event).status


def _failed_after_success(
    ledger: LedgerService, refund: Refund, stripe_refund: StripeRefund, event: WebhookEvent
) -> str:
    """Stripe failed a refund it had reported succeeded (the card could not take it; Stripe puts
    the money back in the platform balance with a ``refund_failure`` balance transaction). The
    wallet gets the money back: the refund's transaction is reversed (clearing -> wallet), with
    the refund marked failed, the deposit's refund totals given back, the audit event and the
    inbox item in the same write, at most once (the reversal's id is derived from the refund's)."""
    now = now_iso()
    failure = (stripe_refund.failure_reason or stripe_refund.status)[:MAX_REASON]
    extra = [
        ExtraWrite(
            _key(refund.id),
            RefundItem.status == SUCCEEDED,
            InvalidState(f"refund {refund.id} is not succeeded"),
            [
                RefundItem.status.set(FAILED),
                RefundItem.failure_reason.set(failure),
                RefundItem.updated_at.set(now),
            ],
        ),
        ExtraWrite(
            DepositItem(keys.deposit_pk(refund.deposit_id), keys.DEPOSIT_SK),
            DepositItem.PK.exists(),
            DepositNotFound(f"deposit {refund.deposit_id} disappeared"),
            [
                DepositItem.refunded_amount.add(-refund.amount),
                DepositItem.refund_reserved.add(-refund.amount),
                DepositItem.updated_at.set(now),
            ],
        ),
        audit_event(
            "refund.failed",
            PROVIDER_ACTOR,
            refund,
            None,
            stripe_refund_id=stripe_refund.id,
            failure=failure,
            after="succeeded",
        ),
        inbox.entry(deposits.PROVIDER, event, "refund_failed_after_success", refund.id),
    ]
    try:
        ledger.reverse(
            refund.transaction_id,
            memo="card refund failed at Stripe after it succeeded",
            metadata={
                "refund_id": refund.id,
                "deposit_id": refund.deposit_id,
                "payment_intent_id": refund.payment_intent_id,
            },
            extra=extra,
        )
    except WebhookEventSeen:
        return inbox.DUPLICATE
    except (AlreadyReversed, InvalidState):
        return inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, refund.id)
    return "refund_failed_after_success"


def on_charge_refunded(ledger: LedgerService, gateway: PaymentGateway, event: WebhookEvent) -> str:
    """``charge.refunded``: apply every refund of the charge's PaymentIntent that the ledger made
    and has not finished. Each finish is conditional on its hold, so a redelivery moves nothing."""
    intent_id = event.object.get("payment_intent")
    if not isinstance(intent_id, str) or not intent_id:
        return inbox.record(deposits.PROVIDER, event, deposits.UNMATCHED, event.object_id)
    applied = 0
    for stripe_refund in gateway.list_refunds(intent_id):
        refund = get(stripe_refund.metadata.get("refund_id", ""))
        if refund is None or refund.status != PENDING or refund.payment_intent_id != intent_id:
            continue
        apply(ledger, refund, stripe_refund)
        applied += 1
    return inbox.record(
        deposits.PROVIDER, event, "refunds_applied" if applied else deposits.IGNORED, intent_id
    )


# -- finishing what was left pending -------------------------------------------------------------
FINISH_AFTER_SECONDS = 300  # leave a refund this long to its own request and Stripe's event
FINISH_BATCH = 50


def pending(limit: int = FINISH_BATCH) -> list[str]:
    """Ids of refunds still pending, oldest first (GSI2: eventually consistent, so each one is
    read again before anything is done)."""
    results = RefundItem.pending_index.query(
        keys.PENDING_REFUNDS_GSI_PK, scan_index_forward=True, limit=limit, page_size=limit
    )
    return [item.refund_id for item in results]


def finish_pending(
    ledger: LedgerService,
    gateway: PaymentGateway,
    *,
    older_than: float = FINISH_AFTER_SECONDS,
    now: str | None = None,
    limit: int = FINISH_BATCH,
) -> dict[str, int]:
    """Finish refunds left pending: Stripe was unreachable when they were asked for (no Stripe
    refund id), or Stripe's event about them never came. Each is looked up at Stripe by its
    metadata before anything is created, and finishing is conditional on the hold, so this is
    safe to run at any time, twice, or alongside the request and the webhook. One refund that
    fails (Stripe refuses the lookup, a bug) is logged and counted as ``error``, not allowed to
    stop the others; every refund still pending afterwards goes to the back of the queue, so
    refunds that Stripe keeps pending for days do not starve the newer ones behind them. Returns
    counts by outcome (the refund's status afterwards, ``unavailable`` or ``error``)."""
    from datetime import timedelta

    from chalicelib.adapters.clock import parse_iso, to_iso
    from chalicelib.domain.errors import ProviderUnavailable

    cutoff = to_iso(parse_iso(now or now_iso()) - timedelta(seconds=older_than))
    outcomes: dict[str, int] = {}
    for refund_id in pending(limit):
        refund = get(refund_id)
        if refund is None or refund.status != PENDING or refund.created_at > cutoff:
            continue
        try:
            if refund.stripe_refund_id is not None:
                done = apply(ledger, refund, gateway.retrieve_refund(refund.stripe_refund_id))
            else:
                done = _submit(ledger, gateway, refund, look_first=True)
            outcome = done.status
        except ProviderUnavailable:
            outcome = "unavailable"
        except Exception:
            logger.exception("finishing a pending refund failed", extra={"refund_id": refund.id})
            outcome = "error"
        if outcome not in (SUCCEEDED, FAILED):
            _to_the_back(refund.id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _to_the_back(refund_id: str) -> None:
    """Re-queue a refund still pending behind the others (only while it is pending: a finished
    refund has left the index and must not come back)."""
    try:
        _key(refund_id).update(
            actions=[RefundItem.GSI2SK.set(keys.pending_refunds_gsi_sk(now_iso(), refund_id))],
            condition=RefundItem.status == PENDING,
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
