"""The boundary every HTTP request crosses (app.py registers ``handle`` as the ``http`` middleware).

For each request it:

1. names it: API Gateway's ``requestContext.requestId``, else the Lambda context's
   ``aws_request_id``. The id is on every log line written while the request is handled, in every
   error envelope and in the ``X-Request-Id`` response header;
2. answers exceptions through ``chalicelib.api.errors``: a view's exception arrives as
   ``ViewRaised`` (see ``application.py``); an unexpected one is logged with its stack trace and
   answered with a generic 500 that reveals nothing;
3. rewrites Chalice's own error responses (``{"Code", "Message"}``) into the envelope;
4. adds the security headers, and the headers a route's guard asked for
   (``response_headers``: a facility key's rate limit), to every response, and logs one line
   per request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from chalice.app import Request, Response

from chalicelib.api import errors, response_headers
from chalicelib.api.application import ViewRaised
from chalicelib.api.log import logger
from chalicelib.api.requests import check_body

REQUEST_ID_HEADER = "X-Request-Id"
# An API answers JSON to programs: no caching, no sniffing, no framing, no active content.
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def request_id_of(request: Request | None) -> str:
    context = getattr(request, "context", None) or {}
    api_gateway_id = context.get("requestId")
    if api_gateway_id:
        return str(api_gateway_id)
    lambda_id = getattr(getattr(request, "lambda_context", None), "aws_request_id", None)
    # Neither exists only for an event that did not come through API Gateway or Lambda.
    return str(lambda_id) if lambda_id else str(uuid.uuid4())


def with_boundary_headers(response: Response, request_id: str) -> Response:
    """Add the security headers a route did not set itself, and ``X-Request-Id``."""
    present = {name.lower() for name in response.headers}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            response.headers[name] = value
    for name in [n for n in response.headers if n.lower() == REQUEST_ID_HEADER.lower()]:
        del response.headers[name]
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def handle(request: Request, get_response: Callable[[Request], Response]) -> Response:
    request_id = request_id_of(request)
    logger.thread_safe_append_keys(request_id=request_id)
    started = time.perf_counter()
    try:
        with response_headers.collecting() as extra:
            response = _response_or_error(request, get_response, request_id)
        rewritten = errors.rewrite_framework_error(response, request_id)
        rewritten.headers.update(extra)
        if rewritten is not response and response.status_code >= 500:
            logger.error("server error answered by chalice", status=response.status_code)
        logger.info(
            "request handled",
            method=getattr(request, "method", None),
            route=getattr(request, "path", None),
            status=rewritten.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return with_boundary_headers(rewritten, request_id)
    finally:
        logger.thread_safe_remove_keys(["request_id"])


def _response_or_error(
    request: Request, get_response: Callable[[Request], Response], request_id: str
) -> Response:
    try:
        check_body(request.raw_body or b"")
        return get_response(request)
    except ViewRaised as raised:
        error: BaseException = raised.__cause__ or raised
    except Exception as exc:
        error = exc
    status = errors.http_error_for(error).status
    if status >= 500:
        logger.error("unhandled exception", exc_info=error, error_type=type(error).__name__)
    else:
        logger.info("request refused", error_type=type(error).__name__, status=status)
    return errors.exception_response(error, request_id)
