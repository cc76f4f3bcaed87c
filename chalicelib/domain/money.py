"""Currencies and money as integer minor units.

Amounts cross the API as decimal strings in major units ("12.34") and live everywhere else as
``int`` minor units (1234). Nothing here ever touches ``float``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.errors import InvalidAmount, UnsupportedCurrency

MAX_INTEGER_DIGITS = 18

_AMOUNT = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")


@dataclass(frozen=True)
class Currency:
    code: str
    decimals: int


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("USD", 2),
        Currency("BTC", 8),
        Currency("ETH", 18),
        Currency("USDT", 6),
    )
}


def currency(code: Any) -> Currency:
    """The supported currency named ``code``.

    Raises:
        UnsupportedCurrency: ``code`` is not one of USD, BTC, ETH, USDT (case matters).
    """
    if not isinstance(code, str) or code not in CURRENCIES:
        raise UnsupportedCurrency(f"unsupported currency: {code!r}")
    return CURRENCIES[code]


def parse_amount(raw: Any, code: str) -> int:
    """Parse a positive decimal string in major units into minor units.

    Accepted: ASCII digits, optionally a dot and at most the currency's decimals, at most 18
    integer digits, strictly greater than zero. Everything else (JSON numbers, signs, exponents,
    spaces, "1.", ".5") is refused.

    Raises:
        UnsupportedCurrency: the currency is not supported.
        InvalidAmount: the amount breaks any rule above.
    """
    cur = currency(code)
    if not isinstance(raw, str):
        raise InvalidAmount('amount must be a decimal string, e.g. "12.34"')
    match = _AMOUNT.fullmatch(raw)
    if match is None:
        raise InvalidAmount(f"amount {raw!r} is not a plain decimal number")
    whole, frac = match.group("int"), match.group("frac") or ""
    if len(whole) > MAX_INTEGER_DIGITS:
        raise InvalidAmount(f"amount has more than {MAX_INTEGER_DIGITS} integer digits")
    if len(frac) > cur.decimals:
        raise InvalidAmount(f"{cur.code} amounts have at most {cur.decimals} decimals")
    minor = int(whole) * 10**cur.decimals + int(frac.ljust(cur.decimals, "0") or "0")
    if minor <= 0:
        raise InvalidAmount("amount must be greater than zero")
    return minor


def parse_signed_amount(raw: Any, code: str) -> int:
    """``parse_amount`` with an optional leading ``-``: a signed, non-zero amount.

    Raises:
        UnsupportedCurrency, InvalidAmount: as ``parse_amount``.
    """
    if isinstance(raw, str) and raw.startswith("-"):
        return -parse_amount(raw[1:], code)
    return parse_amount(raw, code)


def format_amount(minor: int, code: str) -> str:
    """Render minor units as a decimal string with all of the currency's decimals (signed)."""
    cur = currency(code)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**cur.decimals)
    if cur.decimals == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{cur.decimals}d}"
