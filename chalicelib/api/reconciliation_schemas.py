"""Request body of ``POST /v1/admin/reconciliations``. Imported on first use (see requests.py).

``date`` is taken as sent (``Any``) so that ``reconciliation.parse_day`` names the exact rule a
bad one breaks (not a date, or a future day) instead of a generic type error.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chalicelib.api.auth_schemas import RequestBody


class RunReconciliation(RequestBody):
    # YYYY-MM-DD, today at the latest (UTC); default: yesterday
    date: Annotated[
        Any, Field(json_schema_extra={"type": ["string", "null"], "format": "date"})
    ] = None
