"""Every error answers with the envelope, the right status and code, and never a stack trace.

Routes that raise on demand are registered for these tests only (``probe`` blueprint, removed
afterwards), on the real app, so they go through the real middleware and error table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from chalice import BadRequestError, Blueprint

from app import app
from chalicelib.api import errors
from chalicelib.domain import errors as domain

PROBE_PREFIX = "/_probe"
SECRET = "postgres://ledger:hunter2@db.internal"

# One instance of every domain error, built the way the domain raises it.
DOMAIN_ERRORS: dict[str, Callable[[], domain.LedgerError]] = {
    "InvalidAmount": lambda: domain.InvalidAmount("amount must be a decimal string"),
    "UnsupportedCurrency": lambda: domain.UnsupportedCurrency("XYZ is not supported"),
    "PostingsEmpty": domain.PostingsEmpty,
    "PostingAmountZero": domain.PostingAmountZero,
    "PostingsUnbalanced": domain.PostingsUnbalanced,
    "DuplicateAccountInPostings": domain.DuplicateAccountInPostings,
    "TooManyPostings": domain.TooManyPostings,
    "CurrencyMismatch": domain.CurrencyMismatch,
    "AccountNotFound": lambda: domain.AccountNotFound("acct_1"),
    "TransactionNotFound": domain.TransactionNotFound,
    "InsufficientFunds": lambda: domain.InsufficientFunds("acct_1"),
    "TransactionExistsWithDifferentFields": domain.TransactionExistsWithDifferentFields,
    "HoldNotPending": lambda: domain.HoldNotPending("txn_1", "posted"),
    "AlreadyReversed": domain.AlreadyReversed,
    "NotReversible": domain.NotReversible,
    "VersionConflict": domain.VersionConflict,
    "TransactionAlreadyExists": domain.TransactionAlreadyExists,
    "InvalidRequest": lambda: domain.InvalidRequest("email is not valid"),
    "PayloadTooLarge": domain.PayloadTooLarge,
    "InvalidState": domain.InvalidState,
    "TermsNotAccepted": domain.TermsNotAccepted,
    "WeakPassword": domain.WeakPassword,
    "EmailTaken": domain.EmailTaken,
    "InvalidCredentials": domain.InvalidCredentials,
    "MfaRequired": domain.MfaRequired,
    "InvalidTotp": domain.InvalidTotp,
    "TotpSetupCodeWrong": domain.TotpSetupCodeWrong,
    "AccountSuspended": domain.AccountSuspended,
    "TooManyAttempts": lambda: domain.TooManyAttempts(120),
    "Unauthenticated": domain.Unauthenticated,
    "Forbidden": domain.Forbidden,
    "InvalidToken": domain.InvalidToken,
    "IdempotencyKeyRequired": domain.IdempotencyKeyRequired,
    "IdempotencyKeyReused": domain.IdempotencyKeyReused,
    "IdempotencyInProgress": domain.IdempotencyInProgress,
    "IdempotencyRaced": domain.IdempotencyRaced,
    "SessionNotFound": domain.SessionNotFound,
    "EmailUnverified": domain.EmailUnverified,
    "RecipientNotFound": domain.RecipientNotFound,
    "WithdrawalNotFound": domain.WithdrawalNotFound,
    "AdjustmentNotFound": domain.AdjustmentNotFound,
    "AmountBelowMinimum": domain.AmountBelowMinimum,
    "WithdrawalLimitExceeded": domain.WithdrawalLimitExceeded,
    "WithdrawalNotPendingReview": domain.WithdrawalNotPendingReview,
    "WithdrawalNotProcessing": domain.WithdrawalNotProcessing,
    "RateUnavailable": lambda: domain.RateUnavailable("no rate for USD/BTC"),
    "SameCurrencySwap": lambda: domain.SameCurrencySwap("a swap from USD to USD"),
    "ConvertedAmountOutOfRange": lambda: domain.ConvertedAmountOutOfRange("buys less than 1"),
    "QuoteNotFound": domain.QuoteNotFound,
    "PaymentRequestNotFound": domain.PaymentRequestNotFound,
    "PaymentRequestNotOpen": domain.PaymentRequestNotOpen,
    "QuoteExpired": domain.QuoteExpired,
    "QuoteUsed": domain.QuoteUsed,
    "InvalidWebhook": domain.InvalidWebhook,
    "WebhookEventSeen": domain.WebhookEventSeen,
    "DepositNotFound": domain.DepositNotFound,
    "RefundExceedsDeposit": domain.RefundExceedsDeposit,
    "ProviderRefused": domain.ProviderRefused,
    "ProviderUnavailable": domain.ProviderUnavailable,
    "ReconciliationNotFound": domain.ReconciliationNotFound,
    "UserNotFound": domain.UserNotFound,
    "CannotSuspendSelf": lambda: domain.CannotSuspendSelf("you cannot suspend yourself"),
    "FacilityNotFound": domain.FacilityNotFound,
    "ApiKeyNotFound": domain.ApiKeyNotFound,
    "MonitorNotFound": domain.MonitorNotFound,
    "RateLimited": lambda: domain.RateLimited(100, 42),
    "RiskDeclined": lambda: domain.RiskDeclined("rule-1"),
    "RiskCounterChanged": domain.RiskCounterChanged,
    "RulesVersionConflict": domain.RulesVersionConflict,
    "ReviewNotFound": domain.ReviewNotFound,
    "ReviewNotOpen": domain.ReviewNotOpen,
    "InvalidWebhookUrl": lambda: domain.InvalidWebhookUrl("url must be an https URL"),
    "WebhookEndpointNotFound": domain.WebhookEndpointNotFound,
    "WebhookDeliveryNotFound": domain.WebhookDeliveryNotFound,
    "PayrollNotFound": domain.PayrollNotFound,
    "PayrollChanged": domain.PayrollChanged,
}

EXPECTED = {
    "InvalidAmount": (400, "invalid_amount"),
    "UnsupportedCurrency": (400, "unsupported_currency"),
    "PostingsEmpty": (400, "invalid_request"),
    "PostingAmountZero": (400, "invalid_request"),
    "PostingsUnbalanced": (400, "invalid_request"),
    "DuplicateAccountInPostings": (400, "invalid_request"),
    "TooManyPostings": (400, "invalid_request"),
    "CurrencyMismatch": (400, "invalid_request"),
    "AccountNotFound": (404, "not_found"),
    "TransactionNotFound": (404, "not_found"),
    "InsufficientFunds": (422, "insufficient_funds"),
    "TransactionExistsWithDifferentFields": (409, "idempotency_key_reused"),
    "HoldNotPending": (409, "invalid_state"),
    "AlreadyReversed": (409, "already_reversed"),
    "NotReversible": (409, "not_reversible"),
    "VersionConflict": (409, "conflict"),
    "TransactionAlreadyExists": (409, "conflict"),
    "InvalidRequest": (400, "invalid_request"),
    "PayloadTooLarge": (413, "payload_too_large"),
    "InvalidState": (409, "invalid_state"),
    "TermsNotAccepted": (400, "terms_not_accepted"),
    "WeakPassword": (400, "weak_password"),
    "EmailTaken": (409, "email_taken"),
    "InvalidCredentials": (401, "invalid_credentials"),
    "MfaRequired": (401, "mfa_required"),
    "InvalidTotp": (401, "invalid_totp"),
    "TotpSetupCodeWrong": (400, "invalid_totp"),
    "AccountSuspended": (403, "account_suspended"),
    "TooManyAttempts": (429, "too_many_attempts"),
    "Unauthenticated": (401, "unauthenticated"),
    "Forbidden": (403, "forbidden"),
    "InvalidToken": (400, "invalid_token"),
    "IdempotencyKeyRequired": (400, "idempotency_key_required"),
    "IdempotencyKeyReused": (409, "idempotency_key_reused"),
    "IdempotencyInProgress": (409, "idempotency_in_progress"),
    "IdempotencyRaced": (409, "idempotency_in_progress"),
    "SessionNotFound": (404, "not_found"),
    "EmailUnverified": (403, "email_unverified"),
    "RecipientNotFound": (404, "recipient_not_found"),
    "WithdrawalNotFound": (404, "not_found"),
    "AdjustmentNotFound": (404, "not_found"),
    "AmountBelowMinimum": (422, "amount_below_minimum"),
    "WithdrawalLimitExceeded": (422, "withdrawal_limit_exceeded"),
    "WithdrawalNotPendingReview": (409, "invalid_state"),
    "WithdrawalNotProcessing": (409, "invalid_state"),
    "RateUnavailable": (422, "rate_unavailable"),
    "SameCurrencySwap": (400, "invalid_request"),
    "ConvertedAmountOutOfRange": (400, "invalid_amount"),
    "QuoteNotFound": (404, "not_found"),
    "PaymentRequestNotFound": (404, "not_found"),
    "PaymentRequestNotOpen": (409, "invalid_state"),
    "QuoteExpired": (410, "quote_expired"),
    "QuoteUsed": (409, "quote_used"),
    "InvalidWebhook": (400, "invalid_webhook"),
    "WebhookEventSeen": (409, "conflict"),
    "DepositNotFound": (404, "not_found"),
    "RefundExceedsDeposit": (422, "refund_exceeds_deposit"),
    "ProviderRefused": (422, "provider_refused"),
    "ProviderUnavailable": (503, "provider_unavailable"),
    "ReconciliationNotFound": (404, "not_found"),
    "UserNotFound": (404, "not_found"),
    "CannotSuspendSelf": (403, "forbidden"),
    "FacilityNotFound": (404, "not_found"),
    "ApiKeyNotFound": (404, "not_found"),
    "MonitorNotFound": (404, "not_found"),
    "RateLimited": (429, "rate_limited"),
    "RiskDeclined": (422, "risk_declined"),
    "RiskCounterChanged": (409, "conflict"),
    "RulesVersionConflict": (409, "version_conflict"),
    "ReviewNotFound": (404, "not_found"),
    "ReviewNotOpen": (409, "invalid_state"),
    "InvalidWebhookUrl": (400, "invalid_request"),
    "WebhookEndpointNotFound": (404, "not_found"),
    "WebhookDeliveryNotFound": (404, "not_found"),
    "PayrollNotFound": (404, "not_found"),
    "PayrollChanged": (409, "conflict"),
}

probe = Blueprint(__name__)


@probe.route("/domain/{name}", methods=["GET"])
def raise_domain_error(name: str) -> None:
    raise DOMAIN_ERRORS[name]()


@probe.route("/bad-request", methods=["GET"])
def raise_bad_request() -> None:
    raise BadRequestError("cursor is not valid")


@probe.route("/crash", methods=["GET"])
def crash() -> None:
    raise RuntimeError(f"could not connect to {SECRET}")


@probe.route("/echo", methods=["POST"])
def echo() -> dict:
    return {"received": probe.current_request.json_body}


@pytest.fixture(scope="module")
def probe_routes() -> Iterator[None]:
    # Once per module: Chalice consumes a blueprint's route options when it registers them, so
    # the same blueprint cannot be registered twice.
    before = set(app.routes)
    handlers_before = set(app.handler_map)
    app.register_blueprint(probe, url_prefix=PROBE_PREFIX)
    yield
    for path in set(app.routes) - before:
        del app.routes[path]
    for name in set(app.handler_map) - handlers_before:
        del app.handler_map[name]


@pytest.fixture
def client(probe_routes, api_client):
    return api_client


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json_body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert response.headers["Content-Type"] == "application/json"
    return body["error"]


def test_every_domain_error_has_an_http_mapping():
    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(c) for c in found))

    unmapped = {c.__name__ for c in subclasses(domain.LedgerError)} - {
        c.__name__ for c in errors.DOMAIN_ERRORS
    }
    assert unmapped == set()
    assert set(DOMAIN_ERRORS) == set(EXPECTED) == {c.__name__ for c in errors.DOMAIN_ERRORS}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_domain_error_raised_in_a_route_maps_through_the_one_table(client, name):
    status, code = EXPECTED[name]

    response = client.http.get(f"{PROBE_PREFIX}/domain/{name}")

    assert_envelope(response, status, code)


def test_a_domain_error_message_is_its_own_text_or_its_rule(client):
    funds = assert_envelope(
        client.http.get(f"{PROBE_PREFIX}/domain/InsufficientFunds"), 422, "insufficient_funds"
    )
    unbalanced = assert_envelope(
        client.http.get(f"{PROBE_PREFIX}/domain/PostingsUnbalanced"), 400, "invalid_request"
    )

    assert funds["message"] == "account acct_1 has insufficient available funds"
    assert unbalanced["message"] == domain.PostingsUnbalanced.__doc__


def test_a_version_conflict_says_it_is_safe_to_retry(client):
    error = assert_envelope(
        client.http.get(f"{PROBE_PREFIX}/domain/VersionConflict"), 409, "conflict"
    )

    assert "safe to retry" in error["message"]


def test_an_unexpected_exception_is_a_generic_500_logged_with_its_stack_trace(client, log_lines):
    response = client.http.get(f"{PROBE_PREFIX}/crash")

    error = assert_envelope(response, 500, "internal_error")
    assert error["message"] == errors.INTERNAL_ERROR_MESSAGE
    raw = response.body.decode()
    assert "hunter2" not in raw
    assert "Traceback" not in raw
    assert "RuntimeError" not in raw
    [logged] = [line for line in log_lines if line["message"] == "unhandled exception"]
    assert logged["level"] == "ERROR"
    assert logged["request_id"] == error["request_id"]
    assert "Traceback" in logged["exception"]
    assert "in crash" in logged["exception"]


def test_a_chalice_bad_request_error_becomes_invalid_request(client):
    error = assert_envelope(client.http.get(f"{PROBE_PREFIX}/bad-request"), 400, "invalid_request")

    assert error["message"] == "cursor is not valid"


def test_malformed_json_is_invalid_request(client):
    response = client.http.post(
        f"{PROBE_PREFIX}/echo", headers={"Content-Type": "application/json"}, body=b'{"amount": '
    )

    assert_envelope(response, 400, "invalid_request")


def test_well_formed_json_reaches_the_route(client):
    response = client.http.post(
        f"{PROBE_PREFIX}/echo",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"amount": "1.00"}).encode(),
    )

    assert response.status_code == 200
    assert response.json_body == {"received": {"amount": "1.00"}}


def test_an_unsupported_content_type_is_415(client):
    response = client.http.post(
        f"{PROBE_PREFIX}/echo", headers={"Content-Type": "text/plain"}, body=b"amount=1"
    )

    assert_envelope(response, 415, "unsupported_media_type")


def test_a_wrong_method_is_405_with_allow(client):
    response = client.http.delete("/health")

    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize("path", ["/nope", "/v1/nope/deeper", "/health/extra", "/v1?x=1"])
def test_an_unknown_route_is_404_not_found(client, path):
    error = assert_envelope(client.http.get(path), 404, "not_found")

    assert error["message"] == "No route matches this method and path."


def test_an_unknown_route_is_404_even_with_an_authorization_header(client):
    response = client.http.get("/nope", headers={"Authorization": "Bearer abc"})

    assert_envelope(response, 404, "not_found")


SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/nope"),
        ("DELETE", "/health"),
        ("GET", f"{PROBE_PREFIX}/crash"),
        ("GET", f"{PROBE_PREFIX}/domain/InsufficientFunds"),
    ],
)
def test_every_response_carries_the_security_headers_and_a_request_id(client, method, path):
    response = client.http.request(method, path)

    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["X-Request-Id"]


def test_each_request_gets_its_own_request_id(client):
    first = client.http.get("/health").headers["X-Request-Id"]
    second = client.http.get("/health").headers["X-Request-Id"]

    assert first != second


def test_api_gateway_request_id_is_used_and_logged(probe_routes, log_lines):
    event = {
        "resource": f"{PROBE_PREFIX}/domain/{{name}}",
        "path": f"{PROBE_PREFIX}/domain/InsufficientFunds",
        "httpMethod": "GET",
        "headers": {"Accept": "application/json"},
        "multiValueQueryStringParameters": None,
        "pathParameters": {"name": "InsufficientFunds"},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": f"{PROBE_PREFIX}/domain/{{name}}",
            "httpMethod": "GET",
            "requestId": "apigw-request-1",
            "path": f"/api{PROBE_PREFIX}/domain/InsufficientFunds",
        },
        "body": None,
        "isBase64Encoded": False,
    }

    class LambdaContext:
        aws_request_id = "lambda-request-1"

    response = app(event, LambdaContext())

    assert response["statusCode"] == 422
    assert response["headers"]["X-Request-Id"] == "apigw-request-1"
    assert json.loads(response["body"])["error"]["request_id"] == "apigw-request-1"
    assert log_lines
    assert {line.get("request_id") for line in log_lines} == {"apigw-request-1"}


def test_too_many_attempts_says_when_to_retry(client):
    response = client.http.get(f"{PROBE_PREFIX}/domain/TooManyAttempts")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "120"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/auth/login", {}),
        ("/v1/auth/signup", {}),
        ("/v1/transfers", {"Idempotency-Key": "deep"}),
        ("/v1/webhooks/crypto", {"X-Signature": "t=1,v1=00"}),
    ],
)
def test_json_nested_sixty_thousand_deep_is_a_400_on_any_route(api_client, path, headers):
    for body in (b"[" * 60_000, b'{"a":' * 40_000):
        response = api_client.http.post(
            path, headers={"Content-Type": "application/json", **headers}, body=body
        )
        error = assert_envelope(response, 400, "invalid_request")
        assert "nested deeper than 32 levels" in error["message"]


def test_a_body_over_256_kib_is_a_413(api_client):
    body = json.dumps({"email": "a@example.com", "password": "x" * (256 * 1024)}).encode()
    response = api_client.http.post(
        "/v1/auth/login", headers={"Content-Type": "application/json"}, body=body
    )
    assert_envelope(response, 413, "payload_too_large")


def test_the_depth_check_counts_brackets_outside_strings_only():
    from chalicelib.api.requests import MAX_JSON_DEPTH, check_body

    check_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_body(json.dumps({"memo": "[" * 1000 + '\\"{{{' + "{" * 100}).encode())
    check_body(json.dumps(["a\\", "[[[[" * 20]).encode())
    with pytest.raises(domain.InvalidRequest):
        check_body(b"[" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(domain.InvalidRequest):
        check_body(b'["\\"", ' + b"{" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(domain.PayloadTooLarge):
        check_body(b" " * (256 * 1024 + 1))
