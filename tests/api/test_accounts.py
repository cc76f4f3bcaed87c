"""Accounts and history over HTTP (API.md, "Accounts and history"): the caller's wallets and
balances, entries newest first with stable pagination and time filters, the caller's
transactions, and other users' ids answering exactly like missing ones.

Money moves through the engine (``tests.support.LedgerWorld``) on a clock that ticks one second
per transaction, so times and orders are known; users sign up and log in through the API.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from chalicelib.adapters.clock import to_iso
from chalicelib.auth import passwords
from tests.support import LedgerWorld

PASSWORD = "correct horse battery"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_hashes(table: str) -> None:
    passwords.configure_for_tests()


@pytest.fixture
def world(table: str) -> LedgerWorld:
    """The engine, on a clock that starts at START and ticks one second per reading."""
    world = LedgerWorld.create(table)
    ticks = iter(range(1_000_000))
    world.ledger.clock = lambda: to_iso(START + timedelta(seconds=next(ticks)))
    return world


# -- helpers ---------------------------------------------------------------------------------
def at(seconds: int) -> str:
    """The instant ``seconds`` after START, as a client would write it."""
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def get(client, path: str, token: str | None = None, **query: object):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if query:
        path = f"{path}?{urlencode(query, doseq=True)}"
    response = client.http.get(path, headers=headers)
    return response, json.loads(response.body)


def ok(client, path: str, token: str, **query: object) -> dict:
    response, body = get(client, path, token, **query)
    assert response.status_code == 200, body
    return body


def error_of(response, body) -> tuple[int, str]:
    return response.status_code, body["error"]["code"]


def user_token(client, email: str) -> str:
    """Sign up and log in through the API; the access token."""
    credentials = {"email": email, "password": PASSWORD}
    response = client.http.post(
        "/v1/auth/signup",
        body=json.dumps({**credentials, "accept_terms": True}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201, response.body
    response = client.http.post(
        "/v1/auth/login", body=json.dumps(credentials), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.body
    return json.loads(response.body)["access_token"]


def wallets(client, token: str) -> dict[str, str]:
    """currency -> account id of the caller."""
    return {a["currency"]: a["id"] for a in ok(client, "/v1/accounts", token)["data"]}


def all_entries(client, token: str, account_id: str, **query: object) -> list[dict]:
    """Every page of an account's entries, following next_cursor."""
    found: list[dict] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = ok(client, f"/v1/accounts/{account_id}/entries", token, **query, **extra)
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def without_request_id(body: dict, *ids: str) -> dict:
    """An error body with its request id dropped and the ids asked about blanked out."""
    error = {k: v for k, v in body["error"].items() if k != "request_id"}
    for value in ids:
        error["message"] = error["message"].replace(value, "<id>")
    return error


@pytest.fixture
def alice(api_client) -> str:
    return user_token(api_client, "alice@example.com")


@pytest.fixture
def bob(api_client) -> str:
    return user_token(api_client, "bob@example.com")


# -- accounts --------------------------------------------------------------------------------
def test_a_new_user_has_one_empty_wallet_per_currency_sorted_by_currency(api_client, alice):
    body = ok(api_client, "/v1/accounts", alice)
    assert body["next_cursor"] is None
    assert [a["currency"] for a in body["data"]] == ["BTC", "ETH", "USD", "USDT"]
    by_currency = {a["currency"]: a for a in body["data"]}
    zero = {"USD": "0.00", "BTC": "0.00000000", "ETH": "0." + "0" * 18, "USDT": "0.000000"}
    for code, account in by_currency.items():
        balances = ("posted", "available", "pending_outgoing", "pending_incoming")
        assert [account[k] for k in balances] == [zero[code]] * 4, code
        assert account["id"]
    usd = by_currency["USD"]
    assert ok(api_client, f"/v1/accounts/{usd['id']}", alice) == {"account": usd}


def test_balances_and_entries_after_a_deposit_a_transfer_and_a_hold(api_client, world, alice, bob):
    mine, theirs = wallets(api_client, alice), wallets(api_client, bob)
    deposit = world.fund(mine["USD"], 100_00)
    transfer = world.transfer(mine["USD"], theirs["USD"], 25_50).transaction.id
    world.transfer(mine["USD"], theirs["USD"], 10_00, pending=True)  # a hold: no entry yet
    world.fund(mine["ETH"], 1, "ETH")

    account = ok(api_client, f"/v1/accounts/{mine['USD']}", alice)["account"]
    assert (account["posted"], account["available"]) == ("74.50", "64.50")
    assert (account["pending_outgoing"], account["pending_incoming"]) == ("10.00", "0.00")
    eth = ok(api_client, f"/v1/accounts/{mine['ETH']}", alice)["account"]
    assert eth["posted"] == "0.000000000000000001"

    entries = ok(api_client, f"/v1/accounts/{mine['USD']}/entries", alice)
    assert entries["next_cursor"] is None
    assert [
        (e["transaction_id"], e["type"], e["amount"], e["balance_after"]) for e in entries["data"]
    ] == [
        (transfer, "transfer", "-25.50", "74.50"),
        (deposit, "deposit", "100.00", "100.00"),
    ]
    assert [e["created_at"] for e in entries["data"]] == [
        to_iso(START + timedelta(seconds=1)),
        to_iso(START),
    ]
    received = ok(api_client, f"/v1/accounts/{theirs['USD']}/entries", bob)["data"]
    assert [(e["amount"], e["balance_after"]) for e in received] == [("25.50", "25.50")]
    bob_usd = ok(api_client, f"/v1/accounts/{theirs['USD']}", bob)["account"]
    assert (bob_usd["posted"], bob_usd["pending_incoming"]) == ("25.50", "10.00")
    world.check_guarantees()


# -- pagination and filters ------------------------------------------------------------------
def test_pages_have_no_duplicates_or_gaps_while_new_entries_arrive(api_client, world, alice):
    usd = wallets(api_client, alice)["USD"]
    for _ in range(7):
        world.fund(usd, 1_00)

    seen: list[int] = []
    page = ok(api_client, f"/v1/accounts/{usd}/entries", alice, limit=3)
    while True:
        seen += [e["seq"] for e in page["data"]]
        world.fund(usd, 5_00)  # lands on top of the history, never inside a later page
        if page["next_cursor"] is None:
            break
        page = ok(
            api_client, f"/v1/accounts/{usd}/entries", alice, limit=3, cursor=page["next_cursor"]
        )
    assert seen == [7, 6, 5, 4, 3, 2, 1]

    everything = all_entries(api_client, alice, usd, limit=100)
    assert [e["seq"] for e in everything] == list(range(len(everything), 0, -1))
    assert (
        everything[0]["balance_after"]
        == ok(api_client, f"/v1/accounts/{usd}", alice)["account"]["posted"]
    )


def test_from_and_to_select_entries_and_transactions_inclusively(api_client, world, alice):
    usd = wallets(api_client, alice)["USD"]
    for _ in range(4):  # at START + 0, 1, 2, 3 seconds
        world.fund(usd, 1_00)

    def seqs(**query: object) -> list[int]:
        return [e["seq"] for e in all_entries(api_client, alice, usd, **query)]

    assert seqs(**{"from": at(1)}) == [4, 3, 2]
    assert seqs(to=at(2)) == [3, 2, 1]
    assert seqs(**{"from": at(1), "to": at(2)}) == [3, 2]
    assert seqs(**{"from": at(1), "to": at(1)}) == [2]
    # The same instant with an offset, and a to that falls between two entries.
    assert seqs(**{"from": "2026-11-23T11:00:02+01:00", "to": at(3)[:-1] + ".5Z"}) == [4, 3]
    assert seqs(**{"from": at(10)}) == []

    txns = ok(api_client, "/v1/transactions", alice, **{"from": at(1), "to": at(2)})["data"]
    assert [t["created_at"] for t in txns] == [to_iso(START + timedelta(seconds=s)) for s in (2, 1)]


def test_the_transactions_list_pages_newest_first(api_client, world, alice):
    usd = wallets(api_client, alice)["USD"]
    funded = [world.fund(usd, 1_00) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = ok(api_client, "/v1/transactions", alice, limit=2, **extra)
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == funded[::-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": " 5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": ["5", "6"]}, "limit"),
        ({"cursor": "not-a-cursor"}, None),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "x" * 600}, "cursor"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-23T10:00:00"}, "from"),  # no offset: ambiguous
        ({"to": "2026-11-23"}, "to"),
        ({"from": "0999-01-01T00:00:00Z"}, "from"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "from"),
        ({"from": "2026-11-24T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "from"),
    ],
)
@pytest.mark.parametrize("route", ["entries", "transactions"])
def test_a_bad_limit_cursor_or_time_is_invalid_request(api_client, alice, query, field, route):
    path = "/v1/transactions"
    if route == "entries":
        path = f"/v1/accounts/{wallets(api_client, alice)['USD']}/entries"
    response, body = get(api_client, path, alice, **query)
    assert error_of(response, body) == (400, "invalid_request"), body
    if field is not None:
        assert [d["field"] for d in body["error"]["details"]] == [field]


def test_a_cursor_only_works_on_the_list_that_returned_it(api_client, world, alice):
    mine = wallets(api_client, alice)
    for _ in range(3):
        world.fund(mine["USD"], 1_00)
    usd_cursor = ok(api_client, f"/v1/accounts/{mine['USD']}/entries", alice, limit=1)[
        "next_cursor"
    ]
    txn_cursor = ok(api_client, "/v1/transactions", alice, limit=1)["next_cursor"]
    assert usd_cursor is not None
    assert txn_cursor is not None

    for path, cursor in [
        (f"/v1/accounts/{mine['BTC']}/entries", usd_cursor),
        (f"/v1/accounts/{mine['USD']}/entries", txn_cursor),
        ("/v1/transactions", usd_cursor),
    ]:
        response, body = get(api_client, path, alice, cursor=cursor)
        assert error_of(response, body) == (400, "invalid_request"), path


def test_a_forged_cursor_is_invalid_request(api_client, world, alice):
    usd = wallets(api_client, alice)["USD"]
    world.fund(usd, 1_00)
    world.fund(usd, 1_00)
    cursor = ok(api_client, f"/v1/accounts/{usd}/entries", alice, limit=1)["next_cursor"]
    key = json.loads(base64.urlsafe_b64decode(cursor))
    key["SK"] = {"N": "1"}
    forged = base64.urlsafe_b64encode(json.dumps(key).encode()).decode()
    response, body = get(api_client, f"/v1/accounts/{usd}/entries", alice, cursor=forged)
    assert error_of(response, body) == (400, "invalid_request")


# -- other users' ids -----------------------------------------------------------------------
def test_another_users_account_and_entries_answer_like_missing_ones(api_client, world, alice, bob):
    theirs = wallets(api_client, bob)["USD"]
    world.fund(theirs, 5_00)
    missing = "acct_doesnotexist00"
    for suffix in ("", "/entries"):
        response, body = get(api_client, f"/v1/accounts/{theirs}{suffix}", alice)
        missing_response, missing_body = get(api_client, f"/v1/accounts/{missing}{suffix}", alice)
        assert error_of(response, body) == (404, "not_found")
        assert missing_response.status_code == 404
        assert without_request_id(body, theirs) == without_request_id(missing_body, missing)
    # A platform account is nobody's to read either.
    deposit = ok(api_client, "/v1/transactions", bob)["data"][0]
    platform = next(p["account_id"] for p in deposit["postings"] if p["account_id"] != theirs)
    response, body = get(api_client, f"/v1/accounts/{platform}", bob)
    assert error_of(response, body) == (404, "not_found")


def test_a_transaction_without_the_caller_answers_like_a_missing_one(api_client, world, alice, bob):
    theirs = wallets(api_client, bob)["USD"]
    deposit = world.fund(theirs, 5_00)
    assert ok(api_client, f"/v1/transactions/{deposit}", bob)["transaction"]["id"] == deposit

    response, body = get(api_client, f"/v1/transactions/{deposit}", alice)
    missing = "txn_doesnotexist00"
    missing_response, missing_body = get(api_client, f"/v1/transactions/{missing}", alice)
    assert (
        error_of(response, body) == error_of(missing_response, missing_body) == (404, "not_found")
    )
    assert without_request_id(body, deposit) == without_request_id(missing_body, missing)
    assert ok(api_client, "/v1/transactions", alice)["data"] == []


def test_an_overlong_id_is_simply_not_found(api_client, alice):
    for path in ("/v1/accounts/", "/v1/transactions/"):
        response, body = get(api_client, path + "x" * 3000, alice)
        assert error_of(response, body) == (404, "not_found")


# -- transactions ---------------------------------------------------------------------------
def test_a_transfer_shows_on_both_sides_and_a_hold_shows_its_current_status(
    api_client, world, alice, bob
):
    mine, theirs = wallets(api_client, alice), wallets(api_client, bob)
    world.fund(mine["USD"], 50_00)
    transfer = world.transfer(mine["USD"], theirs["USD"], 12_34).transaction.id
    hold = world.transfer(mine["USD"], theirs["USD"], 5_00, pending=True).transaction.id

    for token in (alice, bob):
        listed = ok(api_client, "/v1/transactions", token)["data"]
        assert [t["id"] for t in listed][:2] == [hold, transfer]
        assert listed[0]["status"] == "pending"
        sent = ok(api_client, f"/v1/transactions/{transfer}", token)["transaction"]
        assert sent == listed[1]
        assert (sent["type"], sent["status"]) == ("transfer", "posted")
        assert sorted((p["account_id"], p["amount"]) for p in sent["postings"]) == sorted(
            [(mine["USD"], "-12.34"), (theirs["USD"], "12.34")]
        )
    assert len(ok(api_client, "/v1/transactions", bob)["data"]) == 2  # not alice's deposit

    world.ledger.post_pending(hold)
    assert ok(api_client, "/v1/transactions", alice)["data"][0]["status"] == "posted"
    assert ok(api_client, f"/v1/transactions/{hold}", bob)["transaction"]["status"] == "posted"
    world.check_guarantees()


# -- access ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/v1/accounts",
        "/v1/accounts/acct_x",
        "/v1/accounts/acct_x/entries",
        "/v1/transactions",
        "/v1/transactions/txn_x",
    ],
)
def test_every_route_needs_a_token(api_client, path):
    response, body = get(api_client, path)
    assert error_of(response, body) == (401, "unauthenticated")
    response, body = get(api_client, path, "not-a-jwt")
    assert error_of(response, body) == (401, "unauthenticated")
