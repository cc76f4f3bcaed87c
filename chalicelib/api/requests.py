"""Reading request bodies: JSON, validated by a pydantic schema, or ``400 invalid_request`` with
the field errors listed in ``error.details``. Unknown fields and wrong types are refused.

pydantic is imported with the schemas, on a route's first call, not when the app loads: building
models costs ~150 ms of cold start that health checks and other routes need not pay."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from chalice.app import Request

from chalicelib.domain.errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from pydantic import BaseModel

# API.md, "Errors": a larger body answers 413, deeper JSON 400, before any parsing.
MAX_BODY_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
_JSON_SPECIAL = re.compile(rb'[\[\]{}"\\]')
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = b"[{", b"]}", ord('"'), ord("\\")


def check_body(raw: bytes) -> None:
    """Refuse a body over ``MAX_BODY_BYTES`` (PayloadTooLarge) or JSON nested deeper than
    ``MAX_JSON_DEPTH`` (InvalidRequest), before anything parses it recursively: Python's json
    module (and anything that walks the result) runs out of stack near 1,000 levels.

    One linear pass over the bytes that matter (brackets, quotes, backslashes), skipping strings.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES // 1024} KiB")
    depth, in_string, escaped = 0, False, -1
    for match in _JSON_SPECIAL.finditer(raw):
        at = match.start()
        if at == escaped:
            continue
        byte = raw[at]
        if in_string:
            if byte == _BACKSLASH:
                escaped = at + 1
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidRequest(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
        elif byte in _CLOSE:
            depth -= 1


def parse_body[Schema: "BaseModel"](request: Request, schema: type[Schema]) -> Schema:
    """The body as ``schema``; its size and depth were checked at the boundary (the middleware
    calls ``check_body`` for every request)."""
    raw = request.raw_body or b""
    try:
        data: Any = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    from pydantic import ValidationError  # with the schemas: not on the cold-start path

    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or "body",
                "message": error["msg"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest("request body is not valid", details) from exc


def source_ip(request: Request) -> str | None:
    identity = (request.context or {}).get("identity") or {}
    return identity.get("sourceIp")
