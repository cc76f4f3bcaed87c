"""``GET /openapi.json``: a valid OpenAPI 3.1 document naming every route the app serves and every
route of the contract (API.md), with the request bodies the routes really parse."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app import app
from chalicelib.api import fields, openapi_spec
from chalicelib.domain.errors import InvalidAmount
from chalicelib.domain.money import CURRENCIES, parse_amount
from tests.api.test_deposits import stripe_fake  # noqa: F401 (a fixture)
from tests.api.test_transfers import people, to_bob  # noqa: F401 (a fixture)

# API.md's routes, as (method, path) with the app's parameter names.
CONTRACT = {
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/console"),
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
    ("POST", "/v1/admin/facilities/{facility_id}/api-keys"),
    ("GET", "/v1/admin/facilities/{facility_id}/api-keys"),
    ("POST", "/v1/admin/facilities/{facility_id}/api-keys/{key_id}/revoke"),
    ("GET", "/v1/facility"),
    ("GET", "/v1/facility/transactions"),
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


def test_links_name_operations_and_their_parameters(document):
    """Links chain an answer to the next operation (quote -> swap, withdrawal -> get/cancel,
    deposit -> get, transfer -> its transaction), for clients and stateful fuzzing."""
    operations = {
        op["operationId"]: (path, op)
        for path, item in document["paths"].items()
        for op in item.values()
    }
    linked = 0
    for item in document["paths"].values():
        for op in item.values():
            for response in op["responses"].values():
                for link in response.get("links", {}).values():
                    path, target = operations[link["operationId"]]
                    names = {p["name"] for p in target["parameters"] if p["in"] == "path"}
                    assert set(link.get("parameters", {})) == names, (path, link)
                    linked += 1
    assert linked >= 6
    quote = document["paths"]["/v1/fx/quotes"]["post"]["responses"]["201"]["links"]["Swap"]
    assert quote["requestBody"] == {"quote_id": "$response.body#/quote/id"}


def validator_for(document: dict, method: str, path: str, status: int) -> Draft202012Validator:
    """The document's schema of this answer, its $refs resolved against the document."""
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_real_answers_of_a_story_match_the_document(
    api_client,
    people,  # noqa: F811
    document,
    stripe_fake,  # noqa: F811
):
    """A user's story through the app, each answer checked against the document: what a client
    generated from it would read."""
    alice, admin = people["tokens"]["alice"], people["tokens"]["admin"]

    def check(method: str, path: str, template: str, body=None, token=alice, key=None) -> dict:
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        if key:
            headers["idempotency-key"] = key
        raw = json.dumps(body).encode() if body is not None else b""
        answer = api_client.http.request(method, path, headers=headers, body=raw)
        payload = json.loads(answer.body)
        errors = sorted(
            validator_for(document, method, template, answer.status_code).iter_errors(payload),
            key=str,
        )
        assert not errors, (method, path, answer.status_code, [e.message for e in errors])
        return payload

    check("GET", "/v1/me", "/v1/me")
    accounts = check("GET", "/v1/accounts", "/v1/accounts")["data"]
    usd = next(a for a in accounts if a["currency"] == "USD")["id"]
    check("GET", f"/v1/accounts/{usd}", "/v1/accounts/{account_id}")
    sent = check("POST", "/v1/transfers", "/v1/transfers", to_bob(), key="story-1")
    txn = sent["transaction"]["id"]
    check("GET", f"/v1/transactions/{txn}", "/v1/transactions/{transaction_id}")
    check("GET", "/v1/transactions", "/v1/transactions")
    check("GET", f"/v1/accounts/{usd}/entries", "/v1/accounts/{account_id}/entries")
    check("GET", "/v1/facilities", "/v1/facilities")
    check("GET", "/v1/me/sessions", "/v1/me/sessions")
    check("POST", "/v1/transfers", "/v1/transfers", to_bob("999.00"), key="story-2")  # 422
    check("GET", "/v1/transactions/txn_nothing", "/v1/transactions/{transaction_id}")  # 404
    check("GET", "/v1/admin/users", "/v1/admin/users", token=admin)
    check(
        "GET",
        f"/v1/admin/transactions/{txn}",
        "/v1/admin/transactions/{transaction_id}",
        token=admin,
    )
    check("GET", "/v1/admin/audit", "/v1/admin/audit", token=admin)
    check("GET", "/v1/admin/audit/chain", "/v1/admin/audit/chain", token=admin)
    check("GET", "/v1/admin/withdrawals", "/v1/admin/withdrawals", token=admin)
    quote = {"from_currency": "USD", "to_currency": "EUR", "from_amount": "1.00"}
    check("POST", "/v1/fx/quotes", "/v1/fx/quotes", quote)  # 400: no EUR here
    quote["to_currency"] = "BTC"
    check("POST", "/v1/fx/quotes", "/v1/fx/quotes", quote)
    deposit = {"amount": "10.00", "currency": "USD"}
    created = check("POST", "/v1/deposits/card", "/v1/deposits/card", deposit, key="story-3")
    deposit_id = created["deposit"]["id"]
    check("GET", f"/v1/deposits/{deposit_id}", "/v1/deposits/{deposit_id}")
    check("GET", "/health", "/health")

    # a facility's API access: its keys (as the admin), then the facility with one
    facility = check("POST", "/v1/admin/facilities", "/v1/admin/facilities", {"name": "C"}, admin)
    keys = f"/v1/admin/facilities/{facility['facility']['id']}/api-keys"
    template = "/v1/admin/facilities/{facility_id}/api-keys"
    issued = check("POST", keys, template, {"name": "server"}, admin)
    check("POST", keys, template, {"name": "server", "scopes": ["bad"]}, admin)  # 400
    check("GET", keys, template, token=admin)
    secret = issued["secret"]
    check("GET", "/v1/facility", "/v1/facility", token=secret)
    check("GET", "/v1/facility/transactions", "/v1/facility/transactions", token=secret)
    check("GET", "/v1/facility", "/v1/facility", token=alice)  # 403
    key_id = issued["api_key"]["id"]
    check("POST", f"{keys}/{key_id}/revoke", template + "/{key_id}/revoke", token=admin)
    check("GET", "/v1/facility", "/v1/facility", token=secret)  # 401


def test_every_documented_shape_is_closed(document):
    """A field an answer grows without the document fails the story above and Schemathesis's
    response check, instead of drifting (the document once lacked three of Account's fields)."""

    def objects(schema: dict, where: str):
        if schema.get("type") == "object" and "properties" in schema:
            yield where, schema
            for name, value in schema["properties"].items():
                yield from objects(value, f"{where}.{name}")
        if isinstance(schema.get("items"), dict):
            yield from objects(schema["items"], f"{where}[]")

    for name, schema in document["components"]["schemas"].items():
        for where, found in objects(schema, name):
            assert found.get("additionalProperties") is False, where
    account = document["components"]["schemas"]["Account"]["properties"]
    assert {"overdrawn_by_force", "flags", "created_at"} <= set(account)


def test_idempotency_keys_are_documented_required_or_optional(document):
    def key(method: str, path: str) -> dict | None:
        params = document["paths"][path][method]["parameters"]
        return next((p for p in params if p["name"] == "Idempotency-Key"), None)

    assert key("post", "/v1/transfers")["required"] is True
    for path in (
        "/v1/withdrawals/{withdrawal_id}/cancel",
        "/v1/admin/withdrawals/{withdrawal_id}/approve",
        "/v1/admin/withdrawals/{withdrawal_id}/reject",
    ):
        assert key("post", path)["required"] is False, path
    assert key("get", "/v1/accounts") is None


@settings(max_examples=400, deadline=None)
@given(
    code=st.sampled_from(sorted(CURRENCIES)),
    raw=st.from_regex(r"\A[0-9]{0,21}(\.[0-9]{0,20})?\Z"),
)
def test_the_documented_amount_pattern_is_exactly_what_parse_amount_accepts(code, raw):
    """The document's per-currency amount regex is a second statement of parse_amount's rule:
    both must accept and refuse the same strings."""
    try:
        parse_amount(raw, code)
        accepted = True
    except InvalidAmount:
        accepted = False

    pattern = fields.positive_amount_pattern(CURRENCIES[code].decimals)
    assert accepted == bool(re.fullmatch(pattern, raw)), (code, raw)


def test_every_answer_shape_is_a_response_model(document):
    """No hand-written shape: each schema of the document is the JSON schema of the model of
    ``chalicelib.api.responses`` that the routes serialise with."""
    from pydantic import BaseModel

    from chalicelib.api import responses

    for name, schema in document["components"]["schemas"].items():
        model = getattr(responses, name)
        assert issubclass(model, BaseModel), name
        assert set(schema["properties"]) == set(model.model_fields), name
    assert set(openapi_spec.__dict__) & {"SCHEMAS", "AMOUNT", "CURRENCY"} == set()


def test_the_currency_of_an_answer_is_one_the_ledger_has():
    from typing import get_args

    from chalicelib.api import responses

    assert set(get_args(responses.Currency)) == set(CURRENCIES)


def test_a_view_that_drifts_from_its_model_fails_loudly():
    """An unknown field, a JSON number for an amount or a status the contract does not have is
    refused when the answer is built, not sent to a client."""
    from pydantic import ValidationError

    from chalicelib.api import responses

    good = {
        "id": "acc_1",
        "currency": "USD",
        "posted": "-1.00",
        "available": "0.00",
        "pending_outgoing": "0.00",
        "pending_incoming": "0.00",
        "overdrawn_by_force": True,
        "flags": ["forced_negative"],
        "created_at": "2026-12-02T00:00:00.000000Z",
    }
    assert responses.Account(**good).body() == good
    for drift in ({"nickname": "x"}, {"posted": 1.0}, {"pending_outgoing": "-1.00"}):
        with pytest.raises(ValidationError):
            responses.Account(**(good | drift))
    with pytest.raises(ValidationError):
        responses.Health(status="fine", checks={})


def test_every_success_status_of_a_route_has_its_own_shape(document):
    """Routes with two success answers document both: an adjustment above the threshold (202,
    waiting for a second admin), a reconciliation still running (202), a degraded health (503)."""

    def schema(path: str, method: str, status: int) -> dict:
        response = document["paths"][path][method]["responses"][str(status)]
        return response["content"]["application/json"]["schema"]

    ref = "#/components/schemas/"
    assert schema("/v1/admin/adjustments", "post", 201) == {"$ref": ref + "TransactionAnswer"}
    assert schema("/v1/admin/adjustments", "post", 202) == {"$ref": ref + "AdjustmentAnswer"}
    assert schema("/v1/admin/reconciliations", "post", 202) == {"$ref": ref + "RunningReportAnswer"}
    assert schema("/v1/admin/reconciliations/{date}", "get", 200) == {
        "oneOf": [{"$ref": ref + "ReportAnswer"}, {"$ref": ref + "RunningReportAnswer"}]
    }
    assert schema("/health", "get", 503) == {"$ref": ref + "Health"}
    assert schema("/v1/auth/password/forgot", "post", 202) == {"$ref": ref + "Accepted"}


def test_request_fields_carry_their_own_schema(document):
    """An amount or a currency is described by its type in the request model, not by its name:
    an adjustment's amount may be negative, a transfer's may not."""

    def body(path: str) -> dict:
        return document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]

    adjustment = body("/v1/admin/adjustments")["properties"]["amount"]
    assert re.fullmatch(adjustment["pattern"], "-12.50")
    transfer = body("/v1/transfers")
    assert not re.fullmatch(transfer["properties"]["amount"]["pattern"], "-12.50")
    usd = next(
        rule["then"]["properties"]["amount"]["pattern"]
        for rule in transfer["allOf"]
        if rule["if"].get("properties", {}).get("currency", {}).get("const") == "USD"
    )
    assert re.fullmatch(usd, "12.34")
    assert not re.fullmatch(usd, "12.345")
    assert body("/v1/deposits/card")["properties"]["currency"]["enum"] == ["USD"]
    assert body("/v1/deposits/crypto/address")["properties"]["currency"]["enum"] == [
        "BTC",
        "ETH",
        "USDT",
    ]


def test_a_transfer_names_exactly_one_recipient(document):
    """The recipient rule of the document (not both; no email means a facility) is the code's."""
    schema = document["paths"]["/v1/transfers"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    check = Draft202012Validator(schema)
    money = {"amount": "1.00", "currency": "USD"}
    assert check.is_valid(money | {"to_email": "bob@example.com"})
    assert check.is_valid(money | {"to_facility_id": "fac_1"})
    assert not check.is_valid(money)
    assert not check.is_valid(money | {"to_email": "bob@example.com", "to_facility_id": "fac_1"})


def test_facility_routes_take_a_facility_key_and_document_its_limits(document):
    scheme = document["components"]["securitySchemes"]["facilityKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path in ("/v1/facility", "/v1/facility/transactions"):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{"facilityKey": []}]
        responses = operation["responses"]
        assert {"200", "401", "403", "429"} <= set(responses)
        assert "X-RateLimit-Remaining" in responses["200"]["headers"]
        assert "Retry-After" in responses["429"]["headers"]
        assert "headers" not in responses["401"]
    keys = document["paths"]["/v1/admin/facilities/{facility_id}/api-keys"]
    assert keys["post"]["security"] == keys["get"]["security"] == [{"bearer": []}]


def test_the_console_is_documented_with_its_media_types(document):
    """Like /health, the console's routes are in the document: public, answering text (the
    page, scripts, styles) named by media type, and 404 for a file it does not have."""
    page = document["paths"]["/console"]["get"]
    asset = document["paths"]["/console/{asset}"]["get"]
    assert page["security"] == asset["security"] == []
    assert set(page["responses"]["200"]["content"]) == {"text/html"}
    assert set(asset["responses"]["200"]["content"]) == {"text/javascript", "text/css"}
    assert "404" in asset["responses"]
    names = asset["parameters"][0]["schema"]["enum"]
    assert {"app.js", "api.js", "console.css"} <= set(names)


def test_every_reference_resolves_in_the_document():
    """A nested request model (a payroll line) is inlined: "#/$defs/..." would point nowhere."""
    import re

    from app import app
    from chalicelib.api.openapi_spec import document

    text = json.dumps(document(app.routes))
    schemas = document(app.routes)["components"]["schemas"]
    for ref in set(re.findall(r'"\$ref": "([^"]+)"', text)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
