"""``GET /openapi.json``: a valid OpenAPI 3.1 document naming every route the app serves and every
route of the contract (API.md), with the request bodies the routes really parse."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from app import app
from chalicelib.api import openapi_spec

# API.md's routes, as (method, path) with the app's parameter names.
CONTRACT = {
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/auth/signup"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/mfa/totp/setup"),
    ("POST", "/v1/auth/mfa/totp/confirm"),
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),
    ("GET", "/v1/me"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{account_id}"),
    ("GET", "/v1/accounts/{account_id}/entries"),
    ("GET", "/v1/transactions"),
    ("GET", "/v1/transactions/{transaction_id}"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/fx/quotes"),
    ("POST", "/v1/fx/swaps"),
    ("POST", "/v1/withdrawals"),
    ("GET", "/v1/withdrawals/{withdrawal_id}"),
    ("POST", "/v1/withdrawals/{withdrawal_id}/cancel"),
    ("POST", "/v1/deposits/card"),
    ("GET", "/v1/deposits/{deposit_id}"),
    ("POST", "/v1/deposits/crypto/address"),
    ("POST", "/v1/webhooks/stripe"),
    ("POST", "/v1/webhooks/crypto"),
    ("POST", "/v1/admin/facilities"),
    ("GET", "/v1/facilities"),
    ("GET", "/v1/admin/withdrawals"),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/approve"),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/reject"),
    ("POST", "/v1/admin/deposits/{deposit_id}/refunds"),
}


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_spec.document(app.routes)


def test_the_document_is_valid_openapi(document):
    validate(document)


def test_every_route_the_app_serves_is_documented(document):
    served = {(m, p) for p, methods in app.routes.items() for m in methods}
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert served == documented
    assert set(openapi_spec.OPERATIONS) == served  # no entry for a route that does not exist


def test_every_contract_route_is_served_and_documented(document):
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert CONTRACT - documented == set()


def test_request_bodies_are_the_models_the_routes_parse(document):
    transfer = document["paths"]["/v1/transfers"]["post"]
    schema = transfer["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["amount"]["type"] == "string"  # never a JSON number
    assert {"to_email", "to_facility_id", "memo"} <= set(schema["properties"])
    names = [p["name"] for p in transfer["parameters"]]
    assert "Idempotency-Key" in names
    assert transfer["security"] == [{"bearer": []}]
    assert document["paths"]["/v1/auth/login"]["post"]["security"] == []


def test_the_route_answers_with_the_document(api_client):
    response = api_client.http.get("/openapi.json")
    assert response.status_code == 200
    body = response.json_body
    assert body["openapi"].startswith("3.1")
    assert "/v1/transfers" in body["paths"]
