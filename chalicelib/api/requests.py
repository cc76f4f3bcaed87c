"""Reading request bodies: JSON, validated by a pydantic schema, or ``400 invalid_request`` with
the field errors listed in ``error.details``. Unknown fields and wrong types are refused.

pydantic is imported with the schemas, on a route's first call, not when the app loads: building
models costs ~150 ms of cold start that health checks and other routes need not pay."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from chalice.app import Request

from chalicelib.domain.errors import InvalidRequest

if TYPE_CHECKING:
    from pydantic import BaseModel

MAX_BODY_BYTES = 64 * 1024

Schema = TypeVar("Schema", bound="BaseModel")


def parse_body(request: Request, schema: type[Schema]) -> Schema:
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
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
