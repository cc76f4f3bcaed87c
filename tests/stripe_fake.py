"""One fake Stripe for every test: PaymentIntents, refunds and balance transactions in memory,
with the adapter's interface; webhook verification is the real adapter's (``StripeGateway``),
against events signed with ``SECRET`` by Stripe's scheme.

Like real Stripe, it honours idempotency keys (the deposit id for a PaymentIntent, the ledger's
refund id for a refund); unlike it, it would accept an over-refund (the ledger must refuse it).
``outcome`` is the status new refunds get; ``refuse`` and ``down`` make ``create_refund`` raise
as the adapter does for a 4xx / an unreachable Stripe.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from chalicelib.adapters.stripe_gateway import (
    BalanceTransaction,
    PaymentIntent,
    StripeGateway,
    StripeRefund,
)
from chalicelib.domain.errors import ProviderRefused, ProviderUnavailable

SECRET = "whsec_test_endpoint"


def epoch(day: str, hour: int) -> int:
    """Epoch seconds of ``hour`` o'clock (UTC) on ``day`` (``YYYY-MM-DD``)."""
    return int(datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp())


class FakeStripe(StripeGateway):
    def __init__(self) -> None:
        super().__init__("sk_test_fake", SECRET)
        self.intents: dict[str, PaymentIntent] = {}
        self.created = 0  # PaymentIntents created
        self.refunds: dict[str, StripeRefund] = {}
        self.outcome = "succeeded"
        self.refuse = False
        self.down = False
        self.create_calls = 0  # refunds asked for
        self.items: list[BalanceTransaction] = []  # the balance transactions
        self.calls: list[tuple[int, int]] = []  # the windows reconciliation asked for

    # -- PaymentIntents ---------------------------------------------------------------------------
    def create_payment_intent(
        self, *, amount: int, currency: str, deposit_id: str, user_id: str
    ) -> PaymentIntent:
        for intent in self.intents.values():  # Stripe's idempotency key is the deposit id
            if intent.metadata["deposit_id"] == deposit_id:
                return intent
        self.created += 1
        intent_id = f"pi_fake{self.created}"
        intent = PaymentIntent(
            id=intent_id,
            status="requires_payment_method",
            amount=amount,
            currency=currency.upper(),
            client_secret=f"{intent_id}_secret_x",
            metadata={"deposit_id": deposit_id, "user_id": user_id},
        )
        self.intents[intent_id] = intent
        return intent

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        return self.intents[payment_intent_id]

    def settle(self, intent_id: str, status: str = "succeeded", amount: int | None = None) -> None:
        """The customer paid (or the payment reached ``status``)."""
        intent = self.intents[intent_id]
        self.intents[intent_id] = dataclasses.replace(
            intent, status=status, amount=intent.amount if amount is None else amount
        )

    # -- refunds ----------------------------------------------------------------------------------
    def create_refund(
        self, *, payment_intent_id: str, amount: int, refund_id: str, deposit_id: str
    ) -> StripeRefund:
        self.create_calls += 1
        if self.down:
            raise ProviderUnavailable("Stripe could not be reached; retry later")
        if self.refuse:
            raise ProviderRefused("Stripe refused: charge is disputed")
        for existing in self.refunds.values():  # the idempotency key is our refund id
            if existing.metadata["refund_id"] == refund_id:
                return existing
        refund = StripeRefund(
            id=f"re_fake{len(self.refunds) + 1}",
            status=self.outcome,
            amount=amount,
            currency="USD",
            payment_intent_id=payment_intent_id,
            metadata={"refund_id": refund_id, "deposit_id": deposit_id},
        )
        self.refunds[refund.id] = refund
        return refund

    def retrieve_refund(self, stripe_refund_id: str) -> StripeRefund:
        return self.refunds[stripe_refund_id]

    def list_refunds(self, payment_intent_id: str) -> list[StripeRefund]:
        return [r for r in self.refunds.values() if r.payment_intent_id == payment_intent_id]

    def set_status(self, stripe_refund_id: str, status: str) -> None:
        self.refunds[stripe_refund_id] = dataclasses.replace(
            self.refunds[stripe_refund_id], status=status
        )

    # -- balance transactions (reconciliation) ----------------------------------------------------
    def list_balance_transactions(self, start: int, end: int) -> list[BalanceTransaction]:
        self.calls.append((start, end))
        return [i for i in self.items if start <= i.created < end]

    def charge(self, pi: str, amount: int, day: str, hour: int = 12) -> None:
        """Stripe's balance transaction of a card payment of PaymentIntent ``pi`` on ``day``."""
        self.items.append(
            BalanceTransaction(
                id=f"txn_{pi}",
                type="charge",
                amount=amount,
                currency="USD",
                created=epoch(day, hour),
                source_id=f"ch_{pi}",
                payment_intent_id=pi,
            )
        )

    def refund(self, refund_id: str, pi: str, amount: int, day: str) -> None:
        """Stripe's balance transaction of the ledger's refund ``refund_id`` on ``day``."""
        self.items.append(
            BalanceTransaction(
                id=f"txn_{refund_id}",
                type="refund",
                amount=-amount,
                currency="USD",
                created=epoch(day, 13),
                source_id=f"re_{refund_id}",
                payment_intent_id=pi,
                refund_id=refund_id,
            )
        )
