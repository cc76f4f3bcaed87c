"""Refunds of card deposits: hold the user's funds, refund through Stripe, then post or void.

The refund's lifecycle is the domain's (``chalicelib/domain/refunds.py``), and so is the rule
"refund at most what was credited, less what is refunded or in flight"
(``Deposit.refund_reserved_by`` in ``chalicelib/domain/deposits.py``); the items, keys and the
conditions that enforce the same rules again in the write are the repositories'
(``adapters/dynamo/refund_repository.py``, ``deposit_repository.py``), seen here through
``RefundRepository`` and ``RefundedDeposits``.

Life of a refund (DESIGN.md, "Flows: Refund"):

1. **Hold.** One write: a pending ``refund`` transaction (wallet -> Stripe clearing) that
   reserves the amount on the wallet, the refund item (status ``pending``), the deposit's
   ``refund_reserved`` raised by the amount, and the admin's audit event. The deposit's condition
   ``refund_reserved <= credited_amount - amount`` makes over-refunding impossible even for racing
   requests, although Stripe's fake would accept it; the wallet's ``available`` condition refuses
   a refund of money the user has already spent (``InsufficientFunds``).
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

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.adapters.stripe_gateway import PaymentGateway, StripeRefund, WebhookEvent
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.deposits import Deposit
from chalicelib.domain.errors import (
    AlreadyReversed,
    DepositNotFound,
    HoldNotPending,
    InvalidState,
    ProviderRefused,
    ProviderUnavailable,
    WebhookEventSeen,
)
from chalicelib.domain.money import parse_amount
from chalicelib.domain.refunds import (
    MAX_REASON,
    STRIPE_DONE,
    STRIPE_FAILED,
    Refund,
    RefundStatus,
    reason_text,
    refund_id_for,
)
from chalicelib.domain.transactions import TransactionType
from chalicelib.domain.users import AuditEvent, User
from chalicelib.services.inbox import DUPLICATE, Inbox
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite

logger = Logger(child=True)
PROVIDER = "stripe"  # the inbox's name for Stripe's events, and the audit actor of what it reports
UNMATCHED, IGNORED = "unmatched", "ignored"
FAILED_AFTER_SUCCESS = "refund_failed_after_success"


class RefundRepository(Protocol):
    def get(self, refund_id: str) -> Refund | None:
        """The refund (strongly consistent), or None."""
        ...

    def pending(self, limit: int) -> list[str]:
        """Ids of refunds still pending, oldest first (eventually consistent)."""
        ...

    def to_the_back(self, refund_id: str, at: str) -> None:
        """Re-queue a refund still pending behind the others (a finished one stays out)."""
        ...

    def remember_stripe_refund(self, refund_id: str, stripe_refund_id: str) -> None:
        """Record the Stripe refund, unless another one is recorded already."""
        ...

    def add(self, refund: Refund) -> SideWrite:
        """A new pending refund (InvalidState if the id is taken)."""
        ...

    def finish(self, refund: Refund) -> SideWrite:
        """The finished refund (InvalidState unless it is still pending)."""
        ...

    def fail_after_success(self, refund: Refund) -> SideWrite:
        """The refund failed after success (InvalidState unless it is still succeeded)."""
        ...

    def audit(self, event: AuditEvent) -> SideWrite:
        """The audit event, append-only, in the write of what it records."""
        ...


class RefundedDeposits(Protocol):
    """What refunds need of the deposits' repository."""

    def get(self, deposit_id: str) -> Deposit | None: ...

    def reserve_refund(self, deposit: Deposit, amount: int, at: str) -> SideWrite:
        """``amount`` reserved, only within what is left (RefundExceedsDeposit)."""
        ...

    def settle_refund(
        self, deposit_id: str, amount: int, *, succeeded: bool, at: str
    ) -> SideWrite: ...

    def return_refund(self, deposit_id: str, amount: int, at: str) -> SideWrite: ...


FINISH_AFTER_SECONDS = 300  # leave a refund this long to its own request and Stripe's event
FINISH_BATCH = 50


# -- the admin's request --------------------------------------------------------------------------
def request_refund(
    ledger: LedgerService,
    gateway: PaymentGateway,
    *,
    refunds: RefundRepository,
    deposits: RefundedDeposits,
    inbox: Inbox,
    admin: User,
    deposit_id: str,
    amount: str | None,
    reason: str,
    idempotency_key: str,
    ip: str | None,
) -> Refund:
    """Refund a card deposit (all that is refundable when ``amount`` is None).

    Raises:
        InvalidRequest (empty reason); DepositNotFound; InvalidState (the deposit was never
        credited, or was rolled back); InvalidAmount; RefundExceedsDeposit; InsufficientFunds
        (the user has spent the money); ProviderUnavailable (Stripe unreachable: the hold stays,
        retry).
    """
    desk = _Desk(ledger, gateway, refunds, deposits, inbox)
    reason = reason_text(reason)
    deposit = deposits.get(deposit_id)
    if deposit is None:
        raise DepositNotFound(f"deposit {deposit_id} not found")
    refund_id = refund_id_for(deposit_id, idempotency_key)
    refund = refunds.get(refund_id)
    retry = refund is not None
    if refund is None:
        refund = desk.hold(admin, deposit, refund_id, amount, reason, ip)
    if refund.status is not RefundStatus.PENDING:
        return refund
    return desk.submit(refund, look_first=retry or refund.stripe_refund_id is not None)


def hold(
    ledger: LedgerService,
    *,
    refunds: RefundRepository,
    deposits: RefundedDeposits,
    admin: User,
    deposit: Deposit,
    refund_id: str,
    amount: str | None,
    reason: str,
    ip: str | None,
) -> Refund:
    """Step 1 alone: hold ``amount`` of ``deposit`` (as read, perhaps stale) for a new refund.

    Raises InvalidState, InvalidAmount, RefundExceedsDeposit (by the domain's check, or by the
    deposit's condition in the write when ``deposit`` was stale), InsufficientFunds.
    """
    desk = _Desk(ledger, None, refunds, deposits, None)
    return desk.hold(admin, deposit, refund_id, amount, reason_text(reason), ip)


# -- Stripe's refund events -----------------------------------------------------------------------
def on_refund_event(
    ledger: LedgerService,
    gateway: PaymentGateway,
    event: WebhookEvent,
    *,
    refunds: RefundRepository,
    deposits: RefundedDeposits,
    inbox: Inbox,
) -> str:
    """``refund.updated`` / ``refund.created`` / ``refund.failed``: re-fetch the refund from Stripe
    and apply its state to the ledger's refund named in its metadata."""
    desk = _Desk(ledger, gateway, refunds, deposits, inbox)
    stripe_refund = gateway.retrieve_refund(str(event.object_id))
    refund = refunds.get(stripe_refund.metadata.get("refund_id", ""))
    if refund is None or refund.payment_intent_id != stripe_refund.payment_intent_id:
        # Not made through the ledger (e.g. from Stripe's dashboard): reconciliation lists it.
        return inbox.record(PROVIDER, event, UNMATCHED, stripe_refund.id)
    if refund.status is RefundStatus.SUCCEEDED and stripe_refund.status in STRIPE_FAILED:
        return desk.failed_after_success(refund, stripe_refund, event)
    if refund.status is not RefundStatus.PENDING:
        return inbox.record(PROVIDER, event, DUPLICATE, refund.id)
    return desk.apply(refund, stripe_refund, event).status.value


def on_charge_refunded(
    ledger: LedgerService,
    gateway: PaymentGateway,
    event: WebhookEvent,
    *,
    refunds: RefundRepository,
    deposits: RefundedDeposits,
    inbox: Inbox,
) -> str:
    """``charge.refunded``: apply every refund of the charge's PaymentIntent that the ledger made
    and has not finished. Each finish is conditional on its hold, so a redelivery moves nothing."""
    desk = _Desk(ledger, gateway, refunds, deposits, inbox)
    intent_id = event.object.get("payment_intent")
    if not isinstance(intent_id, str) or not intent_id:
        return inbox.record(PROVIDER, event, UNMATCHED, event.object_id)
    applied = 0
    for stripe_refund in gateway.list_refunds(intent_id):
        refund = refunds.get(stripe_refund.metadata.get("refund_id", ""))
        if (
            refund is None
            or refund.status is not RefundStatus.PENDING
            or refund.payment_intent_id != intent_id
        ):
            continue
        desk.apply(refund, stripe_refund)
        applied += 1
    return inbox.record(PROVIDER, event, "refunds_applied" if applied else IGNORED, intent_id)


# -- finishing what was left pending -------------------------------------------------------------
def finish_pending(
    ledger: LedgerService,
    gateway: PaymentGateway,
    *,
    refunds: RefundRepository,
    deposits: RefundedDeposits,
    inbox: Inbox,
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
    desk = _Desk(ledger, gateway, refunds, deposits, inbox)
    cutoff = to_iso(parse_iso(now or now_iso()) - timedelta(seconds=older_than))
    outcomes: dict[str, int] = {}
    for refund_id in refunds.pending(limit):
        refund = refunds.get(refund_id)
        if (
            refund is None
            or refund.status is not RefundStatus.PENDING
            or refund.created_at > cutoff
        ):
            continue
        try:
            if refund.stripe_refund_id is not None:
                done = desk.apply(refund, gateway.retrieve_refund(refund.stripe_refund_id))
            else:
                done = desk.submit(refund, look_first=True)
            outcome = done.status.value
        except ProviderUnavailable:
            outcome = "unavailable"
        except Exception:
            logger.exception("finishing a pending refund failed", extra={"refund_id": refund.id})
            outcome = "error"
        if outcome not in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
            refunds.to_the_back(refund.id, now_iso())
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


# -- the steps ------------------------------------------------------------------------------------
def _audit(action: str, actor: str, refund: Refund, ip: str | None, **details: str) -> AuditEvent:
    return AuditEvent.new(
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


def _ours(stripe_refund: StripeRefund, refund: Refund) -> bool:
    return stripe_refund.metadata.get("refund_id") == refund.id


@dataclass(frozen=True)
class _Desk:
    """One use case's collaborators, so the steps need not pass them along."""

    ledger: LedgerService
    gateway: PaymentGateway | None
    refunds: RefundRepository
    deposits: RefundedDeposits
    inbox: Inbox | None

    def hold(
        self,
        admin: User,
        deposit: Deposit,
        refund_id: str,
        amount: str | None,
        reason: str,
        ip: str | None,
    ) -> Refund:
        now = now_iso()
        deposit.check_refundable()
        minor = deposit.refundable if amount is None else parse_amount(amount, deposit.currency)
        deposit.refund_reserved_by(minor, now)  # refund at most what is left
        refund = Refund.requested(
            refund_id,
            deposit_id=deposit.id,
            user_id=deposit.user_id,
            amount=minor,
            currency=deposit.currency,
            reason=reason,
            requested_by=admin.id,
            payment_intent_id=str(deposit.payment_intent_id),
            at=now,
        )
        code = refund.currency
        recorded = self.ledger.record(
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
                self.refunds.add(refund),
                self.deposits.reserve_refund(deposit, minor, now_iso()),
                self.refunds.audit(_audit("refund.requested", admin.id, refund, ip, reason=reason)),
            ],
        )
        if recorded.created:
            return refund  # exactly what the hold's write stored
        return self.refunds.get(refund.id) or refund  # a racing copy of this request wrote it

    def submit(self, refund: Refund, *, look_first: bool) -> Refund:
        assert self.gateway is not None
        found: StripeRefund | None = None
        if look_first:  # an earlier attempt may have created it before failing
            found = next(
                (
                    r
                    for r in self.gateway.list_refunds(refund.payment_intent_id)
                    if _ours(r, refund)
                ),
                None,
            )
        if found is None:
            try:
                found = self.gateway.create_refund(
                    payment_intent_id=refund.payment_intent_id,
                    amount=refund.amount,
                    refund_id=refund.id,
                    deposit_id=refund.deposit_id,
                )
            except ProviderRefused as exc:
                return self.finish(refund, succeeded=False, failure=str(exc))
        return self.apply(refund, found)

    def apply(
        self, refund: Refund, stripe_refund: StripeRefund, event: WebhookEvent | None = None
    ) -> Refund:
        """Apply what Stripe reports about a refund; a refund already finished is left alone."""
        if stripe_refund.status in STRIPE_DONE:
            return self.finish(refund, succeeded=True, stripe_id=stripe_refund.id, event=event)
        if stripe_refund.status in STRIPE_FAILED:
            failure = stripe_refund.failure_reason or stripe_refund.status
            return self.finish(
                refund, succeeded=False, stripe_id=stripe_refund.id, failure=failure, event=event
            )
        # Still pending at Stripe: wait for its event.
        self.refunds.remember_stripe_refund(refund.id, stripe_refund.id)
        if event is not None:
            self._record(event, "refund_pending", refund.id)
        return self.refunds.get(refund.id) or refund

    def finish(
        self,
        refund: Refund,
        *,
        succeeded: bool,
        stripe_id: str | None = None,
        failure: str | None = None,
        event: WebhookEvent | None = None,
    ) -> Refund:
        """Post (``succeeded``) or void the refund's hold, with the refund item, the deposit's
        totals, the audit event and the webhook's inbox item in the same write; at most once."""
        now = now_iso()
        try:
            finished = refund.finished(
                succeeded=succeeded, at=now, stripe_refund_id=stripe_id, failure=failure
            )
        except InvalidState:
            return self._finished_before(refund, event)
        details = {"stripe_refund_id": stripe_id or ""}
        if failure is not None:
            details["failure"] = failure[:MAX_REASON]
        status = finished.status.value
        extra: list[SideWrite] = [
            self.refunds.finish(finished),
            self.deposits.settle_refund(
                refund.deposit_id, refund.amount, succeeded=succeeded, at=now
            ),
            self.refunds.audit(_audit(f"refund.{status}", PROVIDER, refund, None, **details)),
        ]
        if event is not None:
            assert self.inbox is not None
            extra.append(self.inbox.entry(PROVIDER, event, f"refund_{status}", refund.id))
        resolve = self.ledger.post_pending if succeeded else self.ledger.void_pending
        try:
            resolve(refund.transaction_id, extra=extra)
        except (HoldNotPending, InvalidState):
            return self._finished_before(refund, event)
        except WebhookEventSeen:
            return self.refunds.get(refund.id) or refund
        return finished  # this write finished it: the item now says exactly this

    def _finished_before(self, refund: Refund, event: WebhookEvent | None) -> Refund:
        """Finished before (by the request, a retry or another event): nothing moves again."""
        if event is not None:
            self._record(event, DUPLICATE, refund.id)
        return self.refunds.get(refund.id) or refund

    def failed_after_success(
        self, refund: Refund, stripe_refund: StripeRefund, event: WebhookEvent
    ) -> str:
        """Stripe failed a refund it had reported succeeded (the card could not take it; Stripe
        puts the money back in the platform balance with a ``refund_failure`` balance
        transaction). The wallet gets the money back: the refund's transaction is reversed
        (clearing -> wallet), with the refund marked failed, the deposit's refund totals given
        back, the audit event and the inbox item in the same write, at most once (the reversal's
        id is derived from the refund's)."""
        assert self.inbox is not None
        now = now_iso()
        failure = (stripe_refund.failure_reason or stripe_refund.status)[:MAX_REASON]
        failed = refund.failed_after_success(failure, now)
        extra = [
            self.refunds.fail_after_success(failed),
            self.deposits.return_refund(refund.deposit_id, refund.amount, now),
            self.refunds.audit(
                _audit(
                    "refund.failed",
                    PROVIDER,
                    refund,
                    None,
                    stripe_refund_id=stripe_refund.id,
                    failure=failure,
                    after="succeeded",
                )
            ),
            self.inbox.entry(PROVIDER, event, FAILED_AFTER_SUCCESS, refund.id),
        ]
        try:
            self.ledger.reverse(
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
            return DUPLICATE
        except (AlreadyReversed, InvalidState):
            return self._record(event, DUPLICATE, refund.id)
        return FAILED_AFTER_SUCCESS

    def _record(self, event: WebhookEvent, outcome: str, subject: str | None) -> str:
        assert self.inbox is not None
        return self.inbox.record(PROVIDER, event, outcome, subject)


def pending(refunds: RefundRepository, limit: int = FINISH_BATCH) -> list[str]:
    """Ids of refunds still pending, oldest first."""
    return refunds.pending(limit)
