"""Request bodies of the payment request routes (API.md, "Facilities"). Imported on first use
(see requests.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from chalicelib.api.auth_schemas import Email, RequestBody
from chalicelib.api.fields import AmountAsSent, CurrencyAsSent, amount_per_currency
from chalicelib.domain.payment_requests import MAX_EXPIRES_IN, MAX_MEMO_LENGTH, MIN_EXPIRES_IN


class NewPaymentRequest(RequestBody):
    model_config = ConfigDict(json_schema_extra=amount_per_currency("amount", "currency"))

    amount: AmountAsSent
    currency: CurrencyAsSent
    payer_email: Email
    memo: Annotated[str, StringConstraints(max_length=MAX_MEMO_LENGTH)] = ""
    # Left out: 7 days.
    expires_in: (
        Annotated[
            int,
            Field(
                ge=MIN_EXPIRES_IN,
                le=MAX_EXPIRES_IN,
                description="seconds until the request expires (default 604800: 7 days)",
            ),
        ]
        | None
    ) = None
