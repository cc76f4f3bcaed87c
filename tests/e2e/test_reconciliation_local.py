"""The reconciliation on the real local stack: after a mixed day (a card deposit confirmed in
localstripe, a partial refund through localstripe, a transfer), the seeded admin runs today's
reconciliation (a partial day) over HTTP and reads an ``ok`` report in which the Stripe balance
transactions match the ledger's deposit and refund."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyotp
import pytest

from chalicelib.services import reconciliation as recon
from tests.e2e.test_card_deposit import post, usd_posted
from tests.e2e.test_local_stack import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADMIN_TOTP_SECRET,
    HOST,
    Stack,
    get,
)

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
CREDIT_TIMEOUT_SECONDS = 20


def sign_in(api: str, email: str) -> dict[str, str]:
    status, body = post(
        f"{api}/v1/auth/signup", {"email": email, "password": PASSWORD, "accept_terms": True}
    )
    assert status == 201, body
    status, tokens = post(f"{api}/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, tokens
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_an_admin_reconciles_a_mixed_day_on_the_local_stack(stack: Stack):
    import stripe

    api = f"http://{HOST}:{stack.api}"
    dora = sign_in(api, "dora@example.com")
    sign_in(api, "eve@example.com")

    status, body = post(
        f"{api}/v1/deposits/card",
        {"amount": "40.00", "currency": "USD"},
        {**dora, "Idempotency-Key": "recon-card-1"},
    )
    assert status == 201, body
    deposit = body["deposit"]
    stripe.api_key = "sk_test_local"
    stripe.api_base = f"http://{HOST}:{stack.stripe}"
    card = stripe.PaymentMethod.create(
        type="card",
        card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    )
    stripe.PaymentIntent.modify(deposit["payment_intent_id"], payment_method=card.id)
    stripe.PaymentIntent.confirm(deposit["payment_intent_id"])
    deadline = time.monotonic() + CREDIT_TIMEOUT_SECONDS
    while usd_posted(api, dora) != "40.00":
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.25)

    status, body = post(
        f"{api}/v1/transfers",
        {"amount": "5.00", "currency": "USD", "to_email": "eve@example.com"},
        {**dora, "Idempotency-Key": "recon-transfer-1"},
    )
    assert status == 201, body

    login = {
        "email": ADMIN_EMAIL,
        "password": ADMIN_PASSWORD,
        "totp_code": pyotp.TOTP(ADMIN_TOTP_SECRET).now(),
    }
    status, tokens = post(f"{api}/v1/auth/login", login)
    assert status == 200, tokens
    admin = {"Authorization": f"Bearer {tokens['access_token']}"}
    status, body = post(
        f"{api}/v1/admin/deposits/{deposit['id']}/refunds",
        {"amount": "10.00", "reason": "partial"},
        {**admin, "Idempotency-Key": "recon-refund-1"},
    )
    assert status == 201, body
    assert usd_posted(api, dora) == "25.00"

    # A run closes every account a moment before it starts (reconciliation.closing_cutoff).
    time.sleep(recon.CUTOFF_MARGIN.total_seconds() + 0.5)
    today = datetime.now(UTC).date().isoformat()
    status, body = post(f"{api}/v1/admin/reconciliations", {"date": today}, admin)
    assert status == 201, body
    report = body["report"]
    assert report["status"] == "ok", report
    assert report["trial_balance"]["USD"] == "0.00"
    assert report["transactions_checked"] >= 3
    assert report["stripe"] == {"matched": 2, "unmatched_ledger": [], "unmatched_stripe": []}

    status, _, got = get(f"{api}/v1/admin/reconciliations/{today}", admin)
    assert (status, got) == (200, {"report": report})
