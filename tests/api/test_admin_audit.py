"""The audit trail over HTTP: ``GET /v1/admin/audit`` (time range, actor, action, pages) and
``GET /v1/admin/audit/chain`` (the digest chain's verification); and which API.md actions leave
an event (login, failed login, MFA change, password reset, suspension, approval, rollback)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.clock import to_iso
from chalicelib.adapters.dynamo.audit_repository import DynamoAuditRepository
from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.domain.users import AuditEvent
from chalicelib.services import audit_chain
from tests.api.admin_helpers import operators
from tests.api.helpers import call


@pytest.fixture
def people(table, api_client):
    return operators()


def back_dated(at: datetime, n: int, action: str, actor: str) -> AuditEvent:
    return AuditEvent(
        id=f"aud_test_{n:03d}",
        at=to_iso(at),
        actor_id=actor,
        action=action,
        target="usr_x",
        ip="198.51.100.1",
        details={"n": str(n)},
    )


def page_through(client, token: str, query: str) -> list[dict]:
    seen, cursor = [], None
    while True:
        path = f"/v1/admin/audit?{query}" + (f"&cursor={cursor}" if cursor else "")
        response, body = call(client, "GET", path, token)
        assert response.status_code == 200, body
        seen += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_the_audit_list_filters_by_time_actor_and_action_across_days_and_pages(api_client, people):
    admin = people["tokens"]["admin"]
    repository = DynamoAuthRepository()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    for n in range(12):
        moment = start + timedelta(hours=6 * n)  # spread over three days
        action = "user.suspended" if n % 3 == 0 else "auth.login"
        repository.append_audit(back_dated(moment, n, action, "usr_ops" if n % 2 else "usr_b"))
    since, until = to_iso(start), to_iso(start + timedelta(hours=66))

    everything = page_through(api_client, admin, f"from={since}&to={until}&limit=5")
    assert [e["id"] for e in everything] == [f"aud_test_{n:03d}" for n in range(12)]
    assert set(everything[0]) == {"id", "at", "actor_id", "action", "target", "ip", "details"}
    assert everything[0]["details"] == {"n": "0"}

    by_action = page_through(
        api_client, admin, f"from={since}&to={until}&action=user.suspended&limit=2"
    )
    assert [e["id"] for e in by_action] == [
        "aud_test_000",
        "aud_test_003",
        "aud_test_006",
        "aud_test_009",
    ]
    both = page_through(
        api_client, admin, f"from={since}&to={until}&action=user.suspended&actor_id=usr_ops"
    )
    assert [e["id"] for e in both] == ["aud_test_003", "aud_test_009"]

    inner = page_through(
        api_client,
        admin,
        f"from={to_iso(start + timedelta(hours=6))}&to={to_iso(start + timedelta(hours=12))}",
    )
    assert [e["id"] for e in inner] == ["aud_test_001", "aud_test_002"]


def test_by_default_the_list_shows_the_last_24_hours(api_client, people):
    admin = people["tokens"]["admin"]
    DynamoAuthRepository().append_audit(
        back_dated(datetime.now(UTC) - timedelta(days=2), 1, "auth.login", "usr_old")
    )
    response, body = call(api_client, "GET", "/v1/admin/audit?limit=100", admin)
    assert response.status_code == 200
    actors = {e["actor_id"] for e in body["data"]}
    assert "usr_old" not in actors
    assert people["admin"].id in actors  # the admin's own login, a moment ago


@pytest.mark.parametrize(
    "query",
    [
        "from=yesterday",
        "from=2026-11-23T10:00:00Z&to=2026-11-22T10:00:00Z",
        "limit=0",
        "cursor=bm9wZQ",
        # A cursor of the right shape naming a day that does not exist (once a 500).
        "from=2025-02-01T00:00:00Z&to=2025-03-31T00:00:00Z&cursor="
        + base64.urlsafe_b64encode(b'{"after": {"S": "2025-02-30"}}').decode(),
        "action=",
        "actor_id=a&actor_id=b",
    ],
)
def test_bad_audit_queries_are_invalid_requests(api_client, people, query):
    response, body = call(api_client, "GET", f"/v1/admin/audit?{query}", people["tokens"]["admin"])
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")


def test_logins_failed_logins_and_suspensions_are_in_the_list(api_client, people):
    from chalicelib.api.dependencies import get_auth_service
    from chalicelib.domain.errors import InvalidCredentials

    admin = people["tokens"]["admin"]
    with pytest.raises(InvalidCredentials):
        get_auth_service().login("alice@example.com", "wrong password!!", None, "192.0.2.9")
    path = f"/v1/admin/users/{people['bob'].id}/suspend"
    response, _ = call(api_client, "POST", path, admin, {"reason": "test"})
    assert response.status_code == 200
    response, body = call(api_client, "GET", "/v1/admin/audit?limit=100", admin)
    actions = {(e["action"], e["actor_id"]) for e in body["data"]}
    assert {
        ("user.signed_up", people["alice"].id),
        ("auth.login", people["admin"].id),
        ("auth.login_failed", people["alice"].id),
        ("user.suspended", people["admin"].id),
    } <= actions


def test_the_chain_route_verifies_sealed_days_and_names_a_broken_one(api_client, people, table):
    admin = people["tokens"]["admin"]
    repository = DynamoAuditRepository()
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in (3, 2, 1)]
    for n, day in enumerate(days):
        DynamoAuthRepository().append_audit(
            back_dated(datetime.fromisoformat(f"{day}T12:00:00+00:00"), n, "auth.login", "usr_1")
        )
    audit_chain.seal_through(repository, first_day=days[0])

    response, body = call(api_client, "GET", f"/v1/admin/audit/chain?from={days[0]}", admin)
    assert response.status_code == 200, body
    result = body["verification"]
    assert (result["ok"], result["days_checked"], result["last_day"]) == (True, 3, days[-1])

    import boto3

    from chalicelib.adapters.dynamo import keys

    tampered = back_dated(datetime.fromisoformat(f"{days[1]}T12:00:00+00:00"), 1, "", "")
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName=table,
        Key={
            "PK": {"S": keys.audit_pk(tampered.at, tampered.id)},
            "SK": {"S": keys.audit_sk(tampered.at, tampered.id)},
        },
        UpdateExpression="SET ip = :ip",
        ExpressionAttributeValues={":ip": {"S": "10.0.0.1"}},
    )
    response, body = call(
        api_client, "GET", f"/v1/admin/audit/chain?from={days[0]}&to={days[-1]}", admin
    )
    result = body["verification"]
    assert (result["ok"], result["broken_day"]) == (False, days[1])

    response, body = call(api_client, "GET", "/v1/admin/audit/chain?from=nope", admin)
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    # More than a year cannot finish inside one API request: that is the command's job.
    path = "/v1/admin/audit/chain?from=2020-01-01&to=2026-01-01"
    response, body = call(api_client, "GET", path, admin)
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    assert "366 days" in body["error"]["message"]
