"""Request bodies of the facility API key routes (``/v1/admin/facilities/{id}/api-keys``).
Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, WithJsonSchema

from chalicelib.api.auth_schemas import WHOLE_NUMBER, RequestBody
from chalicelib.domain.api_keys import MAX_NAME_LENGTH, MAX_RATE_LIMIT_PER_MINUTE

ScopeName = Literal["read", "payment_requests", "payouts", "webhooks"]


class NewApiKey(RequestBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
    # Left out: every scope.
    scopes: Annotated[list[ScopeName], Field(min_length=1, max_length=4)] | None = None
    # Left out: the deployment's FACILITY_RATE_LIMIT_PER_MINUTE.
    rate_limit_per_minute: (
        Annotated[
            int,
            WHOLE_NUMBER,
            Field(ge=1, le=MAX_RATE_LIMIT_PER_MINUTE),
            WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_RATE_LIMIT_PER_MINUTE}),
        ]
        | None
    ) = None
