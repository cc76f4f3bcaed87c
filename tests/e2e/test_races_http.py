"""Races over real parallel HTTP against the local stack, whose API serves requests in parallel
(several worker processes, each one request at a time, as Lambda containers do).

Each test fires its requests from threads released together, so the requests really run at once
in different workers, and asserts the guarantee that a race must not break: one wallet cannot
be spent twice, a refresh token rotates once, a transaction is reversed once, a login limit holds,
a webhook delivered many times moves money once, and a payment request is paid once.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pyotp
import pytest

from chalicelib.config import LOCAL_CRYPTO_WEBHOOK_SECRET
from infra.local.fake_gateway import deposit_event, signed_request
from tests.e2e.test_local_stack import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADMIN_TOTP_SECRET,
    HOST,
    Stack,
    authed,
    mailed_token,
    require_running,
    run_module,
    send,
)

# One worker of pytest-xdist runs the whole module (`--dist loadgroup`): one stack, file order.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-races-http")]

PASSWORD = "correct horse battery"
CURRENCY = "USDT"


# Requests queue in the front while every worker is busy (as Lambda invocations wait for a
# container): on 2 cores twenty logins (Argon2 each) take seconds, not a failure.
TIMEOUT_SECONDS = 60


def post(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1)
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return send(request, TIMEOUT_SECONDS)


def at_once(copies: int, act: Callable[[int], tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Run ``act(i)`` for i in 0..copies-1 on threads released together; their answers."""
    start = threading.Barrier(copies)
    answers: list[tuple[int, dict]] = [(0, {})] * copies

    def run(i: int) -> None:
        start.wait()
        answers[i] = act(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def statuses(answers: list[tuple[int, dict]]) -> Counter:
    return Counter(
        (status, body.get("error", {}).get("code")) if status >= 400 else (status, None)
        for status, body in answers
    )


def api(stack: Stack) -> str:
    return f"http://{HOST}:{stack.api}"


def call(stack: Stack, path: str, token: str, body: dict | None = None, key: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{api(stack)}{path}", data, authed(token, key))  # noqa: S310
    status, _, answer = send(request, TIMEOUT_SECONDS)
    return status, answer


def sign_up_and_log_in(stack: Stack, email: str) -> dict:
    """A new user, email verified from the mailed link (only verified emails receive money)."""
    credentials = {"email": email, "password": PASSWORD}
    status, _, body = post(f"{api(stack)}/v1/auth/signup", {**credentials, "accept_terms": True})
    assert status == 201, body
    token = mailed_token(stack, email)
    status, _, body = post(f"{api(stack)}/v1/auth/email/verify", {"token": token})
    assert status == 200, body
    status, _, tokens = post(f"{api(stack)}/v1/auth/login", credentials)
    assert status == 200, tokens
    return tokens


def deposit_to(stack: Stack, token: str, amount: str, event_id: str, tx_hash: str) -> dict:
    """The gateway's ``deposit.confirmed`` event for ``amount`` to the user's deposit address."""
    status, body = call(stack, "/v1/deposits/crypto/address", token, {"currency": CURRENCY})
    assert status == 200, body
    return deposit_event(body["address"]["address"], CURRENCY, amount, tx_hash, event_id)


def deliver(stack: Stack, event: dict) -> tuple[int, dict]:
    url = f"{api(stack)}/v1/webhooks/crypto"
    status, _, body = send(signed_request(url, LOCAL_CRYPTO_WEBHOOK_SECRET, event), TIMEOUT_SECONDS)
    return status, body


def wallet(stack: Stack, token: str) -> dict:
    status, body = call(stack, "/v1/accounts", token)
    assert status == 200, body
    return next(a for a in body["data"] if a["currency"] == CURRENCY)


@pytest.fixture
def people(stack: Stack) -> dict:
    """Ann, funded with 10 USDT by one deposit webhook delivered 8 times at once; Bob, empty.

    New people for each test: a test relies on nothing an earlier one did (pytest may restart
    the module's stack between two of its tests)."""
    require_running(stack)
    ann_email, bob_email = (f"{name}-{uuid.uuid4().hex[:8]}@example.com" for name in "ab")
    ann = sign_up_and_log_in(stack, ann_email)
    bob = sign_up_and_log_in(stack, bob_email)
    event = deposit_to(
        stack, ann["access_token"], "10", f"evt_{uuid.uuid4().hex}", f"tx_{uuid.uuid4().hex}"
    )
    answers = at_once(8, lambda _i: deliver(stack, event))
    return {
        "ann": ann,
        "ann_email": ann_email,
        "bob": bob,
        "bob_email": bob_email,
        "deposit_answers": answers,
    }


def test_a_webhook_delivered_eight_times_at_once_credits_once(stack: Stack, people):
    assert {status for status, _ in people["deposit_answers"]} == {200}, people["deposit_answers"]
    account = wallet(stack, people["ann"]["access_token"])
    assert (account["posted"], account["available"]) == ("10.000000", "10.000000")


def test_twelve_parallel_transfers_cannot_spend_one_wallet_twice(stack: Stack, people):
    ann = people["ann"]["access_token"]

    def transfer(i: int) -> tuple[int, dict]:
        body = {"amount": "4", "currency": CURRENCY, "to_email": people["bob_email"]}
        return call(stack, "/v1/transfers", ann, body, f"spend-{i}")

    answers = at_once(12, transfer)
    assert statuses(answers) == {(201, None): 2, (422, "insufficient_funds"): 10}, answers
    assert wallet(stack, ann)["available"] == "2.000000"
    assert wallet(stack, people["bob"]["access_token"])["posted"] == "8.000000"


def test_one_idempotency_key_sent_eight_times_at_once_moves_money_once(stack: Stack, people):
    ann, bob = people["ann"]["access_token"], people["bob"]["access_token"]
    before = Decimal(wallet(stack, bob)["posted"])
    body = {"amount": "0.5", "currency": CURRENCY, "to_email": people["bob_email"]}
    answers = at_once(8, lambda _i: call(stack, "/v1/transfers", ann, body, "one-key"))
    counted = statuses(answers)
    assert set(counted) <= {(201, None), (409, "idempotency_in_progress")}, answers
    assert counted[(201, None)] >= 1
    assert len({b["transaction"]["id"] for s, b in answers if s == 201}) == 1
    assert Decimal(wallet(stack, bob)["posted"]) == before + Decimal("0.5")


def test_one_key_sent_at_once_with_six_bodies_moves_one_of_them_once(stack: Stack, people):
    """The replay record is written with the money: whichever body wins, the key has one answer
    and the others are told the key was used for another request (or to retry)."""
    ann, bob = people["ann"]["access_token"], people["bob"]["access_token"]
    before = Decimal(wallet(stack, bob)["posted"])

    def transfer(i: int) -> tuple[int, dict]:
        body = {"amount": f"0.{i + 1}", "currency": CURRENCY, "to_email": people["bob_email"]}
        return call(stack, "/v1/transfers", ann, body, "many-bodies")

    answers = at_once(6, transfer)
    counted = statuses(answers)
    assert counted[(201, None)] == 1, answers
    assert set(counted) <= {
        (201, None),
        (409, "idempotency_key_reused"),
        (409, "idempotency_in_progress"),
    }, answers
    moved = next(b for s, b in answers if s == 201)["transaction"]["postings"]
    amount = max(Decimal(p["amount"]) for p in moved)
    assert Decimal(wallet(stack, bob)["posted"]) == before + amount


def test_a_refresh_token_presented_six_times_at_once_rotates_once(stack: Stack):
    tokens = sign_up_and_log_in(stack, "rita@example.com")
    url = f"{api(stack)}/v1/auth/refresh"
    answers = at_once(6, lambda _i: post(url, {"refresh_token": tokens["refresh_token"]})[::2])
    counted = statuses(answers)
    assert set(counted) <= {(200, None), (401, "unauthenticated")}, answers
    assert counted[(200, None)] <= 1
    # Whoever lost presented a used token: the whole login is revoked, the winner's pair too.
    for status, body in answers:
        if status == 200:
            again = post(url, {"refresh_token": body["refresh_token"]})
            assert again[0] == 401, again


@pytest.fixture(scope="module")
def admin(stack: Stack) -> dict:
    """The seeded admin's login, once per module's stack (a TOTP code works once per step)."""
    require_running(stack)
    code = pyotp.TOTP(ADMIN_TOTP_SECRET).now()
    credentials = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "totp_code": code}
    status, _, tokens = post(f"{api(stack)}/v1/auth/login", credentials)
    assert status == 200, tokens
    return tokens


def test_six_parallel_rollbacks_of_one_transfer_reverse_it_once(stack: Stack, people, admin):
    body = {"amount": "4", "currency": CURRENCY, "to_email": people["bob_email"]}
    status, answer = call(stack, "/v1/transfers", people["ann"]["access_token"], body, "to-undo")
    assert status == 201, answer
    target = answer["transaction"]["id"]

    def rollback(i: int) -> tuple[int, dict]:
        path = f"/v1/admin/transactions/{target}/rollback"
        return call(stack, path, admin["access_token"], {"reason": "race"}, f"rb-{i}")

    answers = at_once(6, rollback)
    assert statuses(answers) == {(201, None): 1, (409, "already_reversed"): 5}, answers
    account = wallet(stack, people["ann"]["access_token"])
    assert account["posted"] == account["available"]
    status, body = call(stack, f"/v1/admin/transactions/{target}", admin["access_token"])
    assert status == 200, body
    assert body["transaction"]["reversed_by"]


def test_twelve_parallel_transfers_cannot_pass_a_daily_risk_limit_together(
    stack: Stack, people, admin
):
    """A daily_amount_over rule (5 USDT, block) for Ann; twelve transfers of 1 USDT at once in
    different workers: each one's counter update is conditional, so exactly five get through."""
    ann = people["ann"]["access_token"]
    status, me = call(stack, "/v1/me", ann)
    assert status == 200, me
    token = admin["access_token"]
    rule = {
        "id": f"day-{me['user']['id']}",
        "kind": "daily_amount_over",
        "action": "block",
        "currency": CURRENCY,
        "amount": "5",
        "user_id": me["user"]["id"],
    }
    status, current = call(stack, "/v1/admin/risk/rules", token)
    assert status == 200, current
    changed = {"rules": [rule], "version": current["version"]}
    status, body = send_json(stack, "PUT", "/v1/admin/risk/rules", token, changed)
    assert status == 200, body
    try:

        def transfer(i: int) -> tuple[int, dict]:
            body = {"amount": "1", "currency": CURRENCY, "to_email": people["bob_email"]}
            return call(stack, "/v1/transfers", ann, body, f"daily-{i}")

        answers = at_once(12, transfer)
        assert statuses(answers) == {(201, None): 5, (422, "risk_declined"): 7}, answers
        assert wallet(stack, ann)["posted"] == "5.000000"
        assert wallet(stack, people["bob"]["access_token"])["posted"] == "5.000000"
    finally:
        cleared = {"rules": [], "version": body["version"]}
        assert send_json(stack, "PUT", "/v1/admin/risk/rules", token, cleared)[0] == 200


def send_json(stack: Stack, method: str, path: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1)
        f"{api(stack)}{path}", json.dumps(body).encode(), authed(token, None), method=method
    )
    status, _, answer = send(request, TIMEOUT_SECONDS)
    return status, answer


def test_twenty_parallel_wrong_logins_for_one_email_are_checked_at_most_five_times(stack: Stack):
    sign_up_and_log_in(stack, "tess@example.com")
    url = f"{api(stack)}/v1/auth/login"
    wrong = {"email": "tess@example.com", "password": "not the password at all"}
    answers = at_once(20, lambda _i: post(url, wrong)[::2])
    counted = statuses(answers)
    assert set(counted) <= {(401, "invalid_credentials"), (429, "too_many_attempts")}, answers
    checked = counted[(401, "invalid_credentials")]
    assert 1 <= checked <= 5
    while checked < 5:  # a racer refused while the count was contended leaves room for more
        status, _, body = post(url, wrong)
        if status == 429:
            break
        assert (status, body["error"]["code"]) == (401, "invalid_credentials")
        checked += 1
    status, headers, body = post(url, {"email": "tess@example.com", "password": PASSWORD})
    assert (status, body["error"]["code"]) == (429, "too_many_attempts"), body
    assert int(headers["Retry-After"]) > 0


def test_ten_parallel_requests_with_one_facility_key_get_exactly_its_limit(stack: Stack, admin):
    """A key's per-minute limit is one conditional counter in DynamoDB: ten requests at once with
    a key limited to five get five answers and five ``429 rate_limited``, whatever the workers."""
    token = admin["access_token"]
    status, body = call(stack, "/v1/admin/facilities", token, {"name": "Race Clinic"})
    assert status == 201, body
    facility_id = body["facility"]["id"]
    wanted = {"name": "race", "scopes": ["read"], "rate_limit_per_minute": 5}
    status, body = call(stack, f"/v1/admin/facilities/{facility_id}/api-keys", token, wanted)
    assert status == 201, body
    secret = body["secret"]
    # All ten must fall in one minute's window: wait for a fresh one when this one is ending.
    into_minute = time.time() % 60
    if into_minute > 45:
        time.sleep(60 - into_minute + 0.5)

    answers = at_once(10, lambda _i: call(stack, "/v1/facility", secret))

    assert statuses(answers) == {(200, None): 5, (429, "rate_limited"): 5}, answers
    assert all(body["facility"]["id"] == facility_id for status, body in answers if status == 200)


def test_ten_parallel_pays_of_one_payment_request_move_money_once(stack: Stack, people, admin):
    """Ten pays of one request at once, each with its own Idempotency-Key: the payment's id is
    derived from the request and the request turns paid in the money's own write, so one pay
    moves the money and the nine others are told the request is no longer open."""
    token = admin["access_token"]
    status, body = call(stack, "/v1/admin/facilities", token, {"name": "Pay Race Clinic"})
    assert status == 201, body
    facility_id = body["facility"]["id"]
    wanted = {"name": "billing", "scopes": ["payment_requests", "read"]}
    status, body = call(stack, f"/v1/admin/facilities/{facility_id}/api-keys", token, wanted)
    assert status == 201, body
    secret = body["secret"]
    asked = {"amount": "4", "currency": CURRENCY, "payer_email": people["ann_email"]}
    status, body = call(stack, "/v1/facility/payment-requests", secret, asked)
    assert status == 201, body
    request_id = body["payment_request"]["id"]
    ann = people["ann"]["access_token"]

    def pay(i: int) -> tuple[int, dict]:
        return call(stack, f"/v1/payment-requests/{request_id}/pay", ann, {}, f"pay-{i}")

    answers = at_once(10, pay)

    counted = statuses(answers)
    assert counted[(201, None)] == 1, answers
    assert set(counted) <= {(201, None), (409, "invalid_state")}, answers
    paid = next(b for s, b in answers if s == 201)["payment_request"]
    account = wallet(stack, ann)
    assert (account["posted"], account["available"]) == ("6.000000", "6.000000")
    status, body = call(stack, "/v1/transactions?limit=100", ann)
    assert status == 200, body
    assert [t["id"] for t in body["data"] if t["type"] == "payment"] == [paid["transaction_id"]]
    status, body = call(stack, "/v1/facility/transactions", secret)
    assert status == 200, body
    assert [t["id"] for t in body["data"]] == [paid["transaction_id"]]
    status, body = call(stack, f"/v1/facility/payment-requests/{request_id}", secret)
    assert (status, body["payment_request"]["status"]) == (200, "paid"), body


def test_payroll_batches_at_once_never_spend_a_facility_twice(stack: Stack, people, admin):
    """Two payroll batches of 6 against a facility holding 10, at once in different workers: one
    is paid, the other is refused whole; then one batch's key sent four times at once pays its
    recipient once."""
    token = admin["access_token"]
    status, body = call(stack, "/v1/admin/facilities", token, {"name": "Payroll Clinic"})
    assert status == 201, body
    facility_id = body["facility"]["id"]
    wanted = {"name": "payroll", "scopes": ["read", "payouts"]}
    status, body = call(stack, f"/v1/admin/facilities/{facility_id}/api-keys", token, wanted)
    assert status == 201, body
    secret = body["secret"]
    pay_in = {"amount": "10", "currency": CURRENCY, "to_facility_id": facility_id}
    status, body = call(stack, "/v1/transfers", people["ann"]["access_token"], pay_in, "fund")
    assert status == 201, body

    def batch(amount: str) -> dict:
        return {
            "currency": CURRENCY,
            "items": [{"to_email": people["bob_email"], "amount": amount}],
        }

    answers = at_once(2, lambda i: call(stack, "/v1/facility/payouts", secret, batch("6"), f"p{i}"))

    assert statuses(answers) == {(201, None): 1, (422, "insufficient_funds"): 1}, answers
    bob = people["bob"]["access_token"]
    assert wallet(stack, bob)["posted"] == "6.000000"

    answers = at_once(4, lambda _i: call(stack, "/v1/facility/payouts", secret, batch("4"), "one"))

    counted = statuses(answers)
    assert set(counted) <= {(201, None), (409, "idempotency_in_progress")}, answers
    assert counted[(201, None)] >= 1
    assert len({b["payout"]["id"] for s, b in answers if s == 201}) == 1
    assert wallet(stack, bob)["posted"] == "10.000000"
    status, body = call(stack, "/v1/facility", secret)
    assert status == 200, body
    usdt = next(a for a in body["accounts"] if a["currency"] == CURRENCY)
    assert (usdt["posted"], usdt["available"]) == ("0.000000", "0.000000")
    # The finisher (make finish-payrolls) finds nothing left to finish, and pays nobody again.
    done = run_module(stack, "infra.local.finish_payrolls", "--older-than", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no payout batch left processing" in done.stdout, done.stdout
    assert wallet(stack, bob)["posted"] == "10.000000"
