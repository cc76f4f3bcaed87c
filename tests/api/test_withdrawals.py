"""Withdrawals over HTTP: the hold, cancel, admin approve / reject, limits, and the story
fund -> request -> cancel -> request -> approve, with balances after each step."""

from __future__ import annotations

import json
import threading

import pyotp
import pytest

from chalicelib.adapters.dynamo.models import PayoutItem
from chalicelib.api.dependencies import (
    get_auth_service,
    get_bound_settings,
    get_ledger_service,
    get_risk,
    get_withdrawal_repository,
)
from chalicelib.auth import passwords
from chalicelib.domain.accounts import PlatformAccount, PlatformKind
from chalicelib.domain.errors import WithdrawalLimitExceeded
from chalicelib.services import withdrawals as service
from tests.api.helpers import balances, call, wallet
from tests.support import LedgerWorld, lose_the_first_answer, scan, verified

PASSWORD = "correct horse battery"
ADDRESS = "bc1qexampleaddress0000000000"


@pytest.fixture
def people(table, api_client, monkeypatch):
    monkeypatch.setenv("WITHDRAWAL_DAILY_LIMITS", json.dumps({"BTC": "0.5"}))
    from chalicelib.api import dependencies
    from chalicelib.config import get_settings

    get_settings.cache_clear()
    dependencies.reset()
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    bob = verified(auth.sign_up("bob@example.com", PASSWORD, True, None))
    _, secret = auth.create_admin("admin@example.com", PASSWORD)
    world = LedgerWorld.create(table)
    btc = wallet(alice.id, "BTC")
    world.fund(btc, 100_000_000, currency="BTC")  # 1 BTC
    tokens = {
        "alice": auth.login("alice@example.com", PASSWORD, None, None).access_token,
        "bob": auth.login("bob@example.com", PASSWORD, None, None).access_token,
        "admin": auth.login(
            "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
        ).access_token,
    }
    return {"alice": alice, "bob": bob, "btc": btc, "tokens": tokens, "world": world}


def ask(client, token: str, amount: str = "0.25", key: str = "w1", **extra):
    body = {"amount": amount, "currency": "BTC", "destination": ADDRESS, **extra}
    return call(client, "POST", "/v1/withdrawals", token, body, key)


def test_worked_story_request_cancel_request_approve(api_client, people):
    alice = people["tokens"]["alice"]
    response, body = ask(api_client, alice, key="first")
    assert response.status_code == 201, body
    w = body["withdrawal"]
    assert (w["status"], w["amount"], w["currency"]) == ("pending_review", "0.25000000", "BTC")
    assert balances(people["btc"]) == (100_000_000, 75_000_000)  # held: posted unchanged

    response, body = call(api_client, "GET", f"/v1/withdrawals/{w['id']}", alice)
    assert (response.status_code, body["withdrawal"]["id"]) == (200, w["id"])

    response, body = call(api_client, "POST", f"/v1/withdrawals/{w['id']}/cancel", alice)
    assert (response.status_code, body["withdrawal"]["status"]) == (200, "cancelled")
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    response, body = call(api_client, "POST", f"/v1/withdrawals/{w['id']}/cancel", alice)
    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")

    response, body = ask(api_client, alice, "0.40", key="second")
    second = body["withdrawal"]
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "GET", "/v1/admin/withdrawals?status=pending_review", admin)
    assert [x["id"] for x in body["data"]] == [second["id"]]

    response, body = call(
        api_client, "POST", f"/v1/admin/withdrawals/{second['id']}/approve", admin
    )
    assert (response.status_code, body["withdrawal"]["status"]) == (200, "processing")
    assert balances(people["btc"]) == (100_000_000, 60_000_000)  # still held until paid out
    payouts = list(PayoutItem.scan(PayoutItem.item_type == PayoutItem.ITEM_TYPE))
    assert [(p.withdrawal_id, int(p.amount), p.status) for p in payouts] == [
        (second["id"], 40_000_000, "sent")  # handed to the (local) crypto gateway
    ]
    for action in ("approve", "reject"):
        response, body = call(
            api_client,
            "POST",
            f"/v1/admin/withdrawals/{second['id']}/{action}",
            admin,
            {"reason": "late"} if action == "reject" else None,
        )
        assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")
    audit = [i["action"] for i in scan(people["world"].table) if i["item_type"] == "audit"]
    assert "withdrawal.approved" in audit
    people["world"].check_guarantees()


def test_an_admin_rejection_releases_the_hold(api_client, people):
    _, body = ask(api_client, people["tokens"]["alice"])
    w = body["withdrawal"]
    response, body = call(
        api_client,
        "POST",
        f"/v1/admin/withdrawals/{w['id']}/reject",
        people["tokens"]["admin"],
        {"reason": "destination on a deny list"},
    )
    assert (response.status_code, body["withdrawal"]["status"]) == (200, "rejected")
    assert body["withdrawal"]["reason"] == "destination on a deny list"
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    people["world"].check_guarantees()


# -- a decision whose answer was lost after it committed -----------------------------------------
@pytest.mark.parametrize(
    ("actor", "action", "body", "status"),
    [
        ("alice", "cancel", None, "cancelled"),
        ("admin", "reject", {"reason": "destination on a deny list"}, "rejected"),
        ("admin", "approve", None, "processing"),
    ],
)
def test_a_decision_whose_answer_was_lost_is_recognised_by_its_retry(
    api_client, people, monkeypatch, actor, action, body, status
):
    """Fault injection: the decision's write commits, then its answer is lost (a reset
    connection). The same request again (same Idempotency-Key) gets the decided withdrawal, not
    ``409 invalid_state``; the hold moved once; another request (no key, or another key) still
    gets 409, as the contract says."""
    _, created = ask(api_client, people["tokens"]["alice"])
    w = created["withdrawal"]
    path = f"/v1/admin/withdrawals/{w['id']}/{action}"
    if action == "cancel":
        path = f"/v1/withdrawals/{w['id']}/cancel"
    token = people["tokens"][actor]
    lost = lose_the_first_answer(monkeypatch)

    first, _ = call(api_client, "POST", path, token, body, key="decide-1")
    assert first.status_code == 500  # the write happened; its answer did not come back
    assert lost
    held = (100_000_000, 75_000_000) if action == "approve" else (100_000_000, 100_000_000)
    assert balances(people["btc"]) == held

    again, answer = call(api_client, "POST", path, token, body, key="decide-1")
    assert (again.status_code, answer["withdrawal"]["status"]) == (200, status), answer
    assert balances(people["btc"]) == held  # released (or kept) once
    if action == "approve":  # the retry also hands the payout over
        payouts = list(PayoutItem.scan(PayoutItem.item_type == PayoutItem.ITEM_TYPE))
        assert [(p.withdrawal_id, p.status) for p in payouts] == [(w["id"], "sent")]
    for key in (None, "decide-2"):
        other, answer = call(api_client, "POST", path, token, body, key=key)
        assert (other.status_code, answer["error"]["code"]) == (409, "invalid_state")
    people["world"].check_guarantees()


@pytest.mark.parametrize(
    ("amount", "extra", "status", "code"),
    [
        ("2", {}, 422, "withdrawal_limit_exceeded"),  # over the daily limit, checked first
        ("0.00001", {}, 422, "amount_below_minimum"),
        ("0.6", {}, 422, "withdrawal_limit_exceeded"),
        ("0.1", {"destination": "x"}, 400, "invalid_request"),
        (0.1, {}, 400, "invalid_amount"),
        ("0.1", {"currency": "DOGE"}, 400, "unsupported_currency"),
    ],
)
def test_refused_requests_hold_nothing(api_client, people, amount, extra, status, code):
    response, body = ask(api_client, people["tokens"]["alice"], amount, **extra)
    assert (response.status_code, body["error"]["code"]) == (status, code)
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    assert not [i for i in scan(people["world"].table) if i["item_type"] == "withdrawal"]


def test_a_withdrawal_above_the_available_balance_is_refused(api_client, people):
    people["world"].transfer(people["btc"], wallet(people["bob"].id, "BTC"), 90_000_000, "BTC")
    response, body = ask(api_client, people["tokens"]["alice"], "0.2")
    assert (response.status_code, body["error"]["code"]) == (422, "insufficient_funds")
    assert balances(people["btc"]) == (10_000_000, 10_000_000)
    limit_items = [i for i in scan(people["world"].table) if i["item_type"] == "withdrawal_limit"]
    assert all(int(i["total"]) == 0 for i in limit_items)


def test_the_daily_limit_counts_requests_and_gives_back_cancellations(api_client, people):
    alice = people["tokens"]["alice"]
    _, first = ask(api_client, alice, "0.3", key="a")
    response, body = ask(api_client, alice, "0.3", key="b")
    assert (response.status_code, body["error"]["code"]) == (422, "withdrawal_limit_exceeded")
    call(api_client, "POST", f"/v1/withdrawals/{first['withdrawal']['id']}/cancel", alice)
    response, _ = ask(api_client, alice, "0.3", key="c")
    assert response.status_code == 201


def test_racing_requests_cannot_pass_the_daily_limit(people):
    """Five requests of 0.2 BTC race against a 0.5 BTC daily limit (service level: the Chalice
    app holds current_request globally); exactly two get through."""
    ledger, settings = get_ledger_service(), get_bound_settings()
    start = threading.Barrier(5)
    outcomes: list[str] = []

    def go(n: int) -> None:
        start.wait()
        try:
            service.request(
                ledger,
                get_withdrawal_repository(),
                settings,
                get_risk(),
                user=people["alice"],
                amount="0.2",
                currency_code="BTC",
                destination=ADDRESS,
                idempotency_key=f"r{n}",
            )
            outcomes.append("ok")
        except WithdrawalLimitExceeded:
            outcomes.append("limit")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["limit"] * 3 + ["ok"] * 2
    assert balances(people["btc"]) == (100_000_000, 60_000_000)
    people["world"].check_guarantees()


def test_a_replayed_request_holds_once(api_client, people):
    alice = people["tokens"]["alice"]
    first, first_body = ask(api_client, alice, key="same")
    again, again_body = ask(api_client, alice, key="same")
    assert (again.status_code, again_body) == (first.status_code, first_body)
    assert balances(people["btc"]) == (100_000_000, 75_000_000)


def test_other_users_withdrawals_answer_not_found(api_client, people):
    _, body = ask(api_client, people["tokens"]["alice"])
    w = body["withdrawal"]
    bob = people["tokens"]["bob"]
    for method, suffix in (("GET", ""), ("POST", "/cancel")):
        response, answer = call(api_client, method, f"/v1/withdrawals/{w['id']}{suffix}", bob)
        assert (response.status_code, answer["error"]["code"]) == (404, "not_found")
    response, answer = call(api_client, "GET", "/v1/admin/withdrawals", bob)
    assert (response.status_code, answer["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=5&limit=6", "limit"),
        ("status=pending_review&status=processing", "status"),
    ],
)
def test_the_review_queue_refuses_bad_query_parameters(api_client, people, query, field):
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "GET", f"/v1/admin/withdrawals?{query}", admin)
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    assert field in {d["field"] for d in body["error"]["details"]}


def test_the_custody_account_receives_the_amount_only_when_paid_out(api_client, people):
    ask(api_client, people["tokens"]["alice"])
    custody = PlatformAccount(PlatformKind.CRYPTO_CUSTODY, "BTC")
    assert get_ledger_service().platform_balance(custody) == 0


def test_a_hold_is_released_whatever_became_of_the_days_limit_counter(api_client, people, table):
    """Issue: the give-back once required the day's counter, which exists only for currencies
    with a daily limit and expires after 3 days; such withdrawals could never be cancelled,
    rejected or failed (409 every time, the money locked)."""
    from chalicelib.adapters.dynamo.models import WithdrawalItem, WithdrawalLimitItem

    people["world"].fund(wallet(people["alice"].id, "ETH"), 10**18, currency="ETH")
    # ETH has no daily limit here: no counter is ever written for it.
    body = {"amount": "0.5", "currency": "ETH", "destination": ADDRESS}
    response, eth = call(
        api_client, "POST", "/v1/withdrawals", people["tokens"]["alice"], body, "e1"
    )
    assert response.status_code == 201, eth
    cancel = f"/v1/withdrawals/{eth['withdrawal']['id']}/cancel"
    response, body = call(api_client, "POST", cancel, people["tokens"]["alice"])
    assert (response.status_code, body["withdrawal"]["status"]) == (200, "cancelled"), body

    # A BTC withdrawal left in review past its counter's TTL (the counter is gone).
    response, btc = ask(api_client, people["tokens"]["alice"], key="old")
    assert response.status_code == 201, btc
    w = btc["withdrawal"]
    counters = WithdrawalLimitItem.scan(
        WithdrawalLimitItem.item_type == WithdrawalLimitItem.ITEM_TYPE
    )
    for counter in counters:
        counter.delete()  # as if its 3-day TTL had passed
    stored = WithdrawalItem.get(f"WITHDRAWAL#{w['id']}", "WITHDRAWAL")
    stored.update(actions=[WithdrawalItem.created_at.set("2026-01-01T00:00:00.000000Z")])
    response, body = call(
        api_client,
        "POST",
        f"/v1/admin/withdrawals/{w['id']}/reject",
        people["tokens"]["admin"],
        {"reason": "stale"},
    )
    assert (response.status_code, body["withdrawal"]["status"]) == (200, "rejected"), body
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    people["world"].check_guarantees()


def test_a_conflict_is_not_the_keys_answer_the_retry_runs_again(api_client, people, monkeypatch):
    """``409 conflict`` says "safe to retry" (API.md): it was stored as the Idempotency-Key's
    answer and replayed for 24 hours, so the retry never retried."""
    from chalicelib.domain.errors import VersionConflict
    from chalicelib.services.ledger import LedgerService

    with monkeypatch.context() as patched:

        def contended(self, **kwargs):
            raise VersionConflict("the accounts kept changing")

        patched.setattr(LedgerService, "record", contended)
        response, body = ask(api_client, people["tokens"]["alice"], key="busy")
    assert (response.status_code, body["error"]["code"]) == (409, "conflict")
    response, body = ask(api_client, people["tokens"]["alice"], key="busy")
    assert response.status_code == 201, body
    assert balances(people["btc"]) == (100_000_000, 75_000_000)


def test_a_withdrawal_left_in_review_expires_and_releases_its_hold_once(api_client, people):
    from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
    from chalicelib.api import jobs

    alice, admin = people["tokens"]["alice"], people["tokens"]["admin"]
    _, body = ask(api_client, alice, amount="0.25", key="old")
    old = body["withdrawal"]
    _, body = ask(api_client, alice, amount="0.1", key="decided")
    decided = body["withdrawal"]
    call(api_client, "POST", f"/v1/admin/withdrawals/{decided['id']}/approve", admin, {})
    assert balances(people["btc"]) == (100_000_000, 65_000_000)

    ledger = get_ledger_service()
    assert jobs.expire_withdrawals.func({}) == {"expired": []}  # not 7 days old yet
    eight_days_on = to_iso(parse_iso(now_iso()) + service.timedelta(days=8))
    stored = get_withdrawal_repository()
    assert service.expire_stale(ledger, stored, 7, now=eight_days_on) == [old["id"]]
    assert service.expire_stale(ledger, stored, 7, now=eight_days_on) == []  # once
    response, body = call(api_client, "GET", f"/v1/withdrawals/{old['id']}", alice)
    assert (body["withdrawal"]["status"], body["withdrawal"]["reason"]) == (
        "expired",
        "not reviewed within 7 days",
    )
    # The expired hold is released; the approved one (processing) is untouched.
    assert balances(people["btc"]) == (100_000_000, 90_000_000)
    response, body = call(api_client, "POST", f"/v1/withdrawals/{old['id']}/cancel", alice, {})
    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")
    response, body = call(api_client, "GET", "/v1/admin/withdrawals?status=expired", admin)
    assert [w["id"] for w in body["data"]] == [old["id"]]
    assert [e for e in scan(people["world"].table) if e.get("action") == "withdrawal.expired"]
    people["world"].check_guarantees()
