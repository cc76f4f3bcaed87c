"""The OpenAPI 3.1 document of the API, generated from the app's own route table and models.

Every route the app serves must have an entry in ``OPERATIONS`` (a test walks the route table),
so the document cannot silently fall behind the code. The shapes are the app's own pydantic
models: request bodies the models that parse them (``*_schemas.py``, with their fields'
constraints in ``fields.py``), answers the models every route serialises with
(``responses.py``). An entry here says only what a model cannot: the summary, the statuses, who
may call it, and its query and header parameters. Imported only when ``/openapi.json`` is asked
for: pydantic's schema generation is not cold-start work.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib.api import responses as r
from chalicelib.domain.payment_requests import STATUSES as PAYMENT_REQUEST_STATUSES

INSTANT = {"type": "string", "format": "date-time", "description": "ISO-8601 UTC, with Z"}
DAY = {"type": "string", "format": "date", "description": "A UTC day, YYYY-MM-DD"}
REF_TEMPLATE = "#/components/schemas/{model}"
FACILITY_ACCESS = (
    "A facility's API key (Authorization: Bearer fk_...) with the route's scope; a user's "
    "access token answers 403. Each key may make a number of requests per minute (429 "
    "rate_limited past it, with Retry-After); every answer after authentication carries "
    "X-RateLimit-Limit and X-RateLimit-Remaining."
)

# What a route answers with: one model, or several (the document says oneOf).
Answers = type[BaseModel] | tuple[type[BaseModel], ...]


@dataclass(frozen=True)
class Op:
    """One operation: what the document says about a (method, path) the app serves."""

    summary: str
    tag: str
    status: int = 200
    body: str | None = None  # "module:Model" of the request body, parsed by the route
    returns: Answers | None = None  # the model(s) of the success body
    errors: tuple[int, ...] = ()
    access: str = "user"  # public | user | admin | facility | signed (a provider's webhook)
    idempotent: bool = False  # takes (and requires) Idempotency-Key
    key_optional: bool = False  # takes an Idempotency-Key if given (a decision's retry)
    query: tuple[str, ...] = ()
    query_types: Mapping[str, Any] = field(default_factory=dict)  # this route's own kinds
    body_optional: bool = False  # the route has a default for a missing body
    also: Mapping[int, Answers] = field(default_factory=dict)  # other success statuses
    media: tuple[str, ...] = ()  # a success body that is not JSON: its media types
    extra: dict[str, Any] = field(default_factory=dict)


M, A, F, C = (
    "chalicelib.api.money_schemas",
    "chalicelib.api.auth_schemas",
    "chalicelib.api.fx_schemas",
    "chalicelib.api.crypto_schemas",
)
RISK = "chalicelib.api.risk_schemas"
REVIEW_STATUS = {"type": "string", "enum": ["open", "approved", "rejected", "expired"]}
LIST_QUERY = ("limit", "cursor")
TXN = r.TransactionAnswer

OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/health"): Op(
        "Is this deployment able to serve",
        "health",
        returns=r.Health,
        also={503: r.Health},
        access="public",
    ),
    ("GET", "/openapi.json"): Op("This document", "health", access="public"),
    # The operator console (docs/console.md): a page and its files; it signs in through the API.
    ("GET", "/console"): Op(
        "The operator console's page", "console", access="public", media=("text/html",)
    ),
    ("GET", "/console/{asset}"): Op(
        "A script or style sheet of the operator console",
        "console",
        access="public",
        media=("text/javascript", "text/css"),
    ),
    # auth
    ("POST", "/v1/auth/signup"): Op(
        "Sign up", "auth", 201, f"{A}:SignUp", r.UserAnswer, (400, 409), "public"
    ),
    ("POST", "/v1/auth/login"): Op(
        "Log in (with a TOTP code when MFA is on)",
        "auth",
        body=f"{A}:Login",
        returns=r.TokenPair,
        errors=(401, 403, 429),
        access="public",
    ),
    ("POST", "/v1/auth/refresh"): Op(
        "Rotate a refresh token",
        "auth",
        body=f"{A}:RefreshToken",
        returns=r.TokenPair,
        errors=(401, 403),
        access="public",
    ),
    ("POST", "/v1/auth/logout"): Op(
        "Log out (revoke the refresh token)", "auth", 204, f"{A}:RefreshToken", access="public"
    ),
    ("POST", "/v1/auth/mfa/totp/setup"): Op(
        "Start TOTP set-up (needs the password)",
        "auth",
        body=f"{A}:PasswordOnly",
        returns=r.TotpSetup,
        errors=(400, 409),
    ),
    ("POST", "/v1/auth/mfa/totp/disable"): Op(
        "Turn MFA off (password and a code); other logins end",
        "auth",
        body=f"{A}:PasswordAndCode",
        returns=r.MfaOff,
        errors=(400, 409),
    ),
    ("POST", "/v1/auth/mfa/totp/confirm"): Op(
        "Confirm TOTP and turn MFA on",
        "auth",
        body=f"{A}:TotpCode",
        returns=r.MfaOn,
        errors=(400,),
    ),
    ("POST", "/v1/auth/email/verify"): Op(
        "Verify the email with a mailed token",
        "auth",
        body=f"{A}:VerifyToken",
        returns=r.UserAnswer,
        errors=(400,),
        access="public",
    ),
    ("POST", "/v1/auth/email/verify/resend"): Op(
        "Mail another verification link (at most 3 per hour)", "auth", 202, returns=r.Accepted
    ),
    ("POST", "/v1/auth/password/forgot"): Op(
        "Mail a password reset token",
        "auth",
        202,
        f"{A}:Forgot",
        r.Accepted,
        access="public",
    ),
    ("POST", "/v1/auth/password/reset"): Op(
        "Reset the password with a mailed token",
        "auth",
        204,
        f"{A}:Reset",
        errors=(400,),
        access="public",
    ),
    ("GET", "/v1/me"): Op("The caller", "auth", returns=r.UserAnswer),
    ("GET", "/v1/me/sessions"): Op(
        "The caller's live logins", "auth", returns=r.SessionPage, query=LIST_QUERY
    ),
    ("POST", "/v1/me/sessions/{session_id}/revoke"): Op(
        "End one of the caller's logins at once", "auth", 204, errors=(404,)
    ),
    # accounts and history
    ("GET", "/v1/accounts"): Op(
        "The caller's accounts, one per currency",
        "accounts",
        returns=r.AccountList,
    ),
    ("GET", "/v1/accounts/{account_id}"): Op(
        "One of the caller's accounts", "accounts", returns=r.AccountAnswer
    ),
    ("GET", "/v1/accounts/{account_id}/entries"): Op(
        "An account's history, newest first",
        "accounts",
        returns=r.EntryPage,
        query=(*LIST_QUERY, "from", "to"),
    ),
    ("GET", "/v1/transactions"): Op(
        "The caller's transactions, newest first",
        "accounts",
        returns=r.TransactionPage,
        query=(*LIST_QUERY, "from", "to"),
    ),
    ("GET", "/v1/transactions/{transaction_id}"): Op(
        "One of the caller's transactions", "accounts", returns=TXN
    ),
    # moving money
    ("POST", "/v1/transfers"): Op(
        "Send money to a user (transfer) or a facility (payment); 202 when a risk rule holds it "
        "for review, 422 risk_declined when one declines it",
        "money",
        201,
        f"{M}:Transfer",
        TXN,
        (400, 404, 409, 422),
        idempotent=True,
        also={202: r.ReviewedTransactionAnswer},
    ),
    ("GET", "/v1/facilities"): Op(
        "Facilities that can be paid", "money", returns=r.FacilityPage, query=LIST_QUERY
    ),
    ("POST", "/v1/fx/quotes"): Op(
        "Quote a currency swap (valid 60 s)",
        "fx",
        201,
        f"{F}:NewQuote",
        r.QuoteAnswer,
        (400, 422),
    ),
    ("POST", "/v1/fx/swaps"): Op(
        "Execute a quote",
        "fx",
        201,
        f"{F}:NewSwap",
        TXN,
        (404, 409, 410, 422),
        idempotent=True,
    ),
    ("POST", "/v1/withdrawals"): Op(
        "Ask to withdraw crypto (the amount is held at once)",
        "withdrawals",
        201,
        f"{M}:NewWithdrawal",
        r.WithdrawalAnswer,
        (400, 422),
        idempotent=True,
    ),
    ("GET", "/v1/withdrawals/{withdrawal_id}"): Op(
        "One of the caller's withdrawals", "withdrawals", returns=r.WithdrawalAnswer
    ),
    ("POST", "/v1/withdrawals/{withdrawal_id}/cancel"): Op(
        "Cancel a withdrawal still pending review",
        "withdrawals",
        returns=r.WithdrawalAnswer,
        errors=(409,),
        key_optional=True,
    ),
    # deposits and webhooks
    ("POST", "/v1/deposits/card"): Op(
        "Start a card deposit (a Stripe PaymentIntent)",
        "deposits",
        201,
        f"{M}:NewCardDeposit",
        r.NewDepositAnswer,
        (400, 422),
        idempotent=True,
    ),
    ("GET", "/v1/deposits/{deposit_id}"): Op(
        "One of the caller's card deposits", "deposits", returns=r.DepositAnswer
    ),
    ("POST", "/v1/deposits/crypto/address"): Op(
        "The caller's deposit address for a currency",
        "deposits",
        body=f"{C}:AddressRequest",
        returns=r.AddressAnswer,
        errors=(400,),
    ),
    ("POST", "/v1/webhooks/stripe"): Op(
        "Stripe's events (Stripe-Signature)",
        "webhooks",
        returns=r.Received,
        errors=(400,),
        access="signed",
    ),
    ("POST", "/v1/webhooks/crypto"): Op(
        "The crypto gateway's events (X-Signature)",
        "webhooks",
        returns=r.CryptoReceived,
        errors=(400,),
        access="signed",
    ),
    # admin
    ("POST", "/v1/admin/facilities"): Op(
        "Create a facility (one account per currency)",
        "admin",
        201,
        f"{M}:NewFacility",
        r.FacilityAnswer,
        access="admin",
    ),
    ("GET", "/v1/admin/risk/rules"): Op(
        "The risk rule set and its version", "risk", returns=r.RiskRules, access="admin"
    ),
    ("PUT", "/v1/admin/risk/rules"): Op(
        "Replace the risk rule set (audited); 409 version_conflict if it changed since version",
        "risk",
        body=f"{RISK}:RulesChange",
        returns=r.RiskRules,
        errors=(400, 409),
        access="admin",
    ),
    ("GET", "/v1/admin/reviews"): Op(
        "The risk review queue, newest first",
        "risk",
        returns=r.ReviewPage,
        query=(*LIST_QUERY, "status"),
        query_types={"status": REVIEW_STATUS},
        access="admin",
    ),
    ("POST", "/v1/admin/reviews/{review_id}/approve"): Op(
        "Approve a review: the held money moves (the hold is posted)",
        "risk",
        body=f"{RISK}:RequestBody",
        returns=r.ReviewedTransactionAnswer,
        errors=(404, 409),
        access="admin",
        body_optional=True,
    ),
    ("POST", "/v1/admin/reviews/{review_id}/reject"): Op(
        "Reject a review: the hold is released",
        "risk",
        body=f"{RISK}:ReviewRejection",
        returns=r.ReviewedTransactionAnswer,
        errors=(400, 404, 409),
        access="admin",
    ),
    ("GET", "/v1/admin/withdrawals"): Op(
        "The withdrawal review queue",
        "admin",
        returns=r.QueuedWithdrawalPage,
        query=(*LIST_QUERY, "status"),
        access="admin",
    ),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/approve"): Op(
        "Approve a withdrawal: the payout goes to the gateway",
        "admin",
        returns=r.WithdrawalAnswer,
        errors=(409,),
        access="admin",
        key_optional=True,
    ),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/reject"): Op(
        "Reject a withdrawal: the hold is released",
        "admin",
        body=f"{M}:Rejection",
        returns=r.WithdrawalAnswer,
        errors=(409,),
        access="admin",
        key_optional=True,
    ),
    ("POST", "/v1/admin/deposits/{deposit_id}/refunds"): Op(
        "Refund a card deposit (all that is left when amount is omitted)",
        "admin",
        201,
        f"{M}:NewRefund",
        r.RefundAnswer,
        (404, 409, 422, 503),
        "admin",
        idempotent=True,
    ),
    ("GET", "/v1/admin/users"): Op(
        "Users by email (case-insensitive prefix filter), with their status",
        "admin",
        returns=r.ManagedUserPage,
        query=(*LIST_QUERY, "email"),
        access="admin",
    ),
    ("POST", "/v1/admin/users/{user_id}/suspend"): Op(
        "Suspend a user: no login, refresh or money route, old tokens included",
        "admin",
        body="chalicelib.api.admin_schemas:Suspension",
        returns=r.ManagedUserAnswer,
        errors=(409,),
        access="admin",
    ),
    ("POST", "/v1/admin/users/{user_id}/unsuspend"): Op(
        "Unsuspend a user",
        "admin",
        returns=r.ManagedUserAnswer,
        errors=(409,),
        access="admin",
    ),
    ("POST", "/v1/admin/users/{user_id}/role"): Op(
        "Make a user an admin, or a user again (not one's own role)",
        "admin",
        body="chalicelib.api.admin_schemas:RoleChange",
        returns=r.ManagedUserAnswer,
        errors=(400, 404, 409),
        access="admin",
    ),
    ("GET", "/v1/admin/transactions/{transaction_id}"): Op(
        "Any transaction", "admin", returns=TXN, access="admin"
    ),
    ("POST", "/v1/admin/transactions/{transaction_id}/rollback"): Op(
        "Roll back a posted transaction: a linked reversal (force: may overdraw, flagged)",
        "admin",
        201,
        "chalicelib.api.admin_schemas:Rollback",
        TXN,
        (404, 409, 422),
        "admin",
        idempotent=True,
    ),
    ("POST", "/v1/admin/adjustments"): Op(
        "Adjust an account against the platform's adjustment account (four eyes above a threshold)",
        "admin",
        201,
        "chalicelib.api.admin_schemas:NewAdjustment",
        TXN,
        (404, 422),
        "admin",
        idempotent=True,
        also={202: r.AdjustmentAnswer},
        extra={
            "description": "At or above the approval threshold (USD-equivalent) the answer is "
            "202 with the adjustment pending approval, and no money moves until another admin "
            "approves it."
        },
    ),
    ("POST", "/v1/admin/adjustments/{adjustment_id}/approve"): Op(
        "Approve another admin's adjustment: it posts, once",
        "admin",
        201,
        returns=TXN,
        errors=(403, 404, 409, 422),
        access="admin",
    ),
    ("GET", "/v1/admin/audit"): Op(
        "Audit events, oldest first (from defaults to 24 h before to; to to now)",
        "admin",
        returns=r.AuditEventPage,
        query=(*LIST_QUERY, "from", "to", "actor_id", "action"),
        access="admin",
    ),
    ("GET", "/v1/admin/audit/chain"): Op(
        "Recompute the daily audit digest chain; names the first broken day",
        "admin",
        returns=r.VerificationAnswer,
        query=("from", "to"),
        query_types={"from": {"type": "string", "format": "date"}, "to": DAY},
        access="admin",
        extra={"description": "from / to are dates (YYYY-MM-DD); to defaults to yesterday."},
    ),
    ("POST", "/v1/admin/reconciliations"): Op(
        "Run the reconciliation of a day (default: yesterday, UTC)",
        "admin",
        201,
        "chalicelib.api.reconciliation_schemas:RunReconciliation",
        r.ReportAnswer,
        access="admin",
        body_optional=True,
        also={202: r.RunningReportAnswer},
        extra={"description": "Today runs as a partial day; a future date is refused (400)."},
    ),
    ("GET", "/v1/admin/reconciliations/{date}"): Op(
        "The report of a day's reconciliation",
        "admin",
        returns=(r.ReportAnswer, r.RunningReportAnswer),
        errors=(400, 404),
        access="admin",
    ),
}

# Facilities' API access (API.md, "Facilities").
FK = "chalicelib.api.facility_schemas"
OPERATIONS.update(
    {
        ("POST", "/v1/admin/facilities/{facility_id}/api-keys"): Op(
            "Issue an API key for a facility (its secret is in this answer only)",
            "facilities",
            201,
            f"{FK}:NewApiKey",
            r.NewApiKeyAnswer,
            access="admin",
        ),
        ("GET", "/v1/admin/facilities/{facility_id}/api-keys"): Op(
            "A facility's API keys (never their secrets)",
            "facilities",
            returns=r.ApiKeyPage,
            access="admin",
        ),
        ("POST", "/v1/admin/facilities/{facility_id}/api-keys/{key_id}/revoke"): Op(
            "Revoke an API key: its next request is refused",
            "facilities",
            body=f"{FK}:RequestBody",
            returns=r.ApiKeyAnswer,
            access="admin",
            body_optional=True,
        ),
        ("GET", "/v1/facility"): Op(
            "The calling facility and its accounts (scope read)",
            "facility",
            returns=r.FacilityOverview,
            access="facility",
        ),
        ("GET", "/v1/facility/transactions"): Op(
            "The calling facility's transactions, newest first (scope read)",
            "facility",
            returns=r.TransactionPage,
            access="facility",
            query=(*LIST_QUERY, "from", "to"),
        ),
    }
)

# Payment requests (API.md, "Facilities"): the facility's side and the payer's.
PR = "chalicelib.api.payment_request_schemas"
PR_ANSWER = r.PaymentRequestAnswer
OPERATIONS.update(
    {
        ("POST", "/v1/facility/payment-requests"): Op(
            "Ask a user (by verified email) to pay the facility (scope payment_requests)",
            "facility",
            201,
            f"{PR}:NewPaymentRequest",
            PR_ANSWER,
            (404, 409),
            access="facility",
            key_optional=True,
            extra={
                "description": FACILITY_ACCESS
                + " Idempotency-Key is optional (nothing is reserved): with one, a retry with "
                "the same body answers the same request, and another body 409 "
                "idempotency_key_reused. An unknown or unverified payer_email: 404 "
                "recipient_not_found."
            },
        ),
        ("GET", "/v1/facility/payment-requests"): Op(
            "The calling facility's payment requests, newest first (scope payment_requests)",
            "facility",
            returns=r.PaymentRequestPage,
            access="facility",
            query=(*LIST_QUERY, "status", "from", "to"),
            query_types={"status": {"type": "string", "enum": list(PAYMENT_REQUEST_STATUSES)}},
        ),
        ("GET", "/v1/facility/payment-requests/{request_id}"): Op(
            "One of the calling facility's payment requests (scope payment_requests)",
            "facility",
            returns=PR_ANSWER,
            access="facility",
        ),
        ("POST", "/v1/facility/payment-requests/{request_id}/cancel"): Op(
            "Cancel an open payment request (scope payment_requests)",
            "facility",
            body=f"{PR}:RequestBody",
            returns=PR_ANSWER,
            errors=(409,),
            access="facility",
            key_optional=True,
            body_optional=True,
        ),
        ("GET", "/v1/payment-requests"): Op(
            "The payment requests addressed to the caller, newest first",
            "payment requests",
            returns=r.PaymentRequestPage,
            query=(*LIST_QUERY, "status", "from", "to"),
            query_types={"status": {"type": "string", "enum": list(PAYMENT_REQUEST_STATUSES)}},
        ),
        ("GET", "/v1/payment-requests/{request_id}"): Op(
            "One of the payment requests addressed to the caller",
            "payment requests",
            returns=PR_ANSWER,
        ),
        ("POST", "/v1/payment-requests/{request_id}/pay"): Op(
            "Pay a payment request: a payment to the facility, once; 202 when a risk rule holds "
            "it for review (the request stays open, with review_id), 422 risk_declined when one "
            "declines it",
            "payment requests",
            201,
            f"{PR}:RequestBody",
            PR_ANSWER,
            (404, 409, 422),
            idempotent=True,
            body_optional=True,
            also={202: r.ReviewedPaymentRequestAnswer},
        ),
        ("POST", "/v1/payment-requests/{request_id}/decline"): Op(
            "Decline a payment request",
            "payment requests",
            body=f"{PR}:RequestBody",
            returns=PR_ANSWER,
            errors=(404, 409),
            key_optional=True,
            body_optional=True,
        ),
    }
)

# A facility's outbound webhooks (API.md, "Outbound webhooks").
WH = "chalicelib.api.webhook_schemas"
OPERATIONS.update(
    {
        ("POST", "/v1/facility/webhook-endpoints"): Op(
            "Register a webhook endpoint (scope webhooks; its secret is in this answer only)",
            "facility",
            201,
            f"{WH}:NewWebhookEndpoint",
            r.NewWebhookEndpointAnswer,
            errors=(400,),
            access="facility",
        ),
        ("GET", "/v1/facility/webhook-endpoints"): Op(
            "The calling facility's webhook endpoints, newest first (scope webhooks)",
            "facility",
            returns=r.WebhookEndpointPage,
            access="facility",
        ),
        ("POST", "/v1/facility/webhook-endpoints/{endpoint_id}/disable"): Op(
            "Disable a webhook endpoint: nothing more is sent to it (scope webhooks)",
            "facility",
            body=f"{WH}:RequestBody",
            returns=r.WebhookEndpointAnswer,
            errors=(404,),
            access="facility",
            body_optional=True,
        ),
        ("GET", "/v1/facility/webhook-deliveries"): Op(
            "The calling facility's webhook deliveries, newest first (scope webhooks)",
            "facility",
            returns=r.WebhookDeliveryPage,
            errors=(400,),
            access="facility",
            query=(*LIST_QUERY, "endpoint_id"),
        ),
        ("POST", "/v1/facility/webhook-deliveries/{delivery_id}/retry"): Op(
            "Attempt a delivery again now, within the request, with the same event id (scope "
            "webhooks)",
            "facility",
            202,
            f"{WH}:RequestBody",
            r.WebhookDeliveryAnswer,
            errors=(404, 409),
            access="facility",
            body_optional=True,
        ),
    }
)

# Payroll payouts (API.md, "Facilities"; docs/facilities.md, "Payroll payouts").
PR = "chalicelib.api.payroll_schemas"
OPERATIONS.update(
    {
        ("POST", "/v1/facility/payouts"): Op(
            "Pay staff in one batch: all or nothing on funds, each item once (scope payouts)",
            "facility",
            201,
            f"{PR}:NewPayroll",
            r.PayrollAnswer,
            (400, 404, 409, 422),
            access="facility",
            idempotent=True,
        ),
        ("GET", "/v1/facility/payouts"): Op(
            "The calling facility's payout batches, newest first (scope payouts)",
            "facility",
            returns=r.PayrollPage,
            access="facility",
            query=(*LIST_QUERY, "from", "to"),
        ),
        ("GET", "/v1/facility/payouts/{payout_id}"): Op(
            "One of the calling facility's payout batches and its items (scope payouts)",
            "facility",
            returns=r.PayrollAnswer,
            errors=(404,),
            access="facility",
        ),
    }
)

# OpenAPI links: what a client (or a stateful fuzzer) does next with an answer, by the id in it.
# (source method, path) -> link name -> (target method, path, parameters, request body or None).
Link = tuple[str, str, Mapping[str, str], Mapping[str, str] | None]
LINKS: Mapping[tuple[str, str], Mapping[str, Link]] = {
    ("POST", "/v1/transfers"): {
        "GetTransaction": (
            "GET",
            "/v1/transactions/{transaction_id}",
            {"transaction_id": "$response.body#/transaction/id"},
            None,
        ),
    },
    ("POST", "/v1/fx/quotes"): {
        "Swap": ("POST", "/v1/fx/swaps", {}, {"quote_id": "$response.body#/quote/id"}),
    },
    ("POST", "/v1/withdrawals"): {
        "GetWithdrawal": (
            "GET",
            "/v1/withdrawals/{withdrawal_id}",
            {"withdrawal_id": "$response.body#/withdrawal/id"},
            None,
        ),
        "CancelWithdrawal": (
            "POST",
            "/v1/withdrawals/{withdrawal_id}/cancel",
            {"withdrawal_id": "$response.body#/withdrawal/id"},
            None,
        ),
    },
    ("POST", "/v1/deposits/card"): {
        "GetDeposit": (
            "GET",
            "/v1/deposits/{deposit_id}",
            {"deposit_id": "$response.body#/deposit/id"},
            None,
        ),
    },
    ("POST", "/v1/admin/adjustments"): {
        "GetTransaction": (
            "GET",
            "/v1/admin/transactions/{transaction_id}",
            {"transaction_id": "$response.body#/transaction/id"},
            None,
        ),
    },
}

ERROR_TEXT = {
    400: "Bad request (invalid_request, invalid_amount, unsupported_currency, ...)",
    401: "Not authenticated",
    403: "Forbidden or suspended",
    404: "Not found",
    409: "Conflict (state, idempotency key)",
    410: "Gone (an expired quote)",
    422: "Refused by a ledger rule (insufficient_funds, ...)",
    429: "Too many attempts (too_many_attempts), or an API key's requests (rate_limited)",
    503: "A dependency is unavailable; safe to retry",
}
SUCCESS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted: under way, or waiting for someone",
    204: "Done",
    503: "Not able to serve (the table cannot be reached)",
}
QUERY_SCHEMAS = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "cursor": {
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
        "description": "next_cursor of the previous page, as given",
    },
    "from": INSTANT,
    "to": INSTANT,
}


def _path_schemas() -> dict[str, dict[str, Any]]:
    from chalicelib.api.console import asset_names

    return {"date": DAY, "asset": {"type": "string", "enum": sorted(asset_names())}}


PATH_SCHEMAS = _path_schemas()


def _request_schema(spec: str) -> dict[str, Any]:
    module, name = spec.split(":")
    schema = getattr(importlib.import_module(module), name).model_json_schema()
    schema.pop("title", None)
    # A nested model's schema sits in the body's own "$defs", which a reference resolved against
    # the OpenAPI document cannot reach: each one is put where it is used.
    return _inline_defs(schema, schema.pop("$defs", {}))


def _inline_defs(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline_defs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline_defs(defs[ref.removeprefix("#/$defs/")], defs)
    return {key: _inline_defs(value, defs) for key, value in node.items()}


def _content(answers: Answers, refs: Mapping[type[BaseModel], dict[str, str]]) -> dict[str, Any]:
    if isinstance(answers, tuple):
        schema: dict[str, Any] = {"oneOf": [refs[model] for model in answers]}
    else:
        schema = refs[answers]
    return {"application/json": {"schema": schema}}


def _successes(op: Op, refs: Mapping[type[BaseModel], dict[str, str]]) -> dict[str, dict[str, Any]]:
    answers: dict[int, Answers | None] = {op.status: op.returns, **op.also}
    out: dict[str, dict[str, Any]] = {}
    for status, model in sorted(answers.items()):
        response: dict[str, Any] = {"description": SUCCESS_TEXT.get(status, "OK")}
        if op.media:
            response["content"] = {m: {"schema": {"type": "string"}} for m in op.media}
        elif model is not None:
            response["content"] = _content(model, refs)
        elif status != 204:
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        out[str(status)] = response
    return out


def _parameters(path: str, op: Op) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            schema = PATH_SCHEMAS.get(name) or {"type": "string"}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name in op.query:
        schema = op.query_types.get(name) or QUERY_SCHEMAS.get(name, {"type": "string"})
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    if op.idempotent or op.key_optional:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": op.idempotent,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Required: the retry of this request gets its first answer"
                if op.idempotent
                else "Optional: with it, the retry of a request whose answer was lost gets what "
                "the first one did (the decision, the payment request it created) instead of "
                "409 invalid_state or a second one",
            }
        )
    if op.access == "signed":
        header = "Stripe-Signature" if "stripe" in path else "X-Signature"
        params.append(
            {"name": header, "in": "header", "required": True, "schema": {"type": "string"}}
        )
    return params


def _operation(
    method: str,
    path: str,
    op: Op,
    view_name: str,
    refs: Mapping[type[BaseModel], dict[str, str]],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": view_name,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(path, op),
        "responses": _successes(op, refs),
    }
    errors = set(op.errors)
    if op.body is not None:
        body = _request_schema(op.body)
        operation["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": body}},
        }
        errors.add(400)
        if "password" in body.get("properties", {}):
            errors.add(429)  # wrong passwords count towards the login throttle
    if op.query:
        errors.add(400)  # a malformed limit, cursor or instant
    if op.access in ("user", "admin"):
        operation["security"] = [{"bearer": []}]
        errors.update((401, 403))
    elif op.access == "facility":
        operation["security"] = [{"facilityKey": []}]
        errors.update((401, 403, 429))
    else:
        operation["security"] = []
    if op.idempotent or op.key_optional:
        errors.update((400, 409))
    if path not in ("/health", "/openapi.json", "/console"):
        errors.add(404)
    for status in sorted(errors):
        operation["responses"][str(status)] = {
            "description": ERROR_TEXT[status],
            "content": _content(r.Error, refs),
        }
    if op.access == "admin":
        operation["description"] = "Role admin and an access token obtained with a TOTP code."
    if op.access == "facility":
        operation["description"] = FACILITY_ACCESS
        _rate_limit_headers(operation["responses"])
    operation.update(op.extra)
    return operation


_COUNT = {"type": "integer", "minimum": 0}


def _rate_limit_headers(responses: dict[str, Any]) -> None:
    """A facility route's answers (all but 401: no key was counted) carry the key's limit."""
    for status, response in responses.items():
        if status == "401":
            continue
        headers = {
            "X-RateLimit-Limit": {"description": "requests per minute", "schema": _COUNT},
            "X-RateLimit-Remaining": {"description": "left this minute", "schema": _COUNT},
        }
        if status == "429":
            headers["Retry-After"] = {"description": "seconds to the next minute", "schema": _COUNT}
        response["headers"] = headers


def _answer_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [r.Error]
    for op in OPERATIONS.values():
        for answers in (op.returns, *op.also.values()):
            if answers is None:
                continue
            for model in answers if isinstance(answers, tuple) else (answers,):
                if model not in found:
                    found.append(model)
    return found


def _components() -> tuple[dict[type[BaseModel], dict[str, str]], dict[str, Any]]:
    """Each answer model's reference, and the schemas of every model they use (by name)."""
    models = _answer_models()
    keys, top = models_json_schema(
        [(model, "serialization") for model in models], ref_template=REF_TEMPLATE
    )
    refs = {model: keys[(model, "serialization")] for model in models}
    schemas = top.get("$defs", {})
    for schema in schemas.values():
        _drop_titles(schema)
    return refs, dict(sorted(schemas.items()))


def _drop_titles(schema: Any) -> None:
    """pydantic titles every property after its name: noise in a document that has the names."""
    if isinstance(schema, dict):
        for name, value in schema.items():
            if name == "properties" and isinstance(value, dict):
                for prop in value.values():
                    prop.pop("title", None)
                    _drop_titles(prop)
            elif name != "title":
                _drop_titles(value)
    elif isinstance(schema, list):
        for item in schema:
            _drop_titles(item)


def _link(
    paths: Mapping[str, Any],
    method: str,
    path: str,
    parameters: Mapping[str, str],
    body: Mapping[str, str] | None,
) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": paths[path][method.lower()]["operationId"]}
    if parameters:
        link["parameters"] = dict(parameters)
    if body is not None:
        link["requestBody"] = dict(body)
    return link


def document(routes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The document for a Chalice route table (``app.routes``: path -> method -> entry)."""
    refs, schemas = _components()
    paths: dict[str, dict[str, Any]] = {}
    for path in sorted(routes):
        for method, entry in sorted(routes[path].items()):
            op = OPERATIONS.get((method, path))
            if op is None:
                raise KeyError(f"{method} {path} has no entry in openapi_spec.OPERATIONS")
            paths.setdefault(path, {})[method.lower()] = _operation(
                method, path, op, entry.view_name, refs
            )
    for (method, path), links in LINKS.items():
        source = paths[path][method.lower()]
        success = source["responses"][str(OPERATIONS[(method, path)].status)]
        success["links"] = {
            name: _link(paths, target_method, target_path, parameters, body)
            for name, (target_method, target_path, parameters, body) in links.items()
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ledger API",
            "version": "1",
            "description": (
                "A double-entry payments ledger. Amounts are decimal strings in major units; "
                "errors have the shape {error: {code, message, request_id}}; every POST that "
                "moves or reserves money takes an Idempotency-Key."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "facilityKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A facility's API key secret (fk_<prefix>_<random>)",
                },
            },
        },
    }


OPERATIONS.update(
    {
        ("POST", "/v1/admin/monitors"): Op(
            "Create a balance monitor: an account (account_id) or a platform account "
            "(platform, currency) below or above a threshold, checked every 5 minutes",
            "admin",
            201,
            "chalicelib.api.admin_schemas:NewMonitor",
            r.MonitorAnswer,
            access="admin",
        ),
        ("GET", "/v1/admin/monitors"): Op(
            "Balance monitors, oldest first, with their state (ok or crossed)",
            "admin",
            returns=r.MonitorPage,
            query=LIST_QUERY,
            access="admin",
        ),
        ("POST", "/v1/admin/monitors/{monitor_id}/disable"): Op(
            "Disable a balance monitor: it is no longer checked (it stays listed)",
            "admin",
            body="chalicelib.api.admin_schemas:RequestBody",
            returns=r.MonitorAnswer,
            access="admin",
            body_optional=True,
        ),
    }
)
