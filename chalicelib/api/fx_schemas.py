"""Request bodies of ``/v1/fx/*``. Imported on first use (see requests.py).

Currencies and the amount are taken as sent (``fields.py``) so that the domain names the exact
rule a bad one breaks (``unsupported_currency``, ``invalid_amount``), as in money_schemas.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, StringConstraints

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import AmountAsSent, CurrencyAsSent, amount_per_currency
from chalicelib.domain.money import CURRENCIES


def _two_currencies(schema: dict[str, Any]) -> None:
    """The document says what the code enforces: a swap is between two different currencies."""
    schema["not"] = {
        "anyOf": [
            {
                "properties": {"from_currency": {"const": code}, "to_currency": {"const": code}},
                "required": ["from_currency", "to_currency"],
            }
            for code in sorted(CURRENCIES)
        ]
    }
    amount_per_currency("from_amount", "from_currency")(schema)


class NewQuote(RequestBody):
    model_config = ConfigDict(json_schema_extra=_two_currencies)

    from_currency: CurrencyAsSent
    to_currency: CurrencyAsSent
    from_amount: AmountAsSent


class NewSwap(RequestBody):
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
