"""Card deposits and Stripe's webhook over HTTP.

Stripe's API is a fake with the adapter's interface (``tests/stripe_fake.py``); the webhook
signature is checked by the real adapter, with the ``stripe`` library, against events signed here
with Stripe's scheme: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository
from chalicelib.api import deposits as deposits_api
from chalicelib.api.dependencies import (
    get_auth_service,
    get_deposit_repository,
    get_dispute_repository,
    get_inbox,
    get_ledger_service,
    get_refund_repository,
    get_risk,
)
from chalicelib.auth import passwords
from chalicelib.domain.accounts import OwnerType, wallet_id
from tests.api.helpers import call
from tests.stripe_fake import SECRET, FakeStripe
from tests.support import check_guarantees, scan, verified

PASSWORD = "correct horse battery"
WEBHOOK = "/v1/webhooks/stripe"


def sign(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def event(event_id: str, event_type: str, intent_id: str, amount: int = 2500) -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "data": {"object": {"id": intent_id, "object": "payment_intent", "amount": amount}},
    }
    return json.dumps(body).encode()


def handle_event(ledger, gateway, payload: bytes) -> str:
    """One signed delivery straight to the webhook router (no HTTP), as the route wires it."""
    from chalicelib.services import stripe_events

    return stripe_events.handle(
        ledger,
        gateway,
        payload,
        sign(payload),
        deposits=get_deposit_repository(),
        refunds=get_refund_repository(),
        disputes=get_dispute_repository(),
        inbox=get_inbox(),
    )


def deliver(client, payload: bytes, signature: str | None = "sign"):
    headers = {"content-type": "application/json; charset=utf-8"}
    if signature == "sign":
        signature = sign(payload)
    if signature is not None:
        headers["stripe-signature"] = signature
    return client.http.post(WEBHOOK, headers=headers, body=payload)


@pytest.fixture
def stripe_fake(monkeypatch) -> FakeStripe:
    fake = FakeStripe()
    monkeypatch.setattr(deposits_api, "get_payment_gateway", lambda: fake)
    return fake


@pytest.fixture
def people(table, api_client, stripe_fake):
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    verified(auth.sign_up("bob@example.com", PASSWORD, True, None))
    return {
        "alice": alice,
        "alice_token": auth.login("alice@example.com", PASSWORD, None, None).access_token,
        "bob_token": auth.login("bob@example.com", PASSWORD, None, None).access_token,
        "table": table,
    }


def deposit(client, token: str, amount: str = "25.00", key: str = "d1", code: str = "USD"):
    return call(
        client, "POST", "/v1/deposits/card", token, {"amount": amount, "currency": code}, key
    )


def usd_balance(user_id: str) -> int:
    account = get_ledger_service().repository.get_account(wallet_id(OwnerType.USER, user_id, "USD"))
    return account.posted


def status_of(client, token: str, deposit_id: str) -> str:
    _, body = call(client, "GET", f"/v1/deposits/{deposit_id}", token)
    return body["deposit"]["status"]


def inbox(table: str) -> dict[str, str]:
    return {i["event_id"]: i["outcome"] for i in scan(table) if i["item_type"] == "webhook_event"}


# -- creating a deposit ---------------------------------------------------------------------------
def test_a_card_deposit_is_pending_with_its_payment_intent(api_client, people, stripe_fake):
    token = people["alice_token"]
    response, body = deposit(api_client, token)
    assert response.status_code == 201, body
    d = body["deposit"]
    assert (d["status"], d["amount"], d["currency"]) == ("pending", "25.00", "USD")
    intent = stripe_fake.intents[d["payment_intent_id"]]
    assert d["client_secret"] == intent.client_secret
    assert intent.metadata == {"deposit_id": d["id"], "user_id": people["alice"].id}
    assert intent.amount == 2500

    response, again = deposit(api_client, token)  # a retry: same deposit, same intent
    assert (response.status_code, again) == (201, body)
    assert stripe_fake.created == 1

    response, got = call(api_client, "GET", f"/v1/deposits/{d['id']}", token)
    assert (response.status_code, got["deposit"]["id"]) == (200, d["id"])
    response, other = call(api_client, "GET", f"/v1/deposits/{d['id']}", people["bob_token"])
    assert (response.status_code, other["error"]["code"]) == (404, "not_found")
    assert usd_balance(people["alice"].id) == 0  # nothing moves before Stripe says so


def test_a_retry_after_the_replay_record_is_gone_reuses_the_deposit(
    api_client, people, stripe_fake
):
    from chalicelib.services import deposits

    repository = get_deposit_repository()
    first = deposits.create_card_deposit(
        stripe_fake,
        deposits=repository,
        risk=get_risk(),
        user=people["alice"],
        amount="5",
        currency_code="USD",
        idempotency_key="k",
    )
    again = deposits.create_card_deposit(
        stripe_fake,
        deposits=repository,
        risk=get_risk(),
        user=people["alice"],
        amount="5",
        currency_code="USD",
        idempotency_key="k",
    )
    assert (again.id, again.payment_intent_id) == (first.id, first.payment_intent_id)
    assert stripe_fake.created == 1


@pytest.mark.parametrize(
    ("amount", "code", "status", "error"),
    [
        ("25.00", "BTC", 400, "unsupported_currency"),
        ("25.00", "EUR", 400, "unsupported_currency"),
        ("0", "USD", 400, "invalid_amount"),
        ("1.001", "USD", 400, "invalid_amount"),
    ],
)
def test_a_bad_card_deposit_is_refused(api_client, people, amount, code, status, error):
    response, body = deposit(api_client, people["alice_token"], amount, code=code)
    assert (response.status_code, body["error"]["code"]) == (status, error)


def test_a_card_deposit_needs_an_idempotency_key(api_client, people):
    response, body = deposit(api_client, people["alice_token"], key=None)
    assert (response.status_code, body["error"]["code"]) == (400, "idempotency_key_required")


# -- signatures -----------------------------------------------------------------------------------
def _stale(payload: bytes) -> str:
    return sign(payload, at=int(time.time()) - 301)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda payload: (payload, None), id="missing"),
        pytest.param(lambda payload: (payload, sign(payload, "whsec_other")), id="wrong-secret"),
        pytest.param(lambda payload: (payload, _stale(payload)), id="stale"),
        pytest.param(
            lambda payload: (payload.replace(b"2500", b"9999"), sign(payload)), id="body-changed"
        ),
        pytest.param(lambda payload: (payload, "garbage"), id="malformed-header"),
        pytest.param(lambda payload: (b"{not json", sign(b"{not json")), id="unparsable-body"),
    ],
)
def test_a_bad_signature_is_refused_and_changes_nothing(api_client, people, stripe_fake, forge):
    _, body = deposit(api_client, people["alice_token"])
    intent_id = body["deposit"]["payment_intent_id"]
    stripe_fake.settle(intent_id)
    before = scan(people["table"])

    payload, signature = forge(event("evt_1", "payment_intent.succeeded", intent_id))
    response = deliver(api_client, payload, signature)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_webhook"
    assert scan(people["table"]) == before


# -- exactly once, in any order -------------------------------------------------------------------
def test_succeeded_credits_once_across_redelivery_and_a_second_event(
    api_client, people, stripe_fake
):
    token, user_id = people["alice_token"], people["alice"].id
    _, body = deposit(api_client, token)
    d = body["deposit"]
    stripe_fake.settle(d["payment_intent_id"])

    response = deliver(
        api_client, event("evt_1", "payment_intent.succeeded", d["payment_intent_id"])
    )
    assert response.status_code == 200
    assert usd_balance(user_id) == 2500
    assert status_of(api_client, token, d["id"]) == "succeeded"

    for event_id in ("evt_1", "evt_1", "evt_2"):  # redelivery, then another event, same payment
        payload = event(event_id, "payment_intent.succeeded", d["payment_intent_id"])
        assert deliver(api_client, payload).status_code == 200
    assert usd_balance(user_id) == 2500
    assert inbox(people["table"]) == {"evt_1": "credited", "evt_2": "duplicate"}
    deposits = [t for t in scan(people["table"]) if t.get("type") == "deposit"]
    assert len([t for t in deposits if t["item_type"] == "transaction"]) == 1
    check_guarantees(people["table"])


def test_a_failure_after_the_success_does_not_uncredit(api_client, people, stripe_fake):
    token, user_id = people["alice_token"], people["alice"].id
    _, body = deposit(api_client, token)
    d = body["deposit"]
    stripe_fake.settle(d["payment_intent_id"])

    deliver(api_client, event("evt_ok", "payment_intent.succeeded", d["payment_intent_id"]))
    response = deliver(
        api_client, event("evt_fail", "payment_intent.payment_failed", d["payment_intent_id"])
    )

    assert response.status_code == 200
    assert usd_balance(user_id) == 2500
    assert status_of(api_client, token, d["id"]) == "succeeded"
    assert inbox(people["table"]) == {"evt_ok": "credited", "evt_fail": "ignored"}
    check_guarantees(people["table"])


def test_a_success_after_a_failure_still_credits(api_client, people, stripe_fake):
    token, user_id = people["alice_token"], people["alice"].id
    _, body = deposit(api_client, token)
    d = body["deposit"]
    stripe_fake.settle(d["payment_intent_id"], status="requires_payment_method")

    deliver(api_client, event("evt_fail", "payment_intent.payment_failed", d["payment_intent_id"]))
    assert status_of(api_client, token, d["id"]) == "failed"
    assert usd_balance(user_id) == 0

    stripe_fake.settle(d["payment_intent_id"])  # the customer retried with another card
    deliver(api_client, event("evt_ok", "payment_intent.succeeded", d["payment_intent_id"]))
    assert status_of(api_client, token, d["id"]) == "succeeded"
    assert usd_balance(user_id) == 2500
    check_guarantees(people["table"])


def test_an_unknown_event_type_is_acknowledged_and_recorded(api_client, people):
    response = deliver(api_client, event("evt_x", "customer.created", "cus_1"))
    assert response.status_code == 200
    assert inbox(people["table"]) == {"evt_x": "ignored"}


# -- re-fetching and failures ---------------------------------------------------------------------
def test_the_credit_is_the_amount_stripe_reports_not_the_event_body(
    api_client, people, stripe_fake
):
    _, body = deposit(api_client, people["alice_token"])
    intent_id = body["deposit"]["payment_intent_id"]
    stripe_fake.settle(intent_id)

    deliver(api_client, event("evt_1", "payment_intent.succeeded", intent_id, amount=1_000_000))

    assert usd_balance(people["alice"].id) == 2500
    check_guarantees(people["table"])


def test_a_succeeded_event_stripe_does_not_confirm_credits_nothing(api_client, people, stripe_fake):
    token = people["alice_token"]
    _, body = deposit(api_client, token)
    d = body["deposit"]  # Stripe still says requires_payment_method

    response = deliver(
        api_client, event("evt_1", "payment_intent.succeeded", d["payment_intent_id"])
    )

    assert response.status_code == 200
    assert usd_balance(people["alice"].id) == 0
    assert status_of(api_client, token, d["id"]) == "pending"
    assert inbox(people["table"]) == {"evt_1": "unmatched"}


def test_a_crash_in_the_ledger_write_answers_5xx_and_the_redelivery_completes(
    api_client, people, stripe_fake, monkeypatch
):
    token, user_id = people["alice_token"], people["alice"].id
    _, body = deposit(api_client, token)
    d = body["deposit"]
    stripe_fake.settle(d["payment_intent_id"])
    real_commit = DynamoLedgerRepository.commit
    calls = {"n": 0}

    def crash_once(self, plan, extra=()):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("connection reset while writing")
        return real_commit(self, plan, extra)

    monkeypatch.setattr(DynamoLedgerRepository, "commit", crash_once)
    payload = event("evt_1", "payment_intent.succeeded", d["payment_intent_id"])
    before = scan(people["table"])

    response = deliver(api_client, payload)
    assert response.status_code == 500
    assert scan(people["table"]) == before  # nothing half-written

    assert deliver(api_client, payload).status_code == 200  # Stripe retries
    assert deliver(api_client, payload).status_code == 200
    assert usd_balance(user_id) == 2500
    assert status_of(api_client, token, d["id"]) == "succeeded"
    assert inbox(people["table"]) == {"evt_1": "credited"}
    check_guarantees(people["table"])


def test_loading_the_app_does_not_import_stripe():
    import subprocess
    import sys

    code = "import sys, app; print('stripe' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"


def test_racing_deliveries_of_one_payment_credit_once(api_client, people, stripe_fake):
    """Six deliveries at once (service level: the Chalice app holds current_request globally):
    three of one event and three other events for the same PaymentIntent. One credits."""
    import threading

    _, body = deposit(api_client, people["alice_token"])
    intent_id = body["deposit"]["payment_intent_id"]
    stripe_fake.settle(intent_id)
    ledger = get_ledger_service()
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def go(n: int) -> None:
        payload = event(f"evt_{n if n % 2 else 0}", "payment_intent.succeeded", intent_id)
        start.wait()
        try:
            outcomes.append(handle_event(ledger, stripe_fake, payload))
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcomes.count("credited") == 1, outcomes
    assert set(outcomes) <= {"credited", "duplicate"}, outcomes
    assert usd_balance(people["alice"].id) == 2500
    check_guarantees(people["table"])
