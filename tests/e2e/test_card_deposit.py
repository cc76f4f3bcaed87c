"""A card deposit on the real local stack: the API creates the PaymentIntent in localstripe, the
customer confirms it through the ``stripe`` library, localstripe sends the signed
``payment_intent.succeeded`` to the API's webhook (registered under ``whsec_local`` at start-up),
and the wallet is credited exactly once, with no other step. Then the seeded admin refunds it in
two parts through localstripe, with exact balances."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.test_local_stack import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADMIN_TOTP_SECRET,
    HOST,
    Stack,
    get,
    send,
)

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
CREDIT_TIMEOUT_SECONDS = 20


def post(url: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1 only)
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    status, _, answer = send(request)
    return status, answer


def sign_in(api: str, email: str) -> dict[str, str]:
    """Sign a new user up and log in: their Authorization header."""
    status, body = post(
        f"{api}/v1/auth/signup", {"email": email, "password": PASSWORD, "accept_terms": True}
    )
    assert status == 201, body
    status, tokens = post(f"{api}/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, tokens
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def admin_sign_in(api: str) -> dict[str, str]:
    """Log the seeded admin in (password and TOTP): their Authorization header."""
    import pyotp

    login = {
        "email": ADMIN_EMAIL,
        "password": ADMIN_PASSWORD,
        "totp_code": pyotp.TOTP(ADMIN_TOTP_SECRET).now(),
    }
    status, tokens = post(f"{api}/v1/auth/login", login)
    assert status == 200, tokens
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def pay_in_localstripe(stack: Stack, payment_intent_id: str) -> str:
    """The customer's side: a card, attached to the intent, confirmed (what Stripe.js does).
    Returns the confirmed intent's status."""
    import stripe

    stripe.api_key = "sk_test_local"
    stripe.api_base = f"http://{HOST}:{stack.stripe}"
    card = stripe.PaymentMethod.create(
        type="card",
        card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    )
    stripe.PaymentIntent.modify(payment_intent_id, payment_method=card.id)
    return stripe.PaymentIntent.confirm(payment_intent_id).status


def usd_posted(api: str, auth: dict[str, str]) -> str:
    status, _, body = get(f"{api}/v1/accounts", auth)
    assert status == 200, body
    return next(a["posted"] for a in body["data"] if a["currency"] == "USD")


def test_a_card_deposit_confirmed_in_localstripe_credits_the_wallet_once(stack: Stack):
    import stripe

    api = f"http://{HOST}:{stack.api}"
    auth = sign_in(api, "carol@example.com")

    status, body = post(
        f"{api}/v1/deposits/card",
        {"amount": "25.00", "currency": "USD"},
        {**auth, "Idempotency-Key": "e2e-card-1"},
    )
    assert status == 201, body
    deposit = body["deposit"]
    assert deposit["status"] == "pending"

    assert pay_in_localstripe(stack, deposit["payment_intent_id"]) == "succeeded"

    deadline = time.monotonic() + CREDIT_TIMEOUT_SECONDS
    while usd_posted(api, auth) != "25.00":
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.25)
    status, _, got = get(f"{api}/v1/deposits/{deposit['id']}", auth)
    assert (status, got["deposit"]["status"]) == (200, "succeeded")

    time.sleep(1)  # any second delivery would have landed by now
    assert usd_posted(api, auth) == "25.00"

    # The admin refunds 10.00, then the rest; localstripe refunds at once, so each posts at once.
    admin = admin_sign_in(api)
    refunds_url = f"{api}/v1/admin/deposits/{deposit['id']}/refunds"
    for key, body, left in [
        ("e2e-refund-1", {"amount": "10.00", "reason": "partial"}, "15.00"),
        ("e2e-refund-2", {"reason": "the rest"}, "0.00"),
    ]:
        status, answer = post(refunds_url, body, {**admin, "Idempotency-Key": key})
        assert (status, answer["refund"]["status"]) == (201, "succeeded"), answer
        assert usd_posted(api, auth) == left
    status, answer = post(
        refunds_url, {"amount": "0.01", "reason": "too much"}, {**admin, "Idempotency-Key": "x"}
    )
    assert (status, answer["error"]["code"]) == (422, "refund_exceeds_deposit")
    status, _, got = get(f"{api}/v1/deposits/{deposit['id']}", auth)
    assert (got["deposit"]["status"], got["deposit"]["refunded_amount"]) == ("refunded", "25.00")
    made = stripe.Refund.list(payment_intent=deposit["payment_intent_id"])
    assert sorted(r.amount for r in made.data) == [1000, 1500]
