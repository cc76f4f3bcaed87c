"""Facility API keys (API.md, "Facilities"): admins issue, list and revoke them; a facility reads
its own accounts and transactions with one; who may call what; the per-key rate limit, also under
parallel requests."""

from __future__ import annotations

import json
import threading

import pytest

from chalicelib.api.dependencies import get_api_key_repository
from chalicelib.domain.errors import RateLimited
from chalicelib.services import api_keys
from tests.api.helpers import call
from tests.api.test_transfers import people, send  # noqa: F401 (a fixture)
from tests.support import scan

NOW = 1_800_000_030.0  # 30 s into a minute: every request of a test falls in one window


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch):
    monkeypatch.setattr(api_keys, "epoch_now", lambda: NOW)


@pytest.fixture
def facility_id(api_client, people):  # noqa: F811
    response, body = call(
        api_client, "POST", "/v1/admin/facilities", people["tokens"]["admin"], {"name": "Clinic"}
    )
    assert response.status_code == 201, body
    return body["facility"]["id"]


def issue(client, people, facility_id: str, **body) -> tuple[int, dict]:  # noqa: F811
    response, answer = call(
        client,
        "POST",
        f"/v1/admin/facilities/{facility_id}/api-keys",
        people["tokens"]["admin"],
        {"name": "server", **body},
    )
    return response.status_code, answer


def as_facility(client, path: str, secret: str | None):
    headers = {"authorization": f"Bearer {secret}"} if secret is not None else {}
    response = client.http.get(path, headers=headers)
    return response, json.loads(response.body)


def code_of(body: dict) -> str:
    return body["error"]["code"]


# -- admin routes ---------------------------------------------------------------------------------
def test_an_admin_issues_lists_and_revokes_keys(api_client, people, facility_id, table):  # noqa: F811
    status, created = issue(api_client, people, facility_id, scopes=["read", "payouts"])
    assert status == 201, created
    key, secret = created["api_key"], created["secret"]
    assert secret.startswith(f"fk_{key['prefix']}_")
    assert key["scopes"] == ["read", "payouts"]
    assert (key["status"], key["last_used_at"], key["rate_limit_per_minute"]) == (
        "active",
        None,
        100,
    )
    status, default = issue(api_client, people, facility_id, name="all")
    assert default["api_key"]["scopes"] == ["read", "payment_requests", "payouts", "webhooks"]

    admin = people["tokens"]["admin"]
    path = f"/v1/admin/facilities/{facility_id}/api-keys"
    response, listed = call(api_client, "GET", path, admin)
    assert response.status_code == 200
    assert [k["id"] for k in listed["data"]] == [default["api_key"]["id"], key["id"]]
    assert listed["next_cursor"] is None
    assert "secret" not in json.dumps(listed)
    assert secret not in json.dumps(listed)

    response, revoked = call(api_client, "POST", f"{path}/{key['id']}/revoke", admin)
    assert response.status_code == 200, revoked
    assert revoked["api_key"]["status"] == "revoked"
    assert revoked["api_key"]["revoked_at"]
    again, _ = call(api_client, "POST", f"{path}/{key['id']}/revoke", admin)
    assert again.status_code == 200

    items = scan(table)
    stored = json.dumps(items, default=str)
    assert secret not in stored
    assert secret.split("_", 2)[2] not in stored
    actions = [i["action"] for i in items if i["item_type"] == "audit"]
    assert actions.count("facility.api_key_created") == 2
    assert actions.count("facility.api_key_revoked") == 1


def test_the_secret_is_stored_only_as_a_salted_keyed_hash(api_client, people, facility_id, table):  # noqa: F811
    _, created = issue(api_client, people, facility_id)
    (item,) = [i for i in scan(table) if i["item_type"] == "api_key"]
    assert item["secret_hash"] != created["secret"]
    assert len(item["secret_hash"]) == 64
    assert len(item["salt"]) == 32
    key = get_api_key_repository().get(created["api_key"]["prefix"])
    assert key is not None
    assert key.verifies(created["secret"])
    assert not key.verifies(created["secret"] + "x")


def test_unknown_facility_or_key_is_not_found(api_client, people, facility_id):  # noqa: F811
    admin = people["tokens"]["admin"]
    assert issue(api_client, people, "fac_nothing")[0] == 404
    response, body = call(api_client, "GET", "/v1/admin/facilities/fac_nothing/api-keys", admin)
    assert (response.status_code, code_of(body)) == (404, "not_found")
    for key_id in ("key_0123456789abcdef", "nonsense"):
        path = f"/v1/admin/facilities/{facility_id}/api-keys/{key_id}/revoke"
        response, body = call(api_client, "POST", path, admin)
        assert (response.status_code, code_of(body)) == (404, "not_found")
    # A key of another facility is not this facility's
    _, other = call(api_client, "POST", "/v1/admin/facilities", admin, {"name": "Other"})
    _, created = issue(api_client, people, other["facility"]["id"])
    path = f"/v1/admin/facilities/{facility_id}/api-keys/{created['api_key']['id']}/revoke"
    assert call(api_client, "POST", path, admin)[0].status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["read", "admin"]},
        {"name": "k", "scopes": "read"},
        {"name": "k", "rate_limit_per_minute": 0},
        {"name": "k", "rate_limit_per_minute": "10"},
        {"name": "k", "secret": "mine"},
        {},
    ],
)
def test_a_bad_key_request_is_invalid(api_client, people, facility_id, body):  # noqa: F811
    response, answer = call(
        api_client,
        "POST",
        f"/v1/admin/facilities/{facility_id}/api-keys",
        people["tokens"]["admin"],
        body,
    )
    assert (response.status_code, code_of(answer)) == (400, "invalid_request")


def test_only_admins_manage_keys(api_client, people, facility_id):  # noqa: F811
    path = f"/v1/admin/facilities/{facility_id}/api-keys"
    response, body = call(api_client, "POST", path, people["tokens"]["alice"], {"name": "k"})
    assert (response.status_code, code_of(body)) == (403, "forbidden")
    assert api_client.http.get(path).status_code == 401


# -- facility routes ------------------------------------------------------------------------------
def test_a_facility_reads_its_accounts_and_transactions(api_client, people, facility_id):  # noqa: F811
    for n, amount in enumerate(("2.50", "1.00")):
        paid, body = send(
            api_client,
            people["tokens"]["alice"],
            {"amount": amount, "currency": "USD", "to_facility_id": facility_id},
            key=f"pay-{n}",
        )
        assert paid.status_code == 201, body
    _, created = issue(api_client, people, facility_id, scopes=["read"])
    secret = created["secret"]

    response, body = as_facility(api_client, "/v1/facility", secret)
    assert response.status_code == 200, body
    assert body["facility"] == {"id": facility_id, "name": "Clinic"}
    assert [a["currency"] for a in body["accounts"]] == ["BTC", "ETH", "USD", "USDT"]
    usd = next(a for a in body["accounts"] if a["currency"] == "USD")
    assert (usd["posted"], usd["available"]) == ("3.50", "3.50")

    response, page = as_facility(api_client, "/v1/facility/transactions?limit=1", secret)
    assert response.status_code == 200, page
    assert [t["type"] for t in page["data"]] == ["payment"]
    assert page["next_cursor"]
    response, rest = as_facility(
        api_client, f"/v1/facility/transactions?limit=5&cursor={page['next_cursor']}", secret
    )
    assert response.status_code == 200, rest
    assert len(rest["data"]) == 1
    assert rest["data"][0]["id"] != page["data"][0]["id"]
    assert rest["next_cursor"] is None
    response, empty = as_facility(
        api_client, "/v1/facility/transactions?to=2000-01-01T00:00:00Z", secret
    )
    assert (response.status_code, empty["data"]) == (200, [])

    response, bad = as_facility(api_client, "/v1/facility/transactions?limit=0", secret)
    assert (response.status_code, code_of(bad)) == (400, "invalid_request")
    assert response.headers["X-RateLimit-Limit"] == "100"

    # the key's use is recorded (at most once per minute)
    _, listed = call(
        api_client,
        "GET",
        f"/v1/admin/facilities/{facility_id}/api-keys",
        people["tokens"]["admin"],
    )
    assert listed["data"][0]["last_used_at"].startswith("2027-01-15T08:00")


def test_who_may_call_a_facility_route(api_client, people, facility_id):  # noqa: F811
    _, created = issue(api_client, people, facility_id)
    secret = created["secret"]
    prefix = created["api_key"]["prefix"]
    _, payouts_only = issue(api_client, people, facility_id, scopes=["payouts"])

    cases = [
        (None, 401, "unauthenticated"),
        ("", 401, "unauthenticated"),
        ("fk_0123456789abcdef_nothing", 401, "unauthenticated"),
        (f"fk_{prefix}_wrong", 401, "unauthenticated"),
        (secret + "x", 401, "unauthenticated"),
        ("not-a-token", 401, "unauthenticated"),
        (people["tokens"]["alice"], 403, "forbidden"),
        (people["tokens"]["admin"], 403, "forbidden"),
        (payouts_only["secret"], 403, "forbidden"),
    ]
    for presented, status, code in cases:
        for path in ("/v1/facility", "/v1/facility/transactions"):
            response, body = as_facility(api_client, path, presented)
            assert (response.status_code, code_of(body)) == (status, code), (presented, path)
    # a key without the scope was counted: its answer says where it stands
    response, _ = as_facility(api_client, "/v1/facility", payouts_only["secret"])
    assert response.headers["X-RateLimit-Remaining"] == "97"

    # a facility key on user routes
    for path in ("/v1/accounts", "/v1/transactions", "/v1/me", "/v1/facilities"):
        response, body = as_facility(api_client, path, secret)
        assert (response.status_code, code_of(body)) == (401, "unauthenticated"), path
    response, body = call(api_client, "POST", "/v1/transfers", secret, {}, key="k")
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")


def test_revocation_takes_effect_at_once_and_other_keys_keep_working(
    api_client,
    people,  # noqa: F811
    facility_id,
):
    _, old = issue(api_client, people, facility_id, name="old")
    _, new = issue(api_client, people, facility_id, name="new")
    assert as_facility(api_client, "/v1/facility", old["secret"])[0].status_code == 200
    assert as_facility(api_client, "/v1/facility", new["secret"])[0].status_code == 200

    path = f"/v1/admin/facilities/{facility_id}/api-keys/{old['api_key']['id']}/revoke"
    assert call(api_client, "POST", path, people["tokens"]["admin"])[0].status_code == 200

    response, body = as_facility(api_client, "/v1/facility", old["secret"])
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")
    assert "X-RateLimit-Limit" not in response.headers
    assert as_facility(api_client, "/v1/facility", new["secret"])[0].status_code == 200


# -- rate limit -----------------------------------------------------------------------------------
def test_past_its_limit_a_key_gets_429_until_the_next_minute(
    api_client,
    people,  # noqa: F811
    facility_id,
    monkeypatch,
):
    _, created = issue(api_client, people, facility_id, rate_limit_per_minute=3)
    assert created["api_key"]["rate_limit_per_minute"] == 3
    secret = created["secret"]

    remaining = []
    for _ in range(3):
        response, body = as_facility(api_client, "/v1/facility", secret)
        assert response.status_code == 200, body
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(response.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]

    response, body = as_facility(api_client, "/v1/facility/transactions", secret)
    assert (response.status_code, code_of(body)) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "30"
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == (
        "3",
        "0",
    )
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]

    monkeypatch.setattr(api_keys, "epoch_now", lambda: NOW + 30)  # the next minute
    response, _ = as_facility(api_client, "/v1/facility", secret)
    assert (response.status_code, response.headers["X-RateLimit-Remaining"]) == (200, "2")


def test_the_default_limit_is_a_setting(api_client, people, facility_id, monkeypatch):  # noqa: F811
    from chalicelib.api import dependencies
    from chalicelib.config import get_settings

    monkeypatch.setenv("FACILITY_RATE_LIMIT_PER_MINUTE", "2")
    dependencies.reset()
    get_settings.cache_clear()
    _, created = issue(api_client, people, facility_id)
    assert created["api_key"]["rate_limit_per_minute"] == 2
    statuses = [as_facility(api_client, "/v1/facility", created["secret"])[0] for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]


def test_parallel_requests_never_pass_the_limit(api_client, people, facility_id, table):  # noqa: F811
    """Ten requests of one key racing with a limit of 5: exactly five get through. Each thread
    does what ``facility_only`` does for a request (the look-up and the counted write)."""
    _, created = issue(api_client, people, facility_id, rate_limit_per_minute=5)
    secret = created["secret"]
    repository = get_api_key_repository()
    start = threading.Barrier(10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def request() -> None:
        start.wait()
        try:
            caller = api_keys.authenticate(repository, secret, default_limit=100)
            outcome = f"ok:{caller.remaining}"
        except RateLimited:
            outcome = "rate_limited"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["ok:0", "ok:1", "ok:2", "ok:3", "ok:4"] + ["rate_limited"] * 5
    (counter,) = [i for i in scan(table) if i["item_type"] == "rate_counter"]
    assert counter["count"] == 5
    assert counter["expires_at"] > NOW


# -- the deployed stage's usage plan ------------------------------------------------------------
def test_with_a_usage_plan_each_issued_key_is_in_it_until_revoked(
    api_client,
    people,  # noqa: F811
    facility_id,
    table,
    monkeypatch,
):
    import boto3

    from chalicelib.api import dependencies
    from chalicelib.config import get_settings
    from chalicelib.domain.api_keys import usage_identifier

    gateway = boto3.client("apigateway", region_name="us-east-1")
    plan_id = gateway.create_usage_plan(name="facility-keys")["id"]
    monkeypatch.setenv("USAGE_PLAN_ID", plan_id)
    get_settings.cache_clear()
    dependencies.reset()

    status, created = issue(api_client, people, facility_id)
    assert status == 201, created
    value = usage_identifier(created["api_key"]["prefix"])
    (in_plan,) = gateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]
    assert in_plan["value"] == value

    response, _ = call(
        api_client,
        "POST",
        f"/v1/admin/facilities/{facility_id}/api-keys/{created['api_key']['id']}/revoke",
        people["tokens"]["admin"],
        {},
    )
    assert response.status_code == 200
    assert gateway.get_api_keys()["items"] == []
