"""``Idempotency-Key`` on every POST that moves or reserves money (API.md, "Conventions").

A retry with the same key, caller, path and body gets the original status and body back and moves
no money; the same key with another body (or path) answers ``409 idempotency_key_reused``; while
the first request runs, ``409 idempotency_in_progress``. Refusals (a 422, a 404) are replayed like
successes, as Stripe does; a 5xx is not stored, so the retry runs again. Records live 24 hours;
past that, the engine's derived transaction ids still keep money from moving twice.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import errors
from chalicelib.api.access import current_principal
from chalicelib.api.dependencies import get_idempotent_runner
from chalicelib.api.middleware import request_id_of
from chalicelib.domain.errors import (
    IdempotencyInProgress,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    LedgerError,
)

MAX_KEY_LENGTH = 255
HEADER = "idempotency-key"


def idempotency_key(blueprint: Blueprint) -> str:
    key = blueprint.current_request.headers.get(HEADER, "")
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise IdempotencyKeyRequired(
            f"send an Idempotency-Key header of 1 to {MAX_KEY_LENGTH} characters"
        )
    return key


def _fingerprint(raw: bytes | None) -> str:
    """The body as compared between a request and its retry (JSON key order does not matter)."""
    text = (raw or b"").decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text


def replayable(blueprint: Blueprint, scope: str) -> Callable[[Callable[..., Any]], Callable]:
    """Decorator for a money route, below ``protected``/``admin_only``."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            request = blueprint.current_request
            key = idempotency_key(blueprint)
            caller = current_principal().user.id

            def execute() -> dict[str, Any]:
                try:
                    response = view(*args, **kwargs)
                except LedgerError as exc:
                    if errors.http_error_for(exc).status >= 500:
                        raise  # not a refusal: the record is dropped so a retry runs again
                    response = errors.exception_response(exc, request_id_of(request))
                if not isinstance(response, Response):
                    response = Response(body=response)
                return {"status": response.status_code, "body": response.body}

            run, config = get_idempotent_runner()
            config.register_lambda_context(blueprint.lambda_context)
            # The path's parameters are part of what must match: the same key sent to refund
            # another deposit is a reused key, not a replay of the first refund.
            params = json.dumps(request.uri_params or {}, sort_keys=True)
            fingerprint = f"{params}\n{_fingerprint(request.raw_body)}"
            payload = {"key": f"{scope}:{caller}:{key}", "body": fingerprint}
            from aws_lambda_powertools.utilities.idempotency.exceptions import (
                IdempotencyAlreadyInProgressError,
                IdempotencyValidationError,
            )

            try:
                stored = run(request=payload, execute=execute)
            except IdempotencyValidationError as exc:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with a different request"
                ) from exc
            except IdempotencyAlreadyInProgressError as exc:
                raise IdempotencyInProgress(
                    "a request with this Idempotency-Key is still running; retry shortly"
                ) from exc
            return Response(body=stored["body"], status_code=stored["status"])

        return wrapper

    return decorate
