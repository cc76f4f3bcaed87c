"""Suspension over HTTP (``/v1/admin/users/{id}/suspend|unsuspend``) and the admin list of users
(``GET /v1/admin/users``): a suspension stops tokens issued before it, at once."""

from __future__ import annotations

import json

import pytest

from chalicelib.adapters.dynamo.models import AuditItem, WithdrawalItem
from chalicelib.api.dependencies import get_auth_service
from tests.api.admin_helpers import PASSWORD, operators
from tests.api.helpers import balances, call, wallet
from tests.support import LedgerWorld

ADDRESS = "bc1qexampleaddress0000000000"


@pytest.fixture
def people(table, api_client):
    found = operators()
    found["world"] = LedgerWorld.create(table)
    found["world"].fund(wallet(found["alice"].id, "USD"), 50_00)
    return found


def post(client, path: str, body: dict | None = None):
    raw = json.dumps(body or {}).encode()
    response = client.http.post(path, headers={"content-type": "application/json"}, body=raw)
    return response, json.loads(response.body) if response.body else None


def suspend(client, admin: str, user_id: str, reason: str = "chargeback fraud"):
    return call(client, "POST", f"/v1/admin/users/{user_id}/suspend", admin, {"reason": reason})


def test_suspension_stops_an_existing_token_and_refresh_and_login_until_unsuspended(
    api_client, people
):
    admin, alice = people["tokens"]["admin"], people["tokens"]["alice"]
    alice_id = people["alice"].id
    login = get_auth_service().login("alice@example.com", PASSWORD, None, None)
    # A withdrawal waiting for review when the suspension comes.
    people["world"].fund(wallet(alice_id, "BTC"), 100_000_000, currency="BTC")
    body = {"amount": "0.1", "currency": "BTC", "destination": ADDRESS}
    response, pending = call(api_client, "POST", "/v1/withdrawals", alice, body, "w1")
    assert response.status_code == 201, pending

    response, body = suspend(api_client, admin, alice_id)
    assert response.status_code == 200, body
    user = body["user"]
    assert (user["id"], user["status"], user["suspension_reason"]) == (
        alice_id,
        "suspended",
        "chargeback fraud",
    )
    assert user["suspended_by"] == people["admin"].id
    response, listed = call(api_client, "GET", "/v1/admin/users?email=alice", admin)
    assert listed["data"] == [user]  # the answer is what was stored, without a read-back

    # The token alice got before the suspension no longer moves money, nor reads.
    transfer = {"amount": "1.00", "currency": "USD", "to_email": "bob@example.com"}
    response, body = call(api_client, "POST", "/v1/transfers", alice, transfer, "t1")
    assert (response.status_code, body["error"]["code"]) == (403, "account_suspended")
    response, body = call(api_client, "GET", "/v1/accounts", alice)
    assert (response.status_code, body["error"]["code"]) == (403, "account_suspended")
    assert balances(wallet(alice_id, "USD")) == (50_00, 50_00)
    # Nor can she refresh or log in again.
    response, body = post(api_client, "/v1/auth/refresh", {"refresh_token": login.refresh_token})
    assert (response.status_code, body["error"]["code"]) == (403, "account_suspended")
    response, body = post(
        api_client, "/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}
    )
    assert (response.status_code, body["error"]["code"]) == (403, "account_suspended")
    # Her pending withdrawal stays for review.
    stored = WithdrawalItem.get(f"WITHDRAWAL#{pending['withdrawal']['id']}", "WITHDRAWAL")
    assert stored.status == "pending_review"

    # Suspending twice is refused; unsuspending lets her log in again, but the logins of before
    # the suspension stay ended (API.md revision 2).
    response, body = suspend(api_client, admin, alice_id)
    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")
    response, body = call(api_client, "POST", f"/v1/admin/users/{alice_id}/unsuspend", admin)
    assert response.status_code == 200, body
    assert (body["user"]["status"], body["user"]["suspension_reason"]) == ("active", None)
    response, listed = call(api_client, "GET", "/v1/admin/users?email=alice", admin)
    assert listed["data"] == [body["user"]]
    response, body = call(api_client, "POST", "/v1/transfers", alice, transfer, "t2")
    assert (response.status_code, body["error"]["code"]) == (401, "unauthenticated")
    response, body = post(api_client, "/v1/auth/refresh", {"refresh_token": login.refresh_token})
    assert (response.status_code, body["error"]["code"]) == (401, "unauthenticated")
    response, body = post(
        api_client, "/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, body
    response, body = call(api_client, "POST", "/v1/transfers", body["access_token"], transfer, "t2")
    assert response.status_code == 201, body
    response, body = call(api_client, "POST", f"/v1/admin/users/{alice_id}/unsuspend", admin)
    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")

    actions = [
        (i.action, i.actor_id, i.target)
        for i in AuditItem.scan(AuditItem.item_type == "audit")
        if i.action.startswith("user.") and i.action != "user.signed_up"
    ]
    admin_id = people["admin"].id
    assert sorted(actions) == [
        ("user.suspended", admin_id, alice_id),
        ("user.unsuspended", admin_id, alice_id),
    ]


def test_suspension_needs_a_reason_and_a_user_and_not_oneself(api_client, people):
    admin = people["tokens"]["admin"]
    response, body = call(
        api_client, "POST", f"/v1/admin/users/{people['bob'].id}/suspend", admin, {}
    )
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    response, body = suspend(api_client, admin, people["bob"].id, reason="  ")
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    response, body = suspend(api_client, admin, "usr_nobody")
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = call(api_client, "POST", "/v1/admin/users/usr_nobody/unsuspend", admin)
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = suspend(api_client, admin, people["admin"].id)  # as for one's own role
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")
    assert "own account" in body["error"]["message"]
    assert get_auth_service().repository.get_user(people["bob"].id).status.value == "active"


def test_the_user_list_filters_by_email_prefix_and_pages(api_client, people):
    admin = people["tokens"]["admin"]
    auth = get_auth_service()
    for n in range(5):
        auth.sign_up(f"Patient{n}@Clinic.example", PASSWORD, True, None)
    suspend(api_client, admin, people["bob"].id)

    response, body = call(api_client, "GET", "/v1/admin/users", admin)
    assert response.status_code == 200
    emails = [u["email"] for u in body["data"]]
    assert emails == sorted(emails, key=str.lower)
    assert len(emails) == 9
    assert body["next_cursor"] is None
    statuses = {u["email"]: u["status"] for u in body["data"]}
    assert (statuses["bob@example.com"], statuses["alice@example.com"]) == ("suspended", "active")

    seen, cursor = [], None
    while True:
        query = "/v1/admin/users?email=PATIENT&limit=2" + (f"&cursor={cursor}" if cursor else "")
        response, body = call(api_client, "GET", query, admin)
        assert response.status_code == 200, body
        assert len(body["data"]) <= 2
        seen += [u["email"] for u in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Patient{n}@Clinic.example" for n in range(5)]

    response, body = call(api_client, "GET", "/v1/admin/users?email=bob@example.com", admin)
    assert [u["id"] for u in body["data"]] == [people["bob"].id]
    response, body = call(api_client, "GET", "/v1/admin/users?email=zz", admin)
    assert (body["data"], body["next_cursor"]) == ([], None)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "cursor=bm9wZQ", "email=a&email=b"])
def test_bad_user_list_queries_are_invalid_requests(api_client, people, query):
    response, body = call(api_client, "GET", f"/v1/admin/users?{query}", people["tokens"]["admin"])
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")


def test_a_cursor_of_another_filter_is_refused(api_client, people):
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "GET", "/v1/admin/users?limit=1", admin)
    cursor = body["next_cursor"]
    assert cursor
    response, body = call(api_client, "GET", f"/v1/admin/users?email=zz&cursor={cursor}", admin)
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")


def test_the_users_index_holds_email_claims_never_profiles_or_their_secrets(people):
    """GSI2 projects every attribute: the profile (password hash, TOTP secret, rewritten on every
    TOTP login) must not be in it; the email claim, written once, carries the index keys."""
    from tests.support import scan

    indexed = [i for i in scan(people["world"].table) if i.get("GSI2PK") == "USERS"]
    assert indexed
    assert {i["item_type"] for i in indexed} == {"email_claim"}
    assert not any("password_hash" in i or "totp_secret" in i for i in indexed)


def test_an_admin_changes_anothers_role_audited_but_not_their_own(api_client, people):
    admin = people["tokens"]["admin"]
    bob_id = people["bob"].id
    path = f"/v1/admin/users/{bob_id}/role"
    response, body = call(api_client, "POST", path, admin, {"role": "owner"})
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    response, body = call(api_client, "POST", path, admin, {"role": "admin"})
    assert response.status_code == 200, body
    assert (body["user"]["id"], body["user"]["role"]) == (bob_id, "admin")
    response, body = call(api_client, "POST", path, admin, {"role": "admin"})  # no change
    assert (response.status_code, body["user"]["role"]) == (200, "admin")
    own = f"/v1/admin/users/{people['admin'].id}/role"
    response, body = call(api_client, "POST", own, admin, {"role": "user"})
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")
    response, body = call(
        api_client, "POST", "/v1/admin/users/usr_nobody/role", admin, {"role": "user"}
    )
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = call(api_client, "POST", path, admin, {"role": "user"})
    assert (response.status_code, body["user"]["role"]) == (200, "user")
    changes = [
        (i.actor_id, i.target, i.details.as_dict())
        for i in AuditItem.scan(AuditItem.item_type == "audit")
        if i.action == "user.role_changed"
    ]
    admin_id = people["admin"].id
    assert sorted(changes, key=lambda c: c[2]["new"]) == [
        (admin_id, bob_id, {"old": "user", "new": "admin"}),
        (admin_id, bob_id, {"old": "admin", "new": "user"}),
    ]
    user_token = people["tokens"]["alice"]
    response, body = call(api_client, "POST", path, user_token, {"role": "admin"})
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")
