"""A card deposit: its status, the moves it may make, and what may still be refunded of it.

Life of a card deposit: ``pending`` (created with its Stripe PaymentIntent) -> ``succeeded``
(Stripe confirmed the payment: the wallet is credited) or ``failed`` (Stripe's
``payment_intent.payment_failed``). A success after a failure still credits, because the money
did arrive (a PaymentIntent can fail an attempt and then succeed with another card); a failure
after the success changes nothing.

Guarantees (DESIGN.md, 5 and "Flows: Refund"), each checked here and again by the DynamoDB
condition of the write that applies it (``adapters/dynamo/deposit_repository.py``):

* **One credit per PaymentIntent**: a deposit is credited at most once, by the transaction whose
  id is derived from its PaymentIntent id (``credit_transaction_id``), so a second event about the
  same payment cannot credit it again (``TransactionAlreadyExists``).
* **Refund at most what was credited**: at every moment
  ``0 <= refunded_amount <= refund_reserved <= credited_amount``, where ``refund_reserved``
  counts refunds succeeded or in flight and ``refunded_amount`` the succeeded ones; a refund
  reserves ``amount`` only if ``amount <= credited_amount - refund_reserved``
  (``RefundExceedsDeposit``).
* **Money leaves once**: a deposit rolled back by an admin can no longer be refunded, and one with
  refunds reserved or a dispute can no longer be rolled back (``NotReversible``), so the money
  cannot leave the wallet twice.

The stored status stays ``succeeded`` once credited; ``refunded`` and ``partially_refunded`` are
derived from ``refunded_amount`` (``public_status``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.errors import (
    InvalidAmount,
    InvalidState,
    NotReversible,
    RefundExceedsDeposit,
    TransactionAlreadyExists,
    UnsupportedCurrency,
)
from chalicelib.domain.transactions import derive_transaction_id

CARD_CURRENCY = "USD"
REFUNDED, PARTIALLY_REFUNDED = "refunded", "partially_refunded"


class DepositStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def card_deposit_id(user_id: str, idempotency_key: str) -> str:
    """The deposit of this user's request: a retry (same Idempotency-Key) finds the same one."""
    return "dep_" + derive_transaction_id("card-deposit", user_id, idempotency_key)[4:]


def credit_transaction_id(payment_intent_id: str) -> str:
    """The one transaction that may credit a PaymentIntent's money."""
    return derive_transaction_id("deposit", payment_intent_id)


def check_card_currency(code: str) -> None:
    """Raises UnsupportedCurrency for anything but USD."""
    if code != CARD_CURRENCY:
        raise UnsupportedCurrency(f"card deposits are in {CARD_CURRENCY} only, not {code}")


@dataclass(frozen=True)
class Deposit:
    id: str
    user_id: str
    amount: int  # asked for, minor units; the credit is what Stripe reports
    currency: str
    status: DepositStatus
    payment_intent_id: str | None
    created_at: str
    transaction_id: str | None = None
    credited_amount: int | None = None
    client_secret: str | None = None  # only when just created (never stored)
    refund_reserved: int = 0  # refunds succeeded or in flight
    refunded_amount: int = 0  # refunds succeeded
    rolled_back_by: str | None = None  # the reversal, when an admin rolled the deposit back
    disputed_by: str | None = None  # the (latest) dispute of the card payment
    updated_at: str | None = None

    @classmethod
    def pending(cls, deposit_id: str, user_id: str, amount: int, code: str, at: str) -> Deposit:
        """A new card deposit waiting for Stripe. Raises UnsupportedCurrency, InvalidAmount."""
        check_card_currency(code)
        if amount <= 0:
            raise InvalidAmount("a card deposit must be positive")
        return cls(deposit_id, user_id, amount, code, DepositStatus.PENDING, None, at)

    @property
    def public_status(self) -> str:
        """``pending``, ``succeeded``, ``failed``, ``refunded`` or ``partially_refunded``."""
        if self.status is not DepositStatus.SUCCEEDED or self.refunded_amount <= 0:
            return self.status.value
        if self.refunded_amount >= (self.credited_amount or 0):
            return REFUNDED
        return PARTIALLY_REFUNDED

    @property
    def refundable(self) -> int:
        """What is left to refund: credited, less refunds succeeded or in flight."""
        return (self.credited_amount or 0) - self.refund_reserved

    def pays_with(self, payment_intent_id: str) -> bool:
        """Whether this PaymentIntent may be this deposit's (none is known yet, or it is)."""
        return self.payment_intent_id in (None, payment_intent_id)

    # -- transitions --------------------------------------------------------------------------
    def with_payment_intent(self, payment_intent_id: str) -> Deposit:
        """Raises InvalidState if the deposit already has another PaymentIntent."""
        if not self.pays_with(payment_intent_id):
            raise InvalidState(f"deposit {self.id} has another PaymentIntent")
        return replace(self, payment_intent_id=payment_intent_id)

    def credited(self, payment_intent_id: str, amount: int, at: str) -> Deposit:
        """Stripe confirmed ``amount`` received for ``payment_intent_id``.

        Raises (in order):
            TransactionAlreadyExists: the deposit was credited before (one credit per
                PaymentIntent).
            InvalidState: the PaymentIntent is not this deposit's.
            InvalidAmount: nothing was received.
        """
        if self.transaction_id is not None:
            raise TransactionAlreadyExists(f"deposit {self.id} was credited before")
        if not self.pays_with(payment_intent_id):
            raise InvalidState(f"deposit {self.id} has another PaymentIntent")
        if amount <= 0:
            raise InvalidAmount(f"PaymentIntent {payment_intent_id} received nothing")
        return replace(
            self,
            status=DepositStatus.SUCCEEDED,
            payment_intent_id=payment_intent_id,
            transaction_id=credit_transaction_id(payment_intent_id),
            credited_amount=amount,
            updated_at=at,
        )

    def failed(self, at: str) -> Deposit:
        """Stripe failed the payment. Raises InvalidState unless the deposit is pending (a late
        failure never un-credits)."""
        if self.status is not DepositStatus.PENDING:
            raise InvalidState(f"deposit {self.id} is not pending")
        return replace(self, status=DepositStatus.FAILED, updated_at=at)

    def check_refundable(self) -> None:
        """Raises InvalidState if the deposit was never credited, or was rolled back."""
        if self.status is not DepositStatus.SUCCEEDED or not self.credited_amount:
            raise InvalidState(f"deposit {self.id} is {self.status.value}: nothing to refund")
        if self.rolled_back_by:
            raise InvalidState(f"deposit {self.id} was rolled back: nothing left to refund")

    def refund_reserved_by(self, amount: int, at: str) -> Deposit:
        """``amount`` set aside for a refund (refund at most what is left).

        Raises (in order):
            InvalidState: the deposit was never credited, or was rolled back.
            RefundExceedsDeposit: ``amount`` is not within ``1..refundable``.
        """
        self.check_refundable()
        left = self.refundable
        if amount <= 0 or amount > left:
            raise RefundExceedsDeposit(
                f"deposit {self.id} has {left} minor units left to refund, asked for {amount}"
            )
        return replace(self, refund_reserved=self.refund_reserved + amount, updated_at=at)

    def refund_settled(self, amount: int, *, succeeded: bool, at: str) -> Deposit:
        """A reserved refund ended: ``succeeded`` counts it refunded, otherwise its reservation is
        given back. Raises InvalidState if no such amount is reserved."""
        if amount <= 0 or amount > self.refund_reserved - self.refunded_amount:
            raise InvalidState(f"deposit {self.id} has no refund of {amount} in flight")
        if succeeded:
            return replace(self, refunded_amount=self.refunded_amount + amount, updated_at=at)
        return replace(self, refund_reserved=self.refund_reserved - amount, updated_at=at)

    def refund_returned(self, amount: int, at: str) -> Deposit:
        """Stripe failed a refund it had reported succeeded: the money is back, and may be
        refunded again. Raises InvalidState if no such amount was refunded."""
        if amount <= 0 or amount > self.refunded_amount:
            raise InvalidState(f"deposit {self.id} has no refund of {amount} to give back")
        return replace(
            self,
            refunded_amount=self.refunded_amount - amount,
            refund_reserved=self.refund_reserved - amount,
            updated_at=at,
        )

    def rolled_back(self, reversal_id: str, at: str) -> Deposit:
        """An admin reverses the credit. Raises NotReversible when a refund is reserved or made,
        the payment was disputed, or it was rolled back already."""
        if self.refund_reserved or self.rolled_back_by or self.disputed_by:
            raise NotReversible(
                f"deposit {self.id} has refunds or a dispute: refund the rest, or let the"
                " dispute settle it, instead of rolling it back"
            )
        return replace(self, rolled_back_by=reversal_id, updated_at=at)

    def disputed(self, dispute_id: str, at: str) -> Deposit:
        """The card payment was disputed: from now on the dispute settles the money."""
        return replace(self, disputed_by=dispute_id, updated_at=at)
