"""Request bodies of the money routes. Imported on first use (see requests.py).

Amounts and currencies are taken as sent (``fields.py``) so that the domain names the exact rule
a bad one breaks (``invalid_amount``, ``unsupported_currency``) instead of a generic type error.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import (
    AmountAsSent,
    CardCurrency,
    CurrencyAsSent,
    amount_per_currency,
)


def _one_recipient(schema: dict[str, Any]) -> None:
    """The document says what the code enforces: exactly one recipient, a string."""
    for name in ("to_email", "to_facility_id"):
        prop = schema["properties"][name]
        string = next(s for s in prop.pop("anyOf") if s.get("type") == "string")
        prop.pop("default", None)
        prop.update(string)
    # Exactly one, said as two if/then rules ("with an email, no facility"; "without an email, a
    # facility") rather than a oneOf: the same rule, which client generators can still type and
    # fuzzers generate quickly (no ``not``).
    schema.setdefault("allOf", []).extend(
        [
            {"if": {"required": ["to_email"]}, "then": {"properties": {"to_facility_id": False}}},
            {"if": {"properties": {"to_email": False}}, "then": {"required": ["to_facility_id"]}},
        ]
    )
    amount_per_currency("amount", "currency")(schema)


class Transfer(RequestBody):
    model_config = ConfigDict(json_schema_extra=_one_recipient)

    amount: AmountAsSent
    currency: CurrencyAsSent
    to_email: Annotated[str, StringConstraints(min_length=1, max_length=254)] | None = None
    to_facility_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    memo: Annotated[str, StringConstraints(max_length=500)] = ""


class NewFacility(RequestBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NewWithdrawal(RequestBody):
    model_config = ConfigDict(json_schema_extra=amount_per_currency("amount", "currency"))

    amount: AmountAsSent
    currency: CurrencyAsSent
    # Taken as any string: the service names the rule (400, "destination must be 8 to 128
    # letters, digits or :._-"); the document states it.
    destination: Annotated[
        str,
        StringConstraints(min_length=1, max_length=256),
        Field(json_schema_extra={"pattern": "^[A-Za-z0-9:._-]{8,128}$"}),
    ]


class Rejection(RequestBody):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class NewCardDeposit(RequestBody):
    model_config = ConfigDict(json_schema_extra=amount_per_currency("amount", "currency"))

    amount: AmountAsSent
    currency: CardCurrency


class NewRefund(RequestBody):
    amount: AmountAsSent = None  # None: all that is left to refund
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
