"""A refund of a card deposit: its status and the moves it may make.

Life of a refund (DESIGN.md, "Flows: Refund"): ``pending`` (the user's funds are held and the
deposit's ``refund_reserved`` raised) -> ``succeeded`` (Stripe refunded: the hold is posted) or
``failed`` (Stripe refused or failed it: the hold is voided, the reservation given back). Stripe
may still fail a refund it reported succeeded: ``succeeded`` -> ``failed``, and the refund's
transaction is reversed so the wallet gets the money back.

Guarantees, each checked here and again by the DynamoDB condition of the write that applies it
(``adapters/dynamo/refund_repository.py``):

* **Refund at most what was deposited**: a refund's amount is reserved on its deposit
  (``Deposit.refund_reserved_by``: ``amount <= credited_amount - refund_reserved``) in the same
  write as its hold, so the sum of a deposit's pending and succeeded refunds never exceeds what
  was credited, even for racing requests.
* **Exactly once**: the refund id is derived from the deposit and the Idempotency-Key
  (``refund_id_for``), its hold's transaction id from the refund id; a refund finishes once
  (``succeeded``/``failed`` only from ``pending``: ``InvalidState``), and fails after success once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.errors import InvalidRequest, InvalidState
from chalicelib.domain.transactions import derive_transaction_id

MAX_REASON = 500
STRIPE_DONE = frozenset({"succeeded"})
STRIPE_FAILED = frozenset({"failed", "canceled"})


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def refund_id_for(deposit_id: str, idempotency_key: str) -> str:
    """The refund of this request: a retry (same Idempotency-Key) finds the same one."""
    return "rf_" + derive_transaction_id("refund", deposit_id, idempotency_key)[4:]


def reason_text(reason: str) -> str:
    """The reason, stripped. Raises InvalidRequest when empty or longer than MAX_REASON."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidRequest(f"reason must be 1 to {MAX_REASON} characters")
    return reason


@dataclass(frozen=True)
class Refund:
    id: str
    deposit_id: str
    user_id: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    requested_by: str
    transaction_id: str
    payment_intent_id: str
    created_at: str
    stripe_refund_id: str | None = None
    failure_reason: str | None = None
    updated_at: str | None = None

    @classmethod
    def requested(
        cls,
        refund_id: str,
        *,
        deposit_id: str,
        user_id: str,
        amount: int,
        currency: str,
        reason: str,
        requested_by: str,
        payment_intent_id: str,
        at: str,
    ) -> Refund:
        """A new pending refund (its amount is the deposit's to allow: ``refund_reserved_by``)."""
        return cls(
            id=refund_id,
            deposit_id=deposit_id,
            user_id=user_id,
            amount=amount,
            currency=currency,
            status=RefundStatus.PENDING,
            reason=reason_text(reason),
            requested_by=requested_by,
            transaction_id=derive_transaction_id("refund", refund_id),
            payment_intent_id=payment_intent_id,
            created_at=at,
        )

    def finished(
        self,
        *,
        succeeded: bool,
        at: str,
        stripe_refund_id: str | None = None,
        failure: str | None = None,
    ) -> Refund:
        """Stripe's outcome. Raises InvalidState unless the refund is pending (once only)."""
        if self.status is not RefundStatus.PENDING:
            raise InvalidState(f"refund {self.id} is finished")
        return replace(
            self,
            status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED,
            stripe_refund_id=stripe_refund_id or self.stripe_refund_id,
            failure_reason=failure[:MAX_REASON] if failure is not None else self.failure_reason,
            updated_at=at,
        )

    def failed_after_success(self, failure: str, at: str) -> Refund:
        """Stripe failed a refund it had reported succeeded. Raises InvalidState unless it is
        ``succeeded`` (once only)."""
        if self.status is not RefundStatus.SUCCEEDED:
            raise InvalidState(f"refund {self.id} is not succeeded")
        return replace(
            self, status=RefundStatus.FAILED, failure_reason=failure[:MAX_REASON], updated_at=at
        )

    def with_stripe_refund(self, stripe_refund_id: str) -> Refund:
        """Raises InvalidState if another Stripe refund is recorded already."""
        if self.stripe_refund_id not in (None, stripe_refund_id):
            raise InvalidState(f"refund {self.id} has another Stripe refund")
        return replace(self, stripe_refund_id=stripe_refund_id)
