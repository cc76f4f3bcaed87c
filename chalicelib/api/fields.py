"""Request fields taken as sent and checked by the domain, with the JSON schema the contract gives
them. Imported with the request models, on first use (see requests.py).

An amount or a currency is taken as any JSON value so that the domain names the exact rule a bad
one breaks (``invalid_amount``, ``unsupported_currency``) instead of a generic type error; the
document still says what is accepted: an amount is a decimal string with no more decimals than its
currency has and above zero (``positive_amount_pattern``, the twin of ``parse_amount``, checked
against it by a property test), a currency one of the route's codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import StringConstraints, WithJsonSchema

from chalicelib.api.responses import AMOUNT_PATTERN, SIGNED_AMOUNT_PATTERN
from chalicelib.domain.money import CURRENCIES

AMOUNT_SCHEMA = {
    "type": "string",
    "pattern": AMOUNT_PATTERN,
    "description": 'Decimal string in major units, e.g. "12.34" USD; never a JSON number.',
    "examples": ["12.34"],
}
SIGNED_AMOUNT_SCHEMA = {
    "type": "string",
    "pattern": SIGNED_AMOUNT_PATTERN,
    "description": 'Signed decimal string in the account\'s currency; "-12.50" takes money out.',
    "examples": ["-12.50"],
}


def _currencies(codes: Iterable[str]) -> dict[str, Any]:
    return {"type": "string", "enum": sorted(codes)}


AmountAsSent = Annotated[Any, WithJsonSchema(AMOUNT_SCHEMA)]
SignedAmountText = Annotated[
    str, StringConstraints(min_length=1, max_length=40), WithJsonSchema(SIGNED_AMOUNT_SCHEMA)
]
CurrencyAsSent = Annotated[Any, WithJsonSchema(_currencies(CURRENCIES))]
CardCurrency = Annotated[Any, WithJsonSchema(_currencies(["USD"]))]  # cards: USD only
CryptoCurrency = Annotated[Any, WithJsonSchema(_currencies(["BTC", "ETH", "USDT"]))]


def positive_amount_pattern(decimals: int) -> str:
    """A regex of what ``domain.money.parse_amount`` accepts for a currency with ``decimals``:
    up to 18 integer digits, up to ``decimals`` decimals, greater than zero. No lookahead (the
    fuzzers' generators do not take one): the non-zero digit is placed explicitly."""
    nonzero_whole = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{17 - k}}}" for k in range(18))
    fraction = f"(\\.[0-9]{{1,{decimals}}})?" if decimals else ""
    nonzero_fraction = "|".join(
        f"[0-9]{{{k}}}[1-9][0-9]{{0,{decimals - 1 - k}}}" for k in range(decimals)
    )
    zero_whole = "0{1,18}"
    parts = [f"(?:{nonzero_whole}){fraction}"]
    if decimals:
        parts.append(f"{zero_whole}\\.(?:{nonzero_fraction})")
    return "^(?:" + "|".join(parts) + ")$"


def amount_per_currency(amount: str, currency: str) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` saying, per currency, how an amount of it is written: ``if``
    ``currency`` is this code ``then`` ``amount`` matches its pattern (its decimals, above 0)."""

    def extend(schema: dict[str, Any]) -> None:
        codes = schema["properties"][currency].get("enum") or sorted(CURRENCIES)
        schema.setdefault("allOf", []).extend(
            {
                "if": {"properties": {currency: {"const": code}}, "required": [currency]},
                "then": {
                    "properties": {
                        amount: {"pattern": positive_amount_pattern(CURRENCIES[code].decimals)}
                    }
                },
            }
            for code in codes
        )

    return extend
