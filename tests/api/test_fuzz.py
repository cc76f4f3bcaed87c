"""No input gets a 5xx (API.md, "Errors"): generated requests on every route of the app.

Hypothesis picks a route from the app's own route table and sends it arbitrary path parameters,
query strings, headers (no token, a user's, an MFA admin's, garbage; an Idempotency-Key or not)
and bodies (arbitrary JSON, deeply nested JSON, bytes that are not JSON, objects with the API's
field names and arbitrary values). Every answer must be below 500 and, when it is an error,
in the contract's envelope. Stripe is the tests' in-memory fake; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib.api import deposits as deposits_api
from chalicelib.api import reconciliations as reconciliations_api
from tests.api.admin_helpers import operators
from tests.api.test_deposits import FakeStripe

FIELDS = [
    "amount", "currency", "to_email", "to_facility_id", "memo", "email", "password",
    "totp_code", "refresh_token", "code", "token", "new_password", "reason", "force", "role",
    "quote_id", "from_currency", "to_currency", "from_amount", "destination", "accept_terms",
    "name", "account_id", "payer_email", "expires_in", "rules", "version",
]  # fmt: skip
QUERY = ["limit", "cursor", "from", "to", "email", "actor_id", "action", "date", "full", "status"]
ROUTES = sorted((method, path) for path, methods in app.routes.items() for method in methods)
# Any method on any path too: a method a route does not have answers 405 in the envelope.
ANY_ROUTE = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]), st.sampled_from(sorted(app.routes))
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["1.00", "-1", "0", "1e400", "NaN", "USD", "BTC", "USDT", "ETH", "x" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
api_objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
bodies = st.one_of(
    api_objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.integers(min_value=30, max_value=2000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b""),
)
segments = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["usr_x", "txn_" + "0" * 32, "acct_" + "0" * 24, "ses_x", "dep_x", ""]),
)


class QuietStripe(FakeStripe):
    """Stripe's fake, with a balance history (the admin's reconciliation reads it)."""

    def list_balance_transactions(self, start: int, end: int) -> list:
        return []


@pytest.fixture
def people(table, api_client, monkeypatch):
    stripe = QuietStripe()
    monkeypatch.setattr(deposits_api, "get_payment_gateway", lambda: stripe)
    monkeypatch.setattr(reconciliations_api, "get_payment_gateway", lambda: stripe)
    return operators()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.one_of(st.sampled_from(ROUTES), ANY_ROUTE),
    params=st.lists(segments, min_size=4, max_size=4),
    query=st.dictionaries(st.sampled_from(QUERY), st.text(max_size=30), max_size=3),
    who=st.sampled_from(["none", "alice", "admin", "garbage"]),
    key=st.one_of(st.none(), st.text(max_size=300)),
    body=bodies,
)
def test_no_input_gets_a_5xx(api_client, people, route, params, query, who, key, body):
    method, template = route
    values = iter(params)
    path = re.sub(
        r"\{[^}]+\}",
        lambda _m: urllib.parse.quote(next(values), safe="") or "x",
        template,
    )
    if query:
        path += "?" + urllib.parse.urlencode(query)
    headers = {"content-type": "application/json"}
    if who in ("alice", "admin"):
        headers["authorization"] = f"Bearer {people['tokens'][who]}"
    elif who == "garbage":
        headers["authorization"] = "Bearer not.a.token"
    if key is not None:
        headers["idempotency-key"] = key.encode("utf-8", "replace").decode("latin-1", "replace")
    response = api_client.http.request(method, path, headers=headers, body=body)
    assert response.status_code < 500, (method, path, body[:200], response.body[:500])
    if response.status_code >= 400 and method != "HEAD":
        error = json.loads(response.body)["error"]
        assert {"code", "message", "request_id"} <= set(error), response.body
