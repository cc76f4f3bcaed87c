"""Request body of ``POST /v1/facility/payouts`` (a payroll batch). Imported on first use (see
requests.py). Amounts and the currency are taken as sent (``fields.py``) so that the domain names
the exact rule a bad one breaks (``invalid_amount``, ``unsupported_currency``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import AmountAsSent, CurrencyAsSent
from chalicelib.domain.payroll import MAX_ITEMS, MAX_MEMO_LENGTH


class PayrollLine(RequestBody):
    to_email: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    amount: AmountAsSent
    memo: Annotated[str, StringConstraints(max_length=MAX_MEMO_LENGTH)] = ""


class NewPayroll(RequestBody):
    currency: CurrencyAsSent
    items: Annotated[list[PayrollLine], Field(min_length=1, max_length=MAX_ITEMS)]
