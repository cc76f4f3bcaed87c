"""Rollbacks over HTTP (``POST /v1/admin/transactions/{id}/rollback``) and the admin view of any
transaction: a worked story with balances after each step, the refusals, and ``force``."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.models import AuditItem
from chalicelib.api import dependencies
from chalicelib.domain.accounts import OwnerType, wallet_id
from tests.api.admin_helpers import operators
from tests.api.helpers import balances, call, wallet
from tests.support import LedgerWorld, check_guarantees, lose_the_first_answer


@pytest.fixture
def people(table, api_client):
    found = operators()
    world = LedgerWorld.create(table)
    found["world"] = world
    found["deposit"] = world.fund(wallet(found["alice"].id, "USD"), 100_00)
    return found


def transfer(client, token: str, to_email: str, amount: str, key: str) -> dict:
    body = {"amount": amount, "currency": "USD", "to_email": to_email}
    response, answer = call(client, "POST", "/v1/transfers", token, body, key)
    assert response.status_code == 201, answer
    return answer["transaction"]


def rollback(client, token: str, txn_id: str, key: str, **body):
    body.setdefault("reason", "sent to the wrong person")
    return call(client, "POST", f"/v1/admin/transactions/{txn_id}/rollback", token, body, key)


def audit_events(action: str) -> list[AuditItem]:
    return [i for i in AuditItem.scan(AuditItem.item_type == "audit") if i.action == action]


def test_worked_story_transfer_rollback_replay_and_refusals(api_client, people):
    admin, alice = people["tokens"]["admin"], people["tokens"]["alice"]
    a_usd, b_usd = wallet(people["alice"].id, "USD"), wallet(people["bob"].id, "USD")
    sent = transfer(api_client, alice, "bob@example.com", "30.00", "t1")
    assert (balances(a_usd), balances(b_usd)) == ((70_00, 70_00), (30_00, 30_00))

    response, body = rollback(api_client, admin, sent["id"], "r1")
    assert response.status_code == 201, body
    reversal = body["transaction"]
    assert (reversal["type"], reversal["status"], reversal["reverses"]) == (
        "reversal",
        "posted",
        sent["id"],
    )
    assert sorted((p["account_id"], p["amount"]) for p in reversal["postings"]) == sorted(
        [(a_usd, "30.00"), (b_usd, "-30.00")]
    )
    assert (balances(a_usd), balances(b_usd)) == ((100_00, 100_00), (0, 0))

    # The original, seen by an admin, is linked to its reversal.
    response, body = call(api_client, "GET", f"/v1/admin/transactions/{sent['id']}", admin)
    assert (response.status_code, body["transaction"]["reversed_by"]) == (200, reversal["id"])

    # A retry with the same key answers the same and moves nothing.
    response, again = rollback(api_client, admin, sent["id"], "r1")
    assert (response.status_code, again["transaction"]["id"]) == (201, reversal["id"])
    assert (balances(a_usd), balances(b_usd)) == ((100_00, 100_00), (0, 0))

    # A second rollback (another key), and a rollback of the reversal, are refused.
    response, body = rollback(api_client, admin, sent["id"], "r2")
    assert (response.status_code, body["error"]["code"]) == (409, "already_reversed")
    response, body = rollback(api_client, admin, reversal["id"], "r3")
    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")

    events = audit_events("transaction.rollback")
    assert [(e.actor_id, e.target) for e in events] == [(people["admin"].id, sent["id"])]
    assert events[0].details.as_dict()["reason"] == "sent to the wrong person"
    assert events[0].details.as_dict()["reversal_id"] == reversal["id"]
    check_guarantees(people["world"].table)


def test_rollback_after_the_money_was_spent_needs_force_and_flags_the_account(api_client, people):
    admin, alice, bob = (people["tokens"][n] for n in ("admin", "alice", "bob"))
    b_usd = wallet(people["bob"].id, "USD")
    sent = transfer(api_client, alice, "bob@example.com", "30.00", "t1")
    transfer(api_client, bob, "alice@example.com", "20.00", "t2")  # bob spends 20 of it

    response, body = rollback(api_client, admin, sent["id"], "r1")
    assert (response.status_code, body["error"]["code"]) == (422, "insufficient_funds")
    assert balances(b_usd) == (10_00, 10_00)
    assert audit_events("transaction.rollback") == []  # refused: nothing written, no audit

    response, body = rollback(api_client, admin, sent["id"], "r2", force=True)
    assert response.status_code == 201, body
    assert body["transaction"]["forced"] is True
    assert balances(b_usd) == (-20_00, -20_00)

    response, body = call(api_client, "GET", f"/v1/accounts/{b_usd}", bob)
    assert response.status_code == 200
    assert body["account"]["flags"] == ["forced_negative"]
    assert body["account"]["available"] == "-20.00"
    (event,) = audit_events("transaction.rollback")
    assert event.details.as_dict()["force"] == "true"
    check_guarantees(people["world"].table)


def test_a_second_forced_rollback_works_on_an_account_already_flagged(api_client, people):
    """Issue: the second forced rollback on a ``forced_negative`` account was refused, because
    only a newly flagged account marked the reversal forced (DynamoDB's own check then held)."""
    admin, alice, bob = (people["tokens"][n] for n in ("admin", "alice", "bob"))
    b_usd = wallet(people["bob"].id, "USD")
    first = transfer(api_client, alice, "bob@example.com", "30.00", "t1")
    second = transfer(api_client, alice, "bob@example.com", "10.00", "t2")
    transfer(api_client, bob, "alice@example.com", "40.00", "t3")  # bob spends all of it
    response, body = rollback(api_client, admin, first["id"], "r1", force=True)
    assert response.status_code == 201, body
    assert balances(b_usd) == (-30_00, -30_00)
    response, body = rollback(api_client, admin, second["id"], "r2", force=True)
    assert response.status_code == 201, body
    assert body["transaction"]["forced"] is True
    assert balances(b_usd) == (-40_00, -40_00)
    check_guarantees(people["world"].table)


def test_a_pending_transaction_is_voided_not_rolled_back(api_client, people):
    world = people["world"]
    a_usd, b_usd = wallet(people["alice"].id, "USD"), wallet(people["bob"].id, "USD")
    hold = world.transfer(a_usd, b_usd, 5_00, pending=True).transaction
    response, body = rollback(api_client, people["tokens"]["admin"], hold.id, "r1")
    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")
    assert balances(a_usd) == (100_00, 95_00)


def test_rolling_back_a_card_deposit_does_not_call_stripe(api_client, people, monkeypatch):
    def no_stripe():
        raise AssertionError("a rollback must not reach the payment provider")

    monkeypatch.setattr(dependencies, "get_payment_gateway", no_stripe)
    a_usd = wallet(people["alice"].id, "USD")
    response, body = rollback(
        api_client, people["tokens"]["admin"], people["deposit"], "r1", reason="test deposit"
    )
    assert response.status_code == 201, body
    assert balances(a_usd) == (0, 0)
    check_guarantees(people["world"].table)


@pytest.mark.parametrize(
    ("body", "key", "status", "code"),
    [
        ({}, "k", 400, "invalid_request"),
        ({"reason": ""}, "k", 400, "invalid_request"),
        ({"reason": "   "}, "k", 400, "invalid_request"),
        ({"reason": "x", "force": "yes"}, "k", 400, "invalid_request"),
        ({"reason": "x", "extra": 1}, "k", 400, "invalid_request"),
        ({"reason": "x"}, None, 400, "idempotency_key_required"),
    ],
)
def test_bad_rollback_requests_are_refused_and_move_nothing(
    api_client, people, body, key, status, code
):
    a_usd = wallet(people["alice"].id, "USD")
    path = f"/v1/admin/transactions/{people['deposit']}/rollback"
    response, answer = call(api_client, "POST", path, people["tokens"]["admin"], body, key)
    assert (response.status_code, answer["error"]["code"]) == (status, code)
    assert balances(a_usd) == (100_00, 100_00)


def test_unknown_transactions_are_not_found(api_client, people):
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "GET", "/v1/admin/transactions/txn_nope", admin)
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = rollback(api_client, admin, "txn_nope", "r1")
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")


def test_an_admin_sees_any_transaction(api_client, people):
    response, body = call(
        api_client, "GET", f"/v1/admin/transactions/{people['deposit']}", people["tokens"]["admin"]
    )
    assert response.status_code == 200
    txn = body["transaction"]
    assert (txn["id"], txn["type"], txn["reversed_by"]) == (people["deposit"], "deposit", None)
    alice_usd = wallet_id(OwnerType.USER, people["alice"].id, "USD")
    assert alice_usd in {p["account_id"] for p in txn["postings"]}


def test_a_rollback_whose_answer_was_lost_after_it_committed_gets_its_reversal_back(
    api_client, people, monkeypatch
):
    """Fault injection: the reversal's TransactWriteItems commits, then its answer is lost (a
    reset connection). The client sends the same request again: it must get that reversal,
    not ``409 already_reversed``; another request (another key) still gets 409."""
    admin, alice = people["tokens"]["admin"], people["tokens"]["alice"]
    a_usd, b_usd = wallet(people["alice"].id, "USD"), wallet(people["bob"].id, "USD")
    sent = transfer(api_client, alice, "bob@example.com", "30.00", "t-lost")
    lost = lose_the_first_answer(monkeypatch)
    first, _ = rollback(api_client, admin, sent["id"], "lost-key")
    assert first.status_code == 500  # the write happened; its answer did not come back
    assert lost
    assert (balances(a_usd), balances(b_usd)) == ((100_00, 100_00), (0, 0))

    again, body = rollback(api_client, admin, sent["id"], "lost-key")
    assert again.status_code == 201, body
    assert body["transaction"]["reverses"] == sent["id"]
    assert (balances(a_usd), balances(b_usd)) == ((100_00, 100_00), (0, 0))  # moved once
    other, body = rollback(api_client, admin, sent["id"], "another-key")
    assert (other.status_code, body["error"]["code"]) == (409, "already_reversed")
    check_guarantees(people["world"].table)
