"""Request bodies of the money routes. Imported on first use (see requests.py).

Amounts and currencies are taken as sent (``Any``) so that the domain names the exact rule a bad
one breaks (``invalid_amount``, ``unsupported_currency``) instead of a generic type error.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from chalicelib.api.auth_schemas import RequestBody


class Transfer(RequestBody):
    amount: Any
    currency: Any
    to_email: Annotated[str, StringConstraints(min_length=1, max_length=254)] | None = None
    to_facility_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    memo: Annotated[str, StringConstraints(max_length=500)] = ""


class NewFacility(RequestBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NewWithdrawal(RequestBody):
    amount: Any
    currency: Any
    destination: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Rejection(RequestBody):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class NewCardDeposit(RequestBody):
    amount: Any
    currency: Any


class NewRefund(RequestBody):
    amount: Any = None  # None: all that is left to refund
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
