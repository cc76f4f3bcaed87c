"""The OpenAPI 3.1 document of the API, built from the app's own route table.

Every route the app serves must have an entry in ``OPERATIONS`` (a test walks the route table),
so the document cannot silently fall behind the code. Request bodies come from the same pydantic
models that parse them (``model_json_schema``), with the fields the domain validates itself
(amounts, currencies, taken as ``Any`` by the models) described as the contract says. Imported
only when ``/openapi.json`` is asked for: pydantic's schema generation is not cold-start work.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.users import EMAIL_ADDRESS

AMOUNT = {
    "type": "string",
    "pattern": r"^[0-9]{1,18}(\.[0-9]{1,18})?$",
    "description": 'Decimal string in major units, e.g. "12.34" USD; never a JSON number.',
    "examples": ["12.34"],
}
SIGNED_AMOUNT = {"type": "string", "description": "Signed decimal string; negative = money out."}
CURRENCY = {"type": "string", "enum": ["USD", "BTC", "ETH", "USDT"]}
INSTANT = {"type": "string", "format": "date-time", "description": "ISO-8601 UTC, with Z"}
NULLABLE_STRING = {"type": ["string", "null"]}
DAY = {"type": "string", "format": "date", "description": "A UTC day, YYYY-MM-DD"}
NULLABLE_INSTANT = {**INSTANT, "type": ["string", "null"]}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` and every object in it with no property it does not name: an answer that
    grows a field the document does not have fails the tests (the story in
    tests/api/test_openapi.py, Schemathesis's response check) instead of drifting silently."""
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
        for value in schema["properties"].values():
            _closed(value)
    if isinstance(schema.get("items"), dict):
        _closed(schema["items"])
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        ["error"],
        error=_obj(
            ["code", "message", "request_id"],
            code={"type": "string", "examples": ["insufficient_funds"]},
            message={"type": "string"},
            request_id={"type": "string"},
            details={"type": "array", "items": {"type": "object"}},
        ),
    ),
    "User": _obj(
        ["id", "email", "role"],
        id={"type": "string"},
        email={"type": "string", "pattern": f"^{EMAIL_ADDRESS}$"},
        role={"type": "string", "enum": ["user", "admin"]},
        status={"type": "string", "enum": ["active", "suspended"]},
        terms_accepted_at=INSTANT,
        mfa_enabled={"type": "boolean"},
        email_verified={"type": "boolean"},
        created_at=INSTANT,
        # in the admin's views (GET /v1/admin/users, suspend, unsuspend, role) only
        suspended_at=NULLABLE_INSTANT,
        suspended_by=NULLABLE_STRING,
        suspension_reason=NULLABLE_STRING,
    ),
    "Session": _obj(
        ["id", "created_at", "last_used_at", "mfa", "current"],
        id={"type": "string"},
        created_at=INSTANT,
        last_used_at=INSTANT,
        ip={"type": ["string", "null"]},
        user_agent={"type": ["string", "null"]},
        mfa={"type": "boolean"},
        current={"type": "boolean"},
    ),
    "TokenPair": _obj(
        ["access_token", "refresh_token", "token_type", "expires_in"],
        access_token={"type": "string"},
        refresh_token={"type": "string"},
        token_type={"const": "Bearer"},
        expires_in={"type": "integer"},
    ),
    "Account": _obj(
        ["id", "currency", "posted", "available", "pending_outgoing", "pending_incoming"],
        id={"type": "string"},
        currency=CURRENCY,
        posted=SIGNED_AMOUNT,
        available=SIGNED_AMOUNT,
        pending_outgoing=AMOUNT,
        pending_incoming=AMOUNT,
        overdrawn_by_force={"type": "boolean"},
        flags={"type": "array", "items": {"type": "string", "enum": ["forced_negative"]}},
        created_at=INSTANT,
    ),
    "Entry": _obj(
        ["transaction_id", "type", "amount", "balance_after", "created_at"],
        transaction_id={"type": "string"},
        type={"type": "string"},
        amount=SIGNED_AMOUNT,
        balance_after=SIGNED_AMOUNT,
        created_at=INSTANT,
        memo={"type": "string"},
        seq={"type": "integer", "description": "the entry's place in its account's history"},
    ),
    "Transaction": _obj(
        ["id", "type", "status", "created_at", "postings"],
        id={"type": "string"},
        type={
            "type": "string",
            "enum": [
                "transfer",
                "payment",
                "deposit",
                "swap",
                "withdrawal",
                "refund",
                "reversal",
                "adjustment",
            ],
        },
        status={"type": "string", "enum": ["pending", "posted", "voided"]},
        created_at=INSTANT,
        resolved_at=NULLABLE_INSTANT,
        forced={"type": "boolean", "description": "a rollback forced past an account's funds"},
        postings={
            "type": "array",
            "items": _obj(
                ["account_id", "currency", "amount"],
                account_id={"type": "string"},
                currency=CURRENCY,
                amount=SIGNED_AMOUNT,
            ),
        },
        reverses=NULLABLE_STRING,
        reversed_by=NULLABLE_STRING,
        memo={"type": "string"},
        metadata={"type": "object", "additionalProperties": {"type": "string"}},
    ),
    "Facility": _obj(["id", "name"], id={"type": "string"}, name={"type": "string"}),
    "Quote": _obj(
        ["id", "from_currency", "to_currency", "from_amount", "to_amount", "rate", "expires_at"],
        id={"type": "string"},
        from_currency=CURRENCY,
        to_currency=CURRENCY,
        from_amount=AMOUNT,
        to_amount=AMOUNT,
        rate={"type": "string"},
        created_at=INSTANT,
        expires_at=INSTANT,
    ),
    "Withdrawal": _obj(
        ["id", "status", "amount", "currency", "destination", "transaction_id"],
        id={"type": "string"},
        status={
            "type": "string",
            "enum": [
                "pending_review",
                "processing",
                "completed",
                "rejected",
                "cancelled",
                "failed",
                "expired",
            ],
        },
        amount=AMOUNT,
        currency=CURRENCY,
        destination={"type": "string"},
        transaction_id={"type": "string"},
        created_at=INSTANT,
        decided_at=NULLABLE_INSTANT,
        reason=NULLABLE_STRING,
        user_id={"type": "string", "description": "in the admin's review queue only"},
    ),
    "Deposit": _obj(
        ["id", "status", "amount", "currency"],
        id={"type": "string"},
        status={
            "type": "string",
            "enum": ["pending", "succeeded", "failed", "refunded", "partially_refunded"],
        },
        amount=AMOUNT,
        currency=CURRENCY,
        payment_intent_id=NULLABLE_STRING,
        client_secret={"type": "string", "description": "only in the answer that created it"},
        created_at=INSTANT,
        credited_amount={**AMOUNT, "type": ["string", "null"]},
        refunded_amount=AMOUNT,
    ),
    "Refund": _obj(
        ["id", "deposit_id", "amount", "status"],
        id={"type": "string"},
        deposit_id={"type": "string"},
        amount=AMOUNT,
        currency=CURRENCY,
        status={"type": "string", "enum": ["pending", "succeeded", "failed"]},
        reason={"type": "string"},
        transaction_id={"type": "string"},
        stripe_refund_id=NULLABLE_STRING,
        failure_reason=NULLABLE_STRING,
        created_at=INSTANT,
    ),
    "Address": _obj(["currency", "address"], currency=CURRENCY, address={"type": "string"}),
    "AuditEvent": _obj(
        ["id", "at", "actor_id", "action", "target", "ip", "details"],
        id={"type": "string"},
        at=INSTANT,
        actor_id=NULLABLE_STRING,
        action={"type": "string"},
        target=NULLABLE_STRING,
        ip=NULLABLE_STRING,
        details={"type": "object"},
    ),
    "Report": _obj(
        [
            "date",
            "status",
            "transactions_checked",
            "accounts_checked",
            "trial_balance",
            "mismatches",
            "stripe",
        ],
        date={"type": "string", "format": "date"},
        status={"type": "string", "enum": ["ok", "mismatch"]},
        transactions_checked={"type": "integer"},
        accounts_checked={"type": "integer"},
        trial_balance={"type": "object", "additionalProperties": {"type": "string"}},
        mismatches={"type": "array", "items": {"type": "object"}},
        stripe={"type": "object"},
    ),
    "Health": _obj(
        ["status", "checks"],
        status={"type": "string", "enum": ["ok", "degraded"]},
        checks={"type": "object", "additionalProperties": {"type": "string"}},
    ),
}
for _schema in SCHEMAS.values():
    _closed(_schema)


@dataclass(frozen=True)
class Op:
    """One operation: what the document says about a (method, path) the app serves."""

    summary: str
    tag: str
    status: int = 200
    body: str | None = None  # "module:Model" of the request body, parsed by the route
    returns: Mapping[str, Any] | None = None  # the success body's properties
    errors: tuple[int, ...] = ()
    access: str = "user"  # public | user | admin | signed (a provider's webhook)
    idempotent: bool = False  # takes (and requires) Idempotency-Key
    key_optional: bool = False  # takes an Idempotency-Key if given (a decision's retry)
    query: tuple[str, ...] = ()
    query_types: Mapping[str, Any] = field(default_factory=dict)  # this route's own kinds
    listing: str | None = None  # a list of this schema, with next_cursor
    body_optional: bool = False  # the route has a default for a missing body
    extra: dict[str, Any] = field(default_factory=dict)


M, A, F, C = (
    "chalicelib.api.money_schemas",
    "chalicelib.api.auth_schemas",
    "chalicelib.api.fx_schemas",
    "chalicelib.api.crypto_schemas",
)
LIST_QUERY = ("limit", "cursor")
TXN = {"transaction": _ref("Transaction")}

OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/health"): Op(
        "Is this deployment able to serve",
        "health",
        returns={"$ref": "Health"},
        errors=(503,),
        access="public",
    ),
    ("GET", "/openapi.json"): Op("This document", "health", access="public"),
    # auth
    ("POST", "/v1/auth/signup"): Op(
        "Sign up", "auth", 201, f"{A}:SignUp", {"user": _ref("User")}, (400, 409), "public"
    ),
    ("POST", "/v1/auth/login"): Op(
        "Log in (with a TOTP code when MFA is on)",
        "auth",
        body=f"{A}:Login",
        returns={"$ref": "TokenPair"},
        errors=(401, 403, 429),
        access="public",
    ),
    ("POST", "/v1/auth/refresh"): Op(
        "Rotate a refresh token",
        "auth",
        body=f"{A}:RefreshToken",
        returns={"$ref": "TokenPair"},
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
        returns={"secret": {"type": "string"}, "otpauth_uri": {"type": "string"}},
        errors=(400, 409),
    ),
    ("POST", "/v1/auth/mfa/totp/disable"): Op(
        "Turn MFA off (password and a code); other logins end",
        "auth",
        body=f"{A}:PasswordAndCode",
        returns={"mfa_enabled": {"type": "boolean"}},
        errors=(400, 409),
    ),
    ("POST", "/v1/auth/mfa/totp/confirm"): Op(
        "Confirm TOTP and turn MFA on",
        "auth",
        body=f"{A}:TotpCode",
        returns={
            "mfa_enabled": {"type": "boolean"},
            "recovery_codes": {"type": "array", "items": {"type": "string"}},
        },
        errors=(400,),
    ),
    ("POST", "/v1/auth/email/verify"): Op(
        "Verify the email with a mailed token",
        "auth",
        body=f"{A}:VerifyToken",
        returns={"user": _ref("User")},
        errors=(400,),
        access="public",
    ),
    ("POST", "/v1/auth/email/verify/resend"): Op(
        "Mail another verification link (at most 3 per hour)", "auth", 202
    ),
    ("POST", "/v1/auth/password/forgot"): Op(
        "Mail a password reset token", "auth", 202, f"{A}:Forgot", access="public"
    ),
    ("POST", "/v1/auth/password/reset"): Op(
        "Reset the password with a mailed token",
        "auth",
        204,
        f"{A}:Reset",
        errors=(400,),
        access="public",
    ),
    ("GET", "/v1/me"): Op("The caller", "auth", returns={"user": _ref("User")}),
    ("GET", "/v1/me/sessions"): Op(
        "The caller's live logins", "auth", listing="Session", query=LIST_QUERY
    ),
    ("POST", "/v1/me/sessions/{session_id}/revoke"): Op(
        "End one of the caller's logins at once", "auth", 204, errors=(404,)
    ),
    # accounts and history
    ("GET", "/v1/accounts"): Op(
        "The caller's accounts, one per currency",
        "accounts",
        returns={"data": {"type": "array", "items": _ref("Account")}},
    ),
    ("GET", "/v1/accounts/{account_id}"): Op(
        "One of the caller's accounts", "accounts", returns={"account": _ref("Account")}
    ),
    ("GET", "/v1/accounts/{account_id}/entries"): Op(
        "An account's history, newest first",
        "accounts",
        listing="Entry",
        query=(*LIST_QUERY, "from", "to"),
    ),
    ("GET", "/v1/transactions"): Op(
        "The caller's transactions, newest first",
        "accounts",
        listing="Transaction",
        query=(*LIST_QUERY, "from", "to"),
    ),
    ("GET", "/v1/transactions/{transaction_id}"): Op(
        "One of the caller's transactions", "accounts", returns=TXN
    ),
    # moving money
    ("POST", "/v1/transfers"): Op(
        "Send money to a user (transfer) or a facility (payment)",
        "money",
        201,
        f"{M}:Transfer",
        TXN,
        (400, 404, 409, 422),
        idempotent=True,
    ),
    ("GET", "/v1/facilities"): Op(
        "Facilities that can be paid", "money", listing="Facility", query=LIST_QUERY
    ),
    ("POST", "/v1/fx/quotes"): Op(
        "Quote a currency swap (valid 60 s)",
        "fx",
        201,
        f"{F}:NewQuote",
        {"quote": _ref("Quote")},
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
        {"withdrawal": _ref("Withdrawal")},
        (400, 422),
        idempotent=True,
    ),
    ("GET", "/v1/withdrawals/{withdrawal_id}"): Op(
        "One of the caller's withdrawals", "withdrawals", returns={"withdrawal": _ref("Withdrawal")}
    ),
    ("POST", "/v1/withdrawals/{withdrawal_id}/cancel"): Op(
        "Cancel a withdrawal still pending review",
        "withdrawals",
        returns={"withdrawal": _ref("Withdrawal")},
        errors=(409,),
        key_optional=True,
    ),
    # deposits and webhooks
    ("POST", "/v1/deposits/card"): Op(
        "Start a card deposit (a Stripe PaymentIntent)",
        "deposits",
        201,
        f"{M}:NewCardDeposit",
        {"deposit": _ref("Deposit")},
        (400,),
        idempotent=True,
    ),
    ("GET", "/v1/deposits/{deposit_id}"): Op(
        "One of the caller's card deposits", "deposits", returns={"deposit": _ref("Deposit")}
    ),
    ("POST", "/v1/deposits/crypto/address"): Op(
        "The caller's deposit address for a currency",
        "deposits",
        body=f"{C}:AddressRequest",
        returns={"address": _ref("Address")},
        errors=(400,),
    ),
    ("POST", "/v1/webhooks/stripe"): Op(
        "Stripe's events (Stripe-Signature)", "webhooks", errors=(400,), access="signed"
    ),
    ("POST", "/v1/webhooks/crypto"): Op(
        "The crypto gateway's events (X-Signature)", "webhooks", errors=(400,), access="signed"
    ),
    # admin
    ("POST", "/v1/admin/facilities"): Op(
        "Create a facility (one account per currency)",
        "admin",
        201,
        f"{M}:NewFacility",
        {"facility": _ref("Facility")},
        access="admin",
    ),
    ("GET", "/v1/admin/withdrawals"): Op(
        "The withdrawal review queue",
        "admin",
        listing="Withdrawal",
        query=(*LIST_QUERY, "status"),
        access="admin",
    ),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/approve"): Op(
        "Approve a withdrawal: the payout goes to the gateway",
        "admin",
        returns={"withdrawal": _ref("Withdrawal")},
        errors=(409,),
        access="admin",
        key_optional=True,
    ),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/reject"): Op(
        "Reject a withdrawal: the hold is released",
        "admin",
        body=f"{M}:Rejection",
        returns={"withdrawal": _ref("Withdrawal")},
        errors=(409,),
        access="admin",
        key_optional=True,
    ),
    ("POST", "/v1/admin/deposits/{deposit_id}/refunds"): Op(
        "Refund a card deposit (all that is left when amount is omitted)",
        "admin",
        201,
        f"{M}:NewRefund",
        {"refund": _ref("Refund")},
        (404, 409, 422, 503),
        "admin",
        idempotent=True,
    ),
    ("GET", "/v1/admin/users"): Op(
        "Users by email (case-insensitive prefix filter), with their status",
        "admin",
        listing="User",
        query=(*LIST_QUERY, "email"),
        access="admin",
    ),
    ("POST", "/v1/admin/users/{user_id}/suspend"): Op(
        "Suspend a user: no login, refresh or money route, old tokens included",
        "admin",
        body="chalicelib.api.admin_schemas:Suspension",
        returns={"user": _ref("User")},
        errors=(409,),
        access="admin",
    ),
    ("POST", "/v1/admin/users/{user_id}/unsuspend"): Op(
        "Unsuspend a user",
        "admin",
        returns={"user": _ref("User")},
        errors=(409,),
        access="admin",
    ),
    ("POST", "/v1/admin/users/{user_id}/role"): Op(
        "Make a user an admin, or a user again (not one's own role)",
        "admin",
        body="chalicelib.api.admin_schemas:RoleChange",
        returns={"user": _ref("User")},
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
        extra={
            "description": "At or above the approval threshold (USD-equivalent) the answer is "
            '202 {"adjustment": {id, status: "pending_approval", ...}} and no money moves '
            "until another admin approves it."
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
        listing="AuditEvent",
        query=(*LIST_QUERY, "from", "to", "actor_id", "action"),
        access="admin",
    ),
    ("GET", "/v1/admin/audit/chain"): Op(
        "Recompute the daily audit digest chain; names the first broken day",
        "admin",
        returns={"verification": {"type": "object"}},
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
        {"report": _ref("Report")},
        access="admin",
        body_optional=True,
        extra={"description": "Today runs as a partial day; a future date is refused (400)."},
    ),
    ("GET", "/v1/admin/reconciliations/{date}"): Op(
        "The report of a day's reconciliation",
        "admin",
        returns={"report": _ref("Report")},
        errors=(400, 404),
        access="admin",
    ),
}

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
    429: "Too many attempts",
    503: "A dependency is unavailable; safe to retry",
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


def positive_amount_pattern(decimals: int) -> str:
    """A regex of what ``domain.money.parse_amount`` accepts for a currency with ``decimals``:
    up to 18 integer digits, up to ``decimals`` decimals, greater than zero. No lookahead (the
    fuzzers' generators do not take one): the non-zero digit is placed explicitly."""
    nonzero_whole = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{17 - k}}}" for k in range(18))
    fraction = f"(\\.[0-9]{{1,{decimals}}})?" if decimals else ""
    nonzero_fraction = "|".join(
        f"[0-9]{{{k}}}[1-9][0-9]{{0,{decimals - 1 - k}}}" for k in range(decimals)
    )
    zero_whole = "0{1,18}"
    parts = [f"(?:{nonzero_whole}){fraction}"]
    if decimals:
        parts.append(f"{zero_whole}\\.(?:{nonzero_fraction})")
    return "^(?:" + "|".join(parts) + ")$"


def _amount_rules(schema: dict[str, Any]) -> None:
    """An amount is refused past its currency's decimals, and at zero: said per currency with
    ``if``/``then`` where the body names both (``amount``+``currency``, ``from_amount``+
    ``from_currency``)."""
    props = schema.get("properties", {})
    for amount, code in (("amount", "currency"), ("from_amount", "from_currency")):
        if amount not in props or code not in props:
            continue
        codes = props[code].get("enum") or sorted(CURRENCIES)
        schema.setdefault("allOf", []).extend(
            {
                "if": {"properties": {code: {"const": c}}, "required": [code]},
                "then": {
                    "properties": {
                        amount: {"pattern": positive_amount_pattern(CURRENCIES[c].decimals)}
                    }
                },
            }
            for c in codes
        )


def _request_schema(spec: str) -> dict[str, Any]:
    module, name = spec.split(":")
    model = getattr(importlib.import_module(module), name)
    schema = model.model_json_schema()
    for prop, value in schema.get("properties", {}).items():
        if "amount" in prop:
            value.clear()
            value.update(AMOUNT)
        elif "currency" in prop:
            only = value.get("enum")  # a route's own currencies, from its model
            value.clear()
            value.update(CURRENCY if only is None else {"type": "string", "enum": only})
    schema.pop("title", None)
    _amount_rules(schema)
    return schema


def _success(op: Op) -> dict[str, Any]:
    if op.listing is not None:
        schema: dict[str, Any] = _obj(
            ["data", "next_cursor"],
            data={"type": "array", "items": _ref(op.listing)},
            next_cursor=NULLABLE_STRING,
        )
    elif op.returns is not None and "$ref" in op.returns:
        schema = _ref(str(op.returns["$ref"]))
    elif op.returns is not None:
        schema = _obj(list(op.returns), **op.returns)
    else:
        schema = {"type": "object"}
    if op.status in (202, 204):
        return {"description": "Done"}
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _parameters(path: str, op: Op) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            schema = DAY if name == "date" else {"type": "string"}
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
                else "Optional: with it, the retry of a decision whose answer was lost gets "
                "the decided withdrawal instead of 409 invalid_state",
            }
        )
    if op.access == "signed":
        header = "Stripe-Signature" if "stripe" in path else "X-Signature"
        params.append(
            {"name": header, "in": "header", "required": True, "schema": {"type": "string"}}
        )
    return params


def _operation(method: str, path: str, op: Op, view_name: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": view_name,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(path, op),
        "responses": {str(op.status): _success(op)},
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
    else:
        operation["security"] = []
    if op.idempotent or op.key_optional:
        errors.update((400, 409))
    if path not in ("/health", "/openapi.json"):
        errors.add(404)
    for status in sorted(errors):
        operation["responses"][str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    if op.access == "admin":
        operation["description"] = "Role admin and an access token obtained with a TOTP code."
    operation.update(op.extra)
    return operation


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
    paths: dict[str, dict[str, Any]] = {}
    for path in sorted(routes):
        for method, entry in sorted(routes[path].items()):
            op = OPERATIONS.get((method, path))
            if op is None:
                raise KeyError(f"{method} {path} has no entry in openapi_spec.OPERATIONS")
            paths.setdefault(path, {})[method.lower()] = _operation(
                method, path, op, entry.view_name
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
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
