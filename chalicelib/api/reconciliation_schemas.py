"""Request body of ``POST /v1/admin/reconciliations``. Imported on first use (see requests.py).

``date`` is taken as sent (``Any``) so that ``reconciliation.parse_day`` names the exact rule a
bad one breaks (not a date, or a future day) instead of a generic type error.
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.auth_schemas import RequestBody


class RunReconciliation(RequestBody):
    date: Any = None  # YYYY-MM-DD, today at the latest (UTC); default: yesterday
