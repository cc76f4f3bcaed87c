"""Risk rules and reviews (API.md, "Risk") over HTTP: the versioned rule set, each rule kind on
transfers, the hold a review puts on the money and its approval, rejection and expiry (balances
checked), withdrawals and card deposits, and the races a daily limit and a review must survive."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pyotp
import pytest

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.api import deposits as deposits_api
from chalicelib.api.dependencies import (
    get_auth_service,
    get_ledger_service,
    get_risk,
)
from chalicelib.auth import passwords
from chalicelib.domain.errors import ReviewNotOpen, RiskDeclined
from chalicelib.domain.risk import RuleSet, parse_rules
from chalicelib.services import risk as risk_service
from chalicelib.services import transfers as transfer_service
from tests.api.helpers import balances, call, wallet
from tests.stripe_fake import FakeStripe
from tests.support import LedgerWorld, check_guarantees, scan, verified

PASSWORD = "correct horse battery"
RULES = "/v1/admin/risk/rules"
REVIEWS = "/v1/admin/reviews"
ADDRESS = "bc1qexampleaddress0000000000"


@pytest.fixture
def stripe_fake(monkeypatch) -> FakeStripe:
    fake = FakeStripe()
    monkeypatch.setattr(deposits_api, "get_payment_gateway", lambda: fake)
    return fake


@pytest.fixture
def people(table, api_client, stripe_fake):
    """alice (100.00 USD, 1 BTC), bob and carol, an MFA admin; their tokens."""
    passwords.configure_for_tests()
    auth = get_auth_service()
    users = {
        name: verified(auth.sign_up(f"{name}@example.com", PASSWORD, True, None))
        for name in ("alice", "bob", "carol")
    }
    admin, secret = auth.create_admin("admin@example.com", PASSWORD)
    world = LedgerWorld.create(table)
    world.fund(wallet(users["alice"].id, "USD"), 100_00)
    world.fund(wallet(users["alice"].id, "BTC"), 100_000_000, currency="BTC")
    tokens = {
        name: auth.login(f"{name}@example.com", PASSWORD, None, None).access_token for name in users
    }
    tokens["admin"] = auth.login(
        "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
    ).access_token
    return {**users, "admin": admin, "tokens": tokens, "world": world, "table": table}


def set_rules(client, people, rules: list[dict], version: int | None = None) -> dict:
    body: dict = {"rules": rules}
    if version is not None:
        body["version"] = version
    response, answer = call(client, "PUT", RULES, people["tokens"]["admin"], body)
    assert response.status_code == 200, answer
    return answer


def send(client, people, amount: str, to: str = "bob", key: str = "t1", sender: str = "alice"):
    body = {"amount": amount, "currency": "USD", "to_email": f"{to}@example.com"}
    return call(client, "POST", "/v1/transfers", people["tokens"][sender], body, key)


def usd(people, name: str) -> tuple[int, int]:
    return balances(wallet(people[name].id, "USD"))


def reviews(client, people, query: str = "") -> list[dict]:
    response, body = call(client, "GET", f"{REVIEWS}{query}", people["tokens"]["admin"])
    assert response.status_code == 200, body
    return body["data"]


# -- the rule set ---------------------------------------------------------------------------------
def test_rules_start_empty_and_each_change_is_a_new_audited_version(api_client, people):
    response, body = call(api_client, "GET", RULES, people["tokens"]["admin"])
    assert (response.status_code, body["version"], body["rules"]) == (200, 0, [])
    first = [
        {"id": "big", "kind": "amount_over", "action": "review", "currency": "USD", "amount": "50"}
    ]
    answer = set_rules(api_client, people, first)
    assert answer["version"] == 1
    assert answer["rules"] == [{**first[0], "amount": "50.00"}]
    second = [{"id": "many", "kind": "daily_count_over", "action": "block", "count": 3}]
    assert set_rules(api_client, people, second, version=1)["version"] == 2
    response, body = call(api_client, "GET", RULES, people["tokens"]["admin"])
    assert (body["version"], body["rules"]) == (2, second)
    events = [i for i in scan(people["table"]) if i.get("action") == "risk.rules_replaced"]
    assert len(events) == 2
    last = max(events, key=lambda e: e["details"]["new_version"])["details"]
    assert json.loads(last["old_rules"]) == [{**first[0], "amount": "50.00"}]
    assert json.loads(last["new_rules"]) == second


def test_a_change_based_on_an_old_version_is_refused_and_changes_nothing(api_client, people):
    rules = [{"id": "a", "kind": "daily_count_over", "action": "block", "count": 5}]
    set_rules(api_client, people, rules, version=0)
    other = [{"id": "b", "kind": "daily_count_over", "action": "block", "count": 1}]
    response, body = call(
        api_client, "PUT", RULES, people["tokens"]["admin"], {"rules": other, "version": 0}
    )
    assert (response.status_code, body["error"]["code"]) == (409, "version_conflict")
    _, now = call(api_client, "GET", RULES, people["tokens"]["admin"])
    assert (now["version"], now["rules"]) == (1, rules)


def test_two_admins_changing_the_rules_at_once_cannot_both_win(people):
    """Six changes based on version 0 race (service level): exactly one is stored."""
    risk, admin = get_risk(), people["admin"]
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def change(n: int) -> None:
        start.wait()
        rules = [{"id": f"r{n}", "kind": "daily_count_over", "action": "block", "count": n}]
        try:
            risk_service.replace_rules(risk, admin, rules, 0, None)
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["RulesVersionConflict"] * 5 + ["ok"]
    assert risk_service.current_rules(risk).version == 1


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"id": "x", "kind": "nope", "action": "review"}, "rules.0.kind"),
        (
            {"id": "x", "kind": "amount_over", "action": "hold", "currency": "USD", "amount": "1"},
            "rules.0.action",
        ),
        (
            {"id": "x", "kind": "amount_over", "action": "block", "currency": "USD", "amount": 10},
            "rules.0.amount",
        ),
        (
            {
                "id": "x",
                "kind": "amount_over",
                "action": "block",
                "currency": "USD",
                "amount": "1.001",
            },
            "rules.0.amount",
        ),
        (
            {"id": "x", "kind": "amount_over", "action": "block", "currency": "EUR", "amount": "1"},
            "rules.0.currency",
        ),
        (
            {"id": "x", "kind": "amount_over", "action": "block", "currency": "USD"},
            "rules.0.amount",
        ),
        ({"id": "x", "kind": "daily_count_over", "action": "block"}, "rules.0.count"),
        ({"id": "x", "kind": "daily_count_over", "action": "block", "count": -1}, "rules.0.count"),
        (
            {"id": "x", "kind": "daily_count_over", "action": "block", "count": 2, "hours": 3},
            "rules.0.hours",
        ),
        (
            {"id": "x", "kind": "account_younger_than", "action": "block", "hours": 0},
            "rules.0.hours",
        ),
        ({"id": "", "kind": "daily_count_over", "action": "block", "count": 1}, "rules.0.id"),
        (
            {"id": "x", "kind": "daily_count_over", "action": "block", "count": 1, "x": 1},
            "rules.0.x",
        ),
        ("not an object", "rules.0"),
        ({"id": "x", "kind": ["amount_over"], "action": {"x": 1}}, "rules.0.kind"),
    ],
)
def test_a_bad_rule_answers_400_with_its_field_and_changes_nothing(api_client, people, rule, field):
    response, body = call(api_client, "PUT", RULES, people["tokens"]["admin"], {"rules": [rule]})
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request"), body
    assert field in [d["field"] for d in body["error"]["details"]]
    _, now = call(api_client, "GET", RULES, people["tokens"]["admin"])
    assert now["version"] == 0


def test_rule_ids_are_unique_in_the_set_and_bodies_are_checked(api_client, people):
    twice = {"id": "same", "kind": "daily_count_over", "action": "block", "count": 1}
    response, body = call(
        api_client, "PUT", RULES, people["tokens"]["admin"], {"rules": [twice, twice]}
    )
    assert response.status_code == 400
    assert [d["field"] for d in body["error"]["details"]] == ["rules.1.id"]
    for bad in ({"rules": "x"}, {}, {"rules": [], "version": "1"}, {"rules": [], "version": -1}):
        response, body = call(api_client, "PUT", RULES, people["tokens"]["admin"], bad)
        assert (response.status_code, body["error"]["code"]) == (400, "invalid_request"), bad


def test_only_an_mfa_admin_reads_or_changes_rules_and_reviews(api_client, people):
    token = people["tokens"]["alice"]
    for method, path, body in (
        ("GET", RULES, None),
        ("PUT", RULES, {"rules": []}),
        ("GET", REVIEWS, None),
        ("POST", f"{REVIEWS}/rev_x/approve", None),
        ("POST", f"{REVIEWS}/rev_x/reject", {"reason": "no"}),
    ):
        response, answer = call(api_client, method, path, token, body)
        assert (response.status_code, answer["error"]["code"]) == (403, "forbidden"), path


# -- each kind on transfers -----------------------------------------------------------------------
def test_amount_over_block_declines_and_nothing_moves(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "cap",
                "kind": "amount_over",
                "action": "block",
                "currency": "USD",
                "amount": "20",
            }
        ],
    )
    response, body = send(api_client, people, "20.01")
    assert (response.status_code, body["error"]["code"]) == (422, "risk_declined")
    assert "cap" not in body["error"]["message"]  # the rule is not told to the user
    assert usd(people, "alice") == (100_00, 100_00)
    assert usd(people, "bob") == (0, 0)
    response, body = send(api_client, people, "20.00", key="t2")
    assert response.status_code == 201, body
    check_guarantees(people["table"])


def test_amount_over_review_holds_the_money_and_answers_202(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "big",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "20",
            }
        ],
    )
    response, body = send(api_client, people, "30.00")
    assert response.status_code == 202, body
    txn, review = body["transaction"], body["review"]
    assert txn["status"] == "pending"
    assert (review["status"], review["rule"], review["amount"], review["currency"]) == (
        "open",
        "big",
        "30.00",
        "USD",
    )
    assert (review["transaction_id"], review["user_id"], review["operation"]) == (
        txn["id"],
        people["alice"].id,
        "transfer",
    )
    assert usd(people, "alice") == (100_00, 70_00)  # held: available drops, posted does not
    assert usd(people, "bob") == (0, 0)
    assert [r["id"] for r in reviews(api_client, people, "?status=open")] == [review["id"]]
    # The same request again replays the same answer and holds nothing more.
    response, again = send(api_client, people, "30.00")
    assert (response.status_code, again) == (202, body)
    assert usd(people, "alice") == (100_00, 70_00)
    check_guarantees(people["table"])


def test_daily_amount_over_counts_the_last_24_hours(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "day",
                "kind": "daily_amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "10",
            }
        ],
    )
    assert send(api_client, people, "6.00", key="a")[0].status_code == 201
    assert send(api_client, people, "4.00", key="b")[0].status_code == 201  # exactly 10
    response, body = send(api_client, people, "0.01", key="c")
    assert (response.status_code, body["review"]["rule"]) == (202, "day")
    # Another currency has its own total.
    btc = {"amount": "0.5", "currency": "BTC", "to_email": "bob@example.com"}
    response, _ = call(api_client, "POST", "/v1/transfers", people["tokens"]["alice"], btc, "d")
    assert response.status_code == 201
    check_guarantees(people["table"])


def test_daily_count_over_counts_operations_of_every_currency(api_client, people):
    set_rules(
        api_client,
        people,
        [{"id": "three", "kind": "daily_count_over", "action": "block", "count": 2}],
    )
    assert send(api_client, people, "1.00", key="a")[0].status_code == 201
    btc = {"amount": "0.1", "currency": "BTC", "to_email": "bob@example.com"}
    response, _ = call(api_client, "POST", "/v1/transfers", people["tokens"]["alice"], btc, "b")
    assert response.status_code == 201
    response, body = send(api_client, people, "1.00", key="c")
    assert (response.status_code, body["error"]["code"]) == (422, "risk_declined")
    # bob has his own count.
    assert send(api_client, people, "1.00", to="carol", key="d", sender="bob")[0].status_code == 201


def test_new_recipients_over_counts_distinct_new_recipients(api_client, people):
    set_rules(
        api_client,
        people,
        [{"id": "fan-out", "kind": "new_recipients_over", "action": "review", "count": 1}],
    )
    assert send(api_client, people, "1.00", to="bob", key="a")[0].status_code == 201
    assert send(api_client, people, "1.00", to="bob", key="b")[0].status_code == 201  # known
    response, body = send(api_client, people, "1.00", to="carol", key="c")
    assert (response.status_code, body["review"]["rule"]) == (202, "fan-out")
    assert send(api_client, people, "1.00", to="bob", key="d")[0].status_code == 201


def test_account_younger_than_applies_to_new_users_over_the_amount(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "new-user",
                "kind": "account_younger_than",
                "action": "block",
                "hours": 24,
                "currency": "USD",
                "amount": "5",
            }
        ],
    )
    response, body = send(api_client, people, "5.01", key="a")  # alice signed up just now
    assert (response.status_code, body["error"]["code"]) == (422, "risk_declined")
    assert send(api_client, people, "5.00", key="b")[0].status_code == 201


def test_a_rule_with_a_user_id_applies_to_that_user_only(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "watch-bob",
                "kind": "amount_over",
                "action": "block",
                "currency": "USD",
                "amount": "0.01",
                "user_id": people["bob"].id,
            }
        ],
    )
    assert send(api_client, people, "3.00", key="a")[0].status_code == 201
    response, body = send(api_client, people, "1.00", to="carol", key="b", sender="bob")
    assert (response.status_code, body["error"]["code"]) == (422, "risk_declined")


def test_block_wins_over_review_when_both_fire(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "r",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "1",
            },
            {"id": "b", "kind": "amount_over", "action": "block", "currency": "USD", "amount": "2"},
        ],
    )
    assert send(api_client, people, "1.50", key="a")[0].status_code == 202
    assert send(api_client, people, "2.50", key="b")[0].status_code == 422


# -- deciding a review ----------------------------------------------------------------------------
@pytest.fixture
def held(api_client, people) -> dict:
    """alice's 30.00 to bob, held by a review."""
    set_rules(
        api_client,
        people,
        [
            {
                "id": "big",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "20",
            }
        ],
    )
    response, body = send(api_client, people, "30.00")
    assert response.status_code == 202, body
    return body


def decide(client, people, review_id: str, verb: str, body: dict | None = None):
    path = f"{REVIEWS}/{review_id}/{verb}"
    return call(client, "POST", path, people["tokens"]["admin"], body)


def test_approving_posts_the_same_transaction_once(api_client, people, held):
    review_id = held["review"]["id"]
    response, body = decide(api_client, people, review_id, "approve")
    assert response.status_code == 200, body
    assert (body["transaction"]["id"], body["transaction"]["status"]) == (
        held["transaction"]["id"],
        "posted",
    )
    assert (body["review"]["status"], body["review"]["decided_by"]) == (
        "approved",
        people["admin"].id,
    )
    assert usd(people, "alice") == (70_00, 70_00)
    assert usd(people, "bob") == (30_00, 30_00)
    for verb, extra in (("approve", None), ("reject", {"reason": "late"})):
        response, again = decide(api_client, people, review_id, verb, extra)
        assert (response.status_code, again["error"]["code"]) == (409, "invalid_state")
    assert usd(people, "bob") == (30_00, 30_00)
    events = [i["action"] for i in scan(people["table"]) if i["item_type"] == "audit"]
    assert events.count("risk.review_approved") == 1
    check_guarantees(people["table"])


def test_rejecting_voids_the_hold_and_nothing_moves(api_client, people, held):
    review_id = held["review"]["id"]
    response, body = decide(api_client, people, review_id, "reject", {})
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    response, body = decide(api_client, people, review_id, "reject", {"reason": "stolen card"})
    assert response.status_code == 200, body
    assert (body["transaction"]["status"], body["review"]["status"]) == ("voided", "rejected")
    assert body["review"]["reason"] == "stolen card"
    assert usd(people, "alice") == (100_00, 100_00)
    assert usd(people, "bob") == (0, 0)
    response, again = decide(api_client, people, review_id, "approve")
    assert (response.status_code, again["error"]["code"]) == (409, "invalid_state")
    assert usd(people, "bob") == (0, 0)
    assert [r["status"] for r in reviews(api_client, people, "?status=rejected")] == ["rejected"]
    assert reviews(api_client, people, "?status=open") == []
    check_guarantees(people["table"])


def test_an_unknown_review_is_404(api_client, people):
    response, body = decide(api_client, people, "rev_nope", "approve")
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")


def test_parallel_approve_and_reject_clicks_decide_once(people, held):
    """Eight admins' clicks (approve and reject mixed) race on one review: exactly one wins,
    the hold is posted or voided once, and the balances match the winner."""
    ledger, risk, admin = get_ledger_service(), get_risk(), people["admin"]
    review_id = held["review"]["id"]
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def click(n: int) -> None:
        start.wait()
        try:
            if n % 2:
                risk_service.reject(ledger, risk, admin, review_id, "race", None)
                outcomes.append("rejected")
            else:
                risk_service.approve(ledger, risk, admin, review_id, None)
                outcomes.append("approved")
        except ReviewNotOpen:
            outcomes.append("invalid_state")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=click, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "invalid_state"]
    assert len(winners) == 1, outcomes
    assert outcomes.count("invalid_state") == 7, outcomes
    if winners == ["approved"]:
        assert (usd(people, "alice"), usd(people, "bob")) == ((70_00, 70_00), (30_00, 30_00))
    else:
        assert (usd(people, "alice"), usd(people, "bob")) == ((100_00, 100_00), (0, 0))
    check_guarantees(people["table"])


def test_an_open_review_expires_after_the_window_and_the_job_is_idempotent(
    api_client, people, held
):
    from chalicelib.api import jobs

    ledger, risk = get_ledger_service(), get_risk()
    assert jobs.run_review_expiry() == []  # not 72 hours old yet
    opened = parse_iso(held["review"]["created_at"])
    later = to_iso(opened + timedelta(hours=72, seconds=1))
    assert risk_service.expire_stale(ledger, risk, now=later) == [held["review"]["id"]]
    assert risk_service.expire_stale(ledger, risk, now=later) == []  # a second run: nothing
    [review] = reviews(api_client, people, "?status=expired")
    assert review["id"] == held["review"]["id"]
    assert usd(people, "alice") == (100_00, 100_00)
    assert usd(people, "bob") == (0, 0)
    response, body = decide(api_client, people, review["id"], "approve")
    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")
    events = [i["action"] for i in scan(people["table"]) if i["item_type"] == "audit"]
    assert events.count("risk.review_expired") == 1
    check_guarantees(people["table"])


def test_the_review_window_is_a_setting(api_client, people, monkeypatch, held):
    monkeypatch.setenv("RISK_REVIEW_HOURS", "1")
    from chalicelib.api import dependencies
    from chalicelib.config import get_settings

    get_settings.cache_clear()
    dependencies.reset()
    opened = parse_iso(held["review"]["created_at"])
    later = to_iso(opened + timedelta(hours=1, seconds=1))
    assert risk_service.expire_stale(get_ledger_service(), get_risk(), now=later) == [
        held["review"]["id"]
    ]


def test_the_review_queue_pages_and_checks_its_status(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "all",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "0.01",
            }
        ],
    )
    for key in ("a", "b", "c"):
        assert send(api_client, people, "1.00", key=key)[0].status_code == 202
    response, page = call(api_client, "GET", f"{REVIEWS}?limit=2", people["tokens"]["admin"])
    assert (response.status_code, len(page["data"])) == (200, 2)
    response, rest = call(
        api_client,
        "GET",
        f"{REVIEWS}?limit=2&cursor={page['next_cursor']}",
        people["tokens"]["admin"],
    )
    assert len(rest["data"]) == 1
    assert len({r["id"] for r in page["data"] + rest["data"]}) == 3
    for query in ("?status=bogus", "?cursor=garbage", "?limit=0"):
        response, body = call(api_client, "GET", f"{REVIEWS}{query}", people["tokens"]["admin"])
        assert (response.status_code, body["error"]["code"]) == (400, "invalid_request"), query


# -- races on a daily limit -----------------------------------------------------------------------
def race(people, copies: int, amount: str = "1.00") -> list[str]:
    """``copies`` transfers from alice to bob released together (service level: the Chalice app
    holds current_request globally, so one process cannot run HTTP requests in parallel)."""
    ledger, users, risk = get_ledger_service(), get_auth_service().repository, get_risk()
    start = threading.Barrier(copies)
    outcomes: list[str] = []

    def go(n: int) -> None:
        start.wait()
        try:
            guarded = transfer_service.transfer(
                ledger,
                users,
                risk,
                sender=people["alice"],
                request=transfer_service.TransferRequest(
                    amount, "USD", "bob@example.com", None, ""
                ),
                idempotency_key=f"race-{n}",
            )
            outcomes.append("review" if guarded.review else "ok")
        except RiskDeclined:
            outcomes.append("declined")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_parallel_transfers_cannot_slip_under_a_daily_block_together(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "day",
                "kind": "daily_amount_over",
                "action": "block",
                "currency": "USD",
                "amount": "5",
            }
        ],
    )
    assert race(people, 10) == ["declined"] * 5 + ["ok"] * 5
    assert usd(people, "alice") == (95_00, 95_00)
    assert usd(people, "bob") == (5_00, 5_00)
    check_guarantees(people["table"])


def test_parallel_transfers_past_a_daily_review_limit_are_all_held(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "day",
                "kind": "daily_amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "5",
            }
        ],
    )
    assert race(people, 10) == ["ok"] * 5 + ["review"] * 5
    assert usd(people, "alice") == (95_00, 90_00)  # five posted, five held
    assert len(reviews(api_client, people, "?status=open")) == 5
    check_guarantees(people["table"])


def test_a_transfer_that_loses_the_counter_race_is_assessed_again(api_client, people, monkeypatch):
    """Deterministic: right after the first transfer read alice's counter, another transfer
    commits; the first one's counter condition fails, the engine retries, and the retry
    assesses it again (now over the daily limit: declined, nothing of it written)."""
    from chalicelib.adapters.dynamo.risk_repository import DynamoRiskRepository

    set_rules(
        api_client,
        people,
        [
            {
                "id": "day",
                "kind": "daily_amount_over",
                "action": "block",
                "currency": "USD",
                "amount": "5",
            }
        ],
    )
    real = DynamoRiskRepository.counter
    interleaved: list[int] = []

    def counter_then_someone_else_commits(user_id: str):  # type: ignore[no-untyped-def]
        found = real(user_id)
        if not interleaved:
            interleaved.append(1)
            winner = transfer_service.transfer(
                get_ledger_service(),
                get_auth_service().repository,
                get_risk(),
                sender=people["alice"],
                request=transfer_service.TransferRequest(
                    "3.00", "USD", "bob@example.com", None, ""
                ),
                idempotency_key="winner",
            )
            assert winner.recorded.created
        return found

    monkeypatch.setattr(
        DynamoRiskRepository, "counter", staticmethod(counter_then_someone_else_commits)
    )
    response, body = send(api_client, people, "3.00", key="loser")
    assert (response.status_code, body["error"]["code"]) == (422, "risk_declined")
    assert usd(people, "alice") == (97_00, 97_00)
    check_guarantees(people["table"])


# -- withdrawals and card deposits ----------------------------------------------------------------
def withdraw(client, people, amount: str, key: str = "w1"):
    body = {"amount": amount, "currency": "BTC", "destination": ADDRESS}
    return call(client, "POST", "/v1/withdrawals", people["tokens"]["alice"], body, key)


def test_a_withdrawal_review_is_the_withdrawals_own_with_the_rule_named(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "btc-out",
                "kind": "amount_over",
                "action": "review",
                "currency": "BTC",
                "amount": "0.1",
            }
        ],
    )
    response, body = withdraw(api_client, people, "0.2")
    assert response.status_code == 201, body
    assert body["withdrawal"]["status"] == "pending_review"
    assert balances(wallet(people["alice"].id, "BTC")) == (100_000_000, 80_000_000)  # one hold
    assert reviews(api_client, people) == []  # no second review, no second hold
    response, queue = call(api_client, "GET", "/v1/admin/withdrawals", people["tokens"]["admin"])
    assert [(w["id"], w["risk_rule"]) for w in queue["data"]] == [
        (body["withdrawal"]["id"], "btc-out")
    ]
    check_guarantees(people["table"])


def test_a_blocked_withdrawal_holds_nothing(api_client, people):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "no-btc",
                "kind": "amount_over",
                "action": "block",
                "currency": "BTC",
                "amount": "0.1",
            }
        ],
    )
    response, body = withdraw(api_client, people, "0.2")
    assert (response.status_code, body["error"]["code"]) == (422, "risk_declined")
    assert balances(wallet(people["alice"].id, "BTC")) == (100_000_000, 100_000_000)
    assert [i for i in scan(people["table"]) if i["item_type"] == "withdrawal"] == []


def test_a_card_deposit_a_rule_flags_is_declined_before_stripe(api_client, people, stripe_fake):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "card",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "100",
            }
        ],
    )
    body = {"amount": "150.00", "currency": "USD"}
    response, answer = call(
        api_client, "POST", "/v1/deposits/card", people["tokens"]["alice"], body, "d1"
    )
    assert (response.status_code, answer["error"]["code"]) == (422, "risk_declined")
    assert stripe_fake.created == 0
    assert [i for i in scan(people["table"]) if i["item_type"] == "deposit"] == []


def test_card_deposits_count_in_the_daily_total(api_client, people, stripe_fake):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "day",
                "kind": "daily_amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "50",
            }
        ],
    )
    body = {"amount": "45.00", "currency": "USD"}
    response, _ = call(
        api_client, "POST", "/v1/deposits/card", people["tokens"]["alice"], body, "d"
    )
    assert response.status_code == 201
    response, _ = call(
        api_client, "POST", "/v1/deposits/card", people["tokens"]["alice"], body, "d"
    )
    assert response.status_code == 201  # a retry is not counted twice
    assert send(api_client, people, "5.00", key="a")[0].status_code == 201  # 50: not over
    assert send(api_client, people, "0.01", key="b")[0].status_code == 202


# -- cost and metrics -----------------------------------------------------------------------------
def test_rules_are_read_once_per_ttl(people):
    reads: list[int] = []

    class Store:
        def rules(self) -> RuleSet:
            reads.append(1)
            return RuleSet(1, parse_rules([]))

    clock = [100.0]
    cache = risk_service.RulesCache(Store(), 10, monotonic=lambda: clock[0])  # type: ignore[arg-type]
    for _ in range(5):
        cache.current()
    assert len(reads) == 1
    clock[0] += 10
    cache.current()
    assert len(reads) == 2
    zero = risk_service.RulesCache(Store(), 0, monotonic=lambda: clock[0])  # type: ignore[arg-type]
    zero.current(), zero.current()
    assert len(reads) == 4


def test_blocks_and_reviews_are_metered_per_rule(api_client, people, capsys):
    set_rules(
        api_client,
        people,
        [
            {
                "id": "r",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "1",
            },
            {"id": "b", "kind": "amount_over", "action": "block", "currency": "USD", "amount": "2"},
        ],
    )
    capsys.readouterr()
    send(api_client, people, "1.50", key="a")
    send(api_client, people, "2.50", key="b")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    seen = {
        (line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], line["rule"]) for line in lines
    }
    assert {("RiskReviewOpened", "r"), ("RiskBlocked", "b")} <= seen


def test_another_lifecycle_decides_with_the_review_in_the_same_write(api_client, people, held):
    """``Risk.on_decision`` (how a payment request follows its held payment): its writes go in
    the decision's write; if one of them is refused, nothing is decided and the hold stays."""
    from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
    from chalicelib.adapters.dynamo.models import AdjustmentItem
    from chalicelib.domain.errors import InvalidState
    from chalicelib.domain.risk import Operation
    from chalicelib.domain.users import AuditEvent

    risk = get_risk()
    never = ExtraWrite(
        model=AdjustmentItem("ADJUSTMENT#missing", "ADJUSTMENT"),
        condition=AdjustmentItem.PK.exists(),
        error=InvalidState("the lifecycle refused"),
        actions=[AdjustmentItem.reason.set("x")],
    )
    risk.on_decision[Operation.TRANSFER] = lambda review: [never]
    review_id = held["review"]["id"]
    response, body = decide(api_client, people, review_id, "approve")
    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")
    assert reviews(api_client, people, "?status=open")[0]["id"] == review_id
    assert usd(people, "alice") == (100_00, 70_00)  # still held
    marker = AuditEvent.new(
        "test.lifecycle_followed",
        at=held["review"]["created_at"],
        actor_id=None,
        target=None,
        ip=None,
    )
    risk.on_decision[Operation.TRANSFER] = lambda review: [
        get_ledger_service().repository.audit(marker)
    ]
    response, body = decide(api_client, people, review_id, "approve")
    assert response.status_code == 200, body
    actions = [i["action"] for i in scan(people["table"]) if i["item_type"] == "audit"]
    assert "test.lifecycle_followed" in actions
    check_guarantees(people["table"])


# -- the hold sweeper -----------------------------------------------------------------------------
def sweep(now: str):  # type: ignore[no-untyped-def]
    from chalicelib.api.dependencies import get_hold_expiries, get_withdrawal_repository
    from chalicelib.services import holds

    return holds.sweep(
        get_ledger_service(),
        get_hold_expiries(),
        risk=get_risk(),
        withdrawals=get_withdrawal_repository(),
        now=now,
    )


def test_the_sweeper_ends_a_review_hold_through_the_review_once(api_client, people, held):
    deadline = parse_iso(held["review"]["expires_at"])
    before = sweep(to_iso(deadline - timedelta(seconds=1)))
    assert (before.expired, before.already_ended) == ([], [])
    after = to_iso(deadline + timedelta(seconds=1))
    assert sweep(after).expired == [held["transaction"]["id"]]
    assert (sweep(after).expired, sweep(after).already_ended) == ([], [])  # swept: done
    [review] = reviews(api_client, people, "?status=expired")
    assert review["id"] == held["review"]["id"]
    assert risk_service.expire_stale(get_ledger_service(), get_risk(), now=after) == []
    assert usd(people, "alice") == (100_00, 100_00)
    assert usd(people, "bob") == (0, 0)
    check_guarantees(people["table"])


def test_the_sweeper_ends_a_withdrawal_past_its_review_window_through_it(api_client, people):
    response, body = withdraw(api_client, people, "0.2")
    assert response.status_code == 201, body
    created = parse_iso(body["withdrawal"]["created_at"])
    result = sweep(to_iso(created + timedelta(days=7, seconds=1)))
    assert result.expired == [body["withdrawal"]["transaction_id"]]
    response, now = call(
        api_client, "GET", f"/v1/withdrawals/{body['withdrawal']['id']}", people["tokens"]["alice"]
    )
    assert now["withdrawal"]["status"] == "expired"
    assert balances(wallet(people["alice"].id, "BTC")) == (100_000_000, 100_000_000)
    assert sweep(to_iso(created + timedelta(days=8))).expired == []
    check_guarantees(people["table"])


def test_the_sweeper_voids_a_hold_without_owner_once_and_skips_one_that_ended(people):
    from chalicelib.api.dependencies import get_hold_expiries
    from chalicelib.domain.holds import HoldExpiry
    from chalicelib.domain.transactions import TransactionType, derive_transaction_id
    from chalicelib.services.ledger import PostingRequest

    ledger, deadlines = get_ledger_service(), get_hold_expiries()
    source, target = wallet(people["alice"].id, "USD"), wallet(people["bob"].id, "USD")
    deadline = "2026-01-01T00:00:00.000000Z"
    ids = []
    for key in ("lapses", "settled"):
        txn_id = derive_transaction_id("test-hold", key)
        ledger.record(
            transaction_id=txn_id,
            type=TransactionType.TRANSFER,
            postings=[PostingRequest(source, "USD", -5_00), PostingRequest(target, "USD", 5_00)],
            pending=True,
            extra=[deadlines.expiry_write(HoldExpiry(txn_id, deadline))],
        )
        ids.append(txn_id)
    ledger.post_pending(ids[1])
    result = sweep("2026-01-01T00:00:01.000000Z")
    assert (result.expired, result.already_ended) == ([ids[0]], [ids[1]])
    assert sweep("2026-01-02T00:00:00.000000Z").expired == []
    assert usd(people, "alice") == (95_00, 95_00)
    assert usd(people, "bob") == (5_00, 5_00)
    events = [i for i in scan(people["table"]) if i.get("action") == "hold.expired"]
    assert [e["target"] for e in events] == [ids[0]]
    check_guarantees(people["table"])


# -- a payment to a facility held for review, and the facility's payment.received event ------------
def outbound_events(table: str) -> list[dict]:
    return [i for i in scan(table) if i["item_type"] == "outbound_event"]


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_held_payment_tells_the_facility_only_once_approved(api_client, people, verb):
    response, created = call(
        api_client, "POST", "/v1/admin/facilities", people["tokens"]["admin"], {"name": "Clinic"}
    )
    assert response.status_code == 201, created
    facility_id = created["facility"]["id"]
    set_rules(
        api_client,
        people,
        [
            {
                "id": "big",
                "kind": "amount_over",
                "action": "review",
                "currency": "USD",
                "amount": "20",
            }
        ],
    )
    body = {"amount": "30.00", "currency": "USD", "to_facility_id": facility_id}
    response, held = call(
        api_client, "POST", "/v1/transfers", people["tokens"]["alice"], body, "p1"
    )
    assert response.status_code == 202, held
    assert outbound_events(people["table"]) == []  # held: the facility has received nothing

    response, decided = decide(
        api_client,
        people,
        held["review"]["id"],
        verb,
        {"reason": "no"} if verb == "reject" else None,
    )
    assert response.status_code == 200, decided
    events = outbound_events(people["table"])
    if verb == "reject":
        assert events == []
        return
    (event,) = events
    assert (event["event_type"], event["facility_id"]) == ("payment.received", facility_id)
    data = json.loads(event["data"])
    assert (data["transaction_id"], data["amount"], data["from_user_id"]) == (
        held["transaction"]["id"],
        "30.00",
        people["alice"].id,
    )
