"""The reconciliation's Stripe read against localstripe: the balance transactions of a window,
with the PaymentIntent of a charge and the ledger's refund id of a refund."""

from __future__ import annotations

import time

from chalicelib.adapters.stripe_gateway import StripeGateway
from tests.integration.test_stripe_gateway import SECRET, localstripe  # noqa: F401 (fixture)


def test_charges_and_refunds_of_a_window_name_their_intent_and_refund(localstripe):  # noqa: F811
    import stripe

    gateway = StripeGateway("sk_test_local", SECRET, localstripe)
    gateway._stripe()  # points the library at localstripe
    method = stripe.PaymentMethod.create(
        type="card",
        card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
    )
    intent = stripe.PaymentIntent.create(
        amount=2500,
        currency="usd",
        payment_method=method.id,
        payment_method_types=["card"],
        metadata={"deposit_id": "dep_1"},
    )
    stripe.PaymentIntent.confirm(intent.id)
    gateway.create_refund(
        payment_intent_id=intent.id, amount=1000, refund_id="rf_1", deposit_id="dep_1"
    )
    now = int(time.time())

    found = gateway.list_balance_transactions(now - 60, now + 60)
    by_type = {t.type: t for t in found}
    charge, refund = by_type["charge"], by_type["refund"]
    assert (charge.amount, charge.currency, charge.payment_intent_id) == (2500, "USD", intent.id)
    assert (charge.source_id or "").startswith("ch_")
    assert (refund.amount, refund.refund_id, refund.payment_intent_id) == (-1000, "rf_1", intent.id)
    assert gateway.list_balance_transactions(now + 60, now + 120) == []
