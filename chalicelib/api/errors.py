"""The one place that turns an error into an HTTP answer.

Every error response carries the same body, the envelope::

    {"error": {"code": "insufficient_funds", "message": "human text", "request_id": "..."}}

Three sources of errors, three tables:

- ``DOMAIN_ERRORS``: each rule of ``chalicelib.domain.errors`` -> status and error code. A domain
  error's message is its own text, or the first line of its docstring (which states the rule).
- ``FRAMEWORK_ERRORS``: Chalice's own error responses (bodies ``{"Code": ..., "Message": ...}``,
  from ``BadRequestError``, a wrong method, a wrong content type...) -> error code.
- anything else is a 500 ``internal_error`` whose message says nothing about the cause; the
  caller (the middleware) logs the stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from chalice import Response

from chalicelib.api.responses import Error, ErrorDetail
from chalicelib.domain import errors as domain

INTERNAL_ERROR_MESSAGE = "An internal error occurred. Quote the request_id when reporting it."
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class HttpError:
    """How one kind of error is answered: status, error code, and a fixed message if any."""

    status: int
    code: str
    message: str | None = None


INTERNAL_ERROR = HttpError(500, "internal_error", INTERNAL_ERROR_MESSAGE)

# Keyed by class; a subclass of a listed class answers like its parent (see ``http_error_for``).
DOMAIN_ERRORS: Mapping[type[domain.LedgerError], HttpError] = {
    domain.InvalidAmount: HttpError(400, "invalid_amount"),
    domain.UnsupportedCurrency: HttpError(400, "unsupported_currency"),
    domain.PostingsEmpty: HttpError(400, "invalid_request"),
    domain.PostingAmountZero: HttpError(400, "invalid_request"),
    domain.PostingsUnbalanced: HttpError(400, "invalid_request"),
    domain.DuplicateAccountInPostings: HttpError(400, "invalid_request"),
    domain.TooManyPostings: HttpError(400, "invalid_request"),
    domain.CurrencyMismatch: HttpError(400, "invalid_request"),
    domain.AccountNotFound: HttpError(404, "not_found"),
    domain.TransactionNotFound: HttpError(404, "not_found"),
    domain.InsufficientFunds: HttpError(422, "insufficient_funds"),
    domain.TransactionExistsWithDifferentFields: HttpError(409, "idempotency_key_reused"),
    domain.HoldNotPending: HttpError(409, "invalid_state"),
    domain.AlreadyReversed: HttpError(409, "already_reversed"),
    domain.NotReversible: HttpError(409, "not_reversible"),
    domain.VersionConflict: HttpError(
        409,
        "conflict",
        "The accounts kept changing while the request was applied; nothing was written and "
        "the request is safe to retry.",
    ),
    domain.TransactionAlreadyExists: HttpError(409, "conflict"),
    domain.InvalidRequest: HttpError(400, "invalid_request"),
    domain.PayloadTooLarge: HttpError(413, "payload_too_large"),
    domain.InvalidState: HttpError(409, "invalid_state"),
    domain.TermsNotAccepted: HttpError(400, "terms_not_accepted"),
    domain.WeakPassword: HttpError(400, "weak_password"),
    domain.EmailTaken: HttpError(409, "email_taken"),
    domain.InvalidCredentials: HttpError(401, "invalid_credentials"),
    domain.MfaRequired: HttpError(401, "mfa_required"),
    domain.InvalidTotp: HttpError(401, "invalid_totp"),
    domain.TotpSetupCodeWrong: HttpError(400, "invalid_totp"),
    domain.AccountSuspended: HttpError(403, "account_suspended"),
    domain.TooManyAttempts: HttpError(429, "too_many_attempts"),
    domain.Unauthenticated: HttpError(401, "unauthenticated"),
    domain.Forbidden: HttpError(403, "forbidden"),
    domain.InvalidToken: HttpError(400, "invalid_token"),
    domain.SessionNotFound: HttpError(404, "not_found"),
    domain.EmailUnverified: HttpError(403, "email_unverified"),
    domain.IdempotencyKeyRequired: HttpError(400, "idempotency_key_required"),
    domain.IdempotencyKeyReused: HttpError(409, "idempotency_key_reused"),
    domain.IdempotencyInProgress: HttpError(409, "idempotency_in_progress"),
    domain.IdempotencyRaced: HttpError(409, "idempotency_in_progress"),
    domain.RecipientNotFound: HttpError(404, "recipient_not_found"),
    domain.WithdrawalNotFound: HttpError(404, "not_found"),
    domain.AdjustmentNotFound: HttpError(404, "not_found"),
    domain.AmountBelowMinimum: HttpError(422, "amount_below_minimum"),
    domain.WithdrawalLimitExceeded: HttpError(422, "withdrawal_limit_exceeded"),
    domain.WithdrawalNotPendingReview: HttpError(409, "invalid_state"),
    domain.WithdrawalNotProcessing: HttpError(409, "invalid_state"),
    domain.PaymentRequestNotFound: HttpError(404, "not_found"),
    domain.PaymentRequestNotOpen: HttpError(409, "invalid_state"),
    domain.RateUnavailable: HttpError(422, "rate_unavailable"),
    domain.SameCurrencySwap: HttpError(400, "invalid_request"),
    domain.ConvertedAmountOutOfRange: HttpError(400, "invalid_amount"),
    domain.QuoteNotFound: HttpError(404, "not_found"),
    domain.QuoteExpired: HttpError(410, "quote_expired"),
    domain.QuoteUsed: HttpError(409, "quote_used"),
    domain.InvalidWebhook: HttpError(400, "invalid_webhook"),
    domain.WebhookEventSeen: HttpError(409, "conflict"),
    domain.DepositNotFound: HttpError(404, "not_found"),
    domain.RefundExceedsDeposit: HttpError(422, "refund_exceeds_deposit"),
    domain.ProviderRefused: HttpError(422, "provider_refused"),
    domain.ProviderUnavailable: HttpError(503, "provider_unavailable"),
    domain.ReconciliationNotFound: HttpError(404, "not_found"),
    domain.UserNotFound: HttpError(404, "not_found"),
    domain.CannotSuspendSelf: HttpError(403, "forbidden"),
    domain.FacilityNotFound: HttpError(404, "not_found"),
    domain.ApiKeyNotFound: HttpError(404, "not_found"),
    domain.MonitorNotFound: HttpError(404, "not_found"),
    domain.RateLimited: HttpError(429, "rate_limited"),
    domain.RiskDeclined: HttpError(422, "risk_declined"),
    domain.RiskCounterChanged: HttpError(
        409,
        "conflict",
        "Other operations of the same user kept changing its risk counts; nothing was written "
        "and the request is safe to retry.",
    ),
    domain.RulesVersionConflict: HttpError(409, "version_conflict"),
    domain.ReviewNotFound: HttpError(404, "not_found"),
    domain.ReviewNotOpen: HttpError(409, "invalid_state"),
    domain.InvalidWebhookUrl: HttpError(400, "invalid_request"),
    domain.WebhookEndpointNotFound: HttpError(404, "not_found"),
    domain.WebhookDeliveryNotFound: HttpError(404, "not_found"),
    domain.PayrollNotFound: HttpError(404, "not_found"),
    domain.PayrollChanged: HttpError(409, "conflict"),
}

# Chalice's ``Code`` values (its exception class names, or the codes it uses for errors it
# raises itself) -> our error code. The status stays the one Chalice chose.
FRAMEWORK_ERRORS: Mapping[str, str] = {
    "BadRequestError": "invalid_request",
    "BadRequest": "invalid_request",
    "UnauthorizedError": "unauthenticated",
    "ForbiddenError": "forbidden",
    "NotFoundError": "not_found",
    "MethodNotAllowedError": "method_not_allowed",
    "RequestTimeoutError": "request_timeout",
    "ConflictError": "conflict",
    "UnprocessableEntityError": "unprocessable_entity",
    "TooManyRequestsError": "too_many_requests",
    "UnsupportedMediaType": "unsupported_media_type",
}

# For an error response with no code we recognise: the code its status implies.
STATUS_CODES: Mapping[int, str] = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "too_many_requests",
}


def envelope(
    code: str, message: str, request_id: str, details: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The body of every error response (``details`` lists field errors, when there are any)."""
    error = ErrorDetail(code=code, message=message, request_id=request_id, details=details or None)
    return Error(error=error).body()


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: Mapping[str, Any] | None = None,
    details: list[dict[str, str]] | None = None,
) -> Response:
    kept = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    return Response(
        body=envelope(code, message, request_id, details),
        headers={**kept, "Content-Type": JSON_CONTENT_TYPE},
        status_code=status,
    )


def http_error_for(exc: BaseException) -> HttpError:
    """The answer to an exception: its domain mapping, or ``INTERNAL_ERROR`` for anything else."""
    for cls in type(exc).__mro__:
        mapped = DOMAIN_ERRORS.get(cls)
        if mapped is not None:
            return mapped
    return INTERNAL_ERROR


def exception_response(exc: BaseException, request_id: str) -> Response:
    error = http_error_for(exc)
    message = error.message or _describe(exc)
    headers = {}
    if isinstance(exc, domain.TooManyAttempts | domain.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    details = exc.details if isinstance(exc, domain.InvalidRequest) else None
    return error_response(error.status, error.code, message, request_id, headers, details)


def rewrite_framework_error(response: Response, request_id: str) -> Response:
    """Chalice's own error responses, and error bodies that are not JSON, as the envelope.

    A route's deliberate JSON body (an envelope, or e.g. the health report's 503) is left alone.
    Chalice's messages for client errors are meant for the caller ("Unsupported method: PUT");
    a server error's message never leaves the process.
    """
    status = response.status_code
    body = response.body
    if status < 400:
        return response
    chalice_shaped = isinstance(body, dict) and set(body) == {"Code", "Message"}
    if not chalice_shaped and isinstance(body, dict | list):
        return response
    if status >= 500:
        return error_response(status, INTERNAL_ERROR.code, INTERNAL_ERROR_MESSAGE, request_id)
    chalice_code = body["Code"] if chalice_shaped else None
    code = FRAMEWORK_ERRORS.get(chalice_code or "") or STATUS_CODES.get(status, "invalid_request")
    message = str(body["Message"]) if chalice_shaped else _status_phrase(status)
    return error_response(status, code, message, request_id, response.headers)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if text:
        return text
    doc = (type(exc).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else _status_phrase(http_error_for(exc).status)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
