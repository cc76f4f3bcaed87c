"""Every operator route needs role admin *and* a token obtained with a TOTP code: a user, and an
admin whose token was obtained without MFA, get ``403 forbidden`` and change nothing."""

from __future__ import annotations

import pytest

from tests.api.admin_helpers import operators
from tests.api.helpers import call

ROUTES = [
    ("GET", "/v1/admin/users", None),
    ("POST", "/v1/admin/users/{bob}/suspend", {"reason": "no"}),
    ("POST", "/v1/admin/users/{bob}/unsuspend", None),
    ("GET", "/v1/admin/transactions/txn_any", None),
    ("POST", "/v1/admin/transactions/txn_any/rollback", {"reason": "no"}),
    ("GET", "/v1/admin/audit", None),
    ("GET", "/v1/admin/audit/chain", None),
    ("POST", "/v1/admin/facilities/fac_any/api-keys", {"name": "server"}),
    ("GET", "/v1/admin/facilities/fac_any/api-keys", None),
    ("POST", "/v1/admin/facilities/fac_any/api-keys/key_0123456789abcdef/revoke", None),
]


@pytest.fixture
def people(table, api_client):
    return operators()


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("who", ["alice", "weak_admin"])
def test_only_an_admin_with_mfa_may_call(api_client, people, method, path, body, who):
    path = path.format(bob=people["bob"].id)
    response, answer = call(api_client, method, path, people["tokens"][who], body, key="k1")
    assert (response.status_code, answer["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_without_a_token_it_is_unauthenticated(api_client, people, method, path, body):
    path = path.format(bob=people["bob"].id)
    response = api_client.http.request(method, path, headers={"content-type": "application/json"})
    assert response.status_code == 401


def test_a_refused_suspension_leaves_the_user_active(api_client, people):
    call(
        api_client,
        "POST",
        f"/v1/admin/users/{people['bob'].id}/suspend",
        people["tokens"]["weak_admin"],
        {"reason": "no"},
    )
    from chalicelib.api.dependencies import get_auth_service

    assert get_auth_service().repository.get_user(people["bob"].id).status.value == "active"
