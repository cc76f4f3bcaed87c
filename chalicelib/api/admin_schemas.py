"""Request bodies of the operator routes (``/v1/admin/users``, ``/v1/admin/transactions``).
Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from chalicelib.api.auth_schemas import RequestBody

Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Rollback(RequestBody):
    reason: Reason
    force: bool = False  # let a user or facility account go negative (flagged) if it must


class Suspension(RequestBody):
    reason: Reason


class RoleChange(RequestBody):
    role: Annotated[str, StringConstraints(min_length=1, max_length=16)]
