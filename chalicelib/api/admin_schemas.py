"""Request bodies of the operator routes (``/v1/admin/users``, ``/v1/admin/transactions``).
Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import SignedAmountText

Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Rollback(RequestBody):
    reason: Reason
    force: bool = False  # let a user or facility account go negative (flagged) if it must


class Suspension(RequestBody):
    reason: Reason


class RoleChange(RequestBody):
    # Any string is taken; the service names the rule ("role must be user or admin").
    role: Annotated[
        str,
        StringConstraints(min_length=1, max_length=16),
        Field(json_schema_extra={"enum": ["user", "admin"]}),
    ]


class NewAdjustment(RequestBody):
    account_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    # A signed decimal string in the account's currency ("-12.50" takes money out); checked
    # against the currency by the service.
    amount: SignedAmountText
    reason: Reason
