"""Currency exchange: rates, conversion and quotes. Pure: no I/O, no clock, no float.

A rate is an exact ``Decimal`` read from a plain decimal string: how many units of ``to`` one
unit of ``from`` buys (``BTC/USD 94525.00``). Each direction is its own rate, set by whoever
runs the platform; the difference between a rate and the inverse of its opposite is the spread.

Conversion of minor units (exact, with ``Fraction``)::

    to_minor = floor(from_minor * rate * 10 ** (to_decimals - from_decimals))

Rounding always favours the platform: the user receives the floor, never a fraction more. A
quote fixes ``from_amount``, ``to_amount`` and ``rate`` for a short while (``expires_at``, whole
epoch seconds, also the table's TTL); a swap executes a quote at most once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from chalicelib.domain.errors import ConvertedAmountOutOfRange, SameCurrencySwap
from chalicelib.domain.money import MAX_INTEGER_DIGITS, currency, format_amount

# Enough for any real price (a satoshi in USD, a dollar in wei) without inviting typos.
MAX_RATE_DIGITS = 30
_RATE = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"  # the ledger's timestamp format (see adapters/clock.py)


class RateSource(Protocol):
    """Where rates come from (a settings table, a price feed)."""

    def rate(self, from_code: str, to_code: str) -> Decimal:
        """Units of ``to_code`` per one unit of ``from_code``, exact.

        Raises:
            RateUnavailable: no rate for this direction now.
        """
        ...


def parse_rate(text: object) -> Decimal:
    """A rate from a plain positive decimal string (``"0.00001047"``), exactly.

    Rates come from configuration or a feed, not from callers, so a bad one is a ``ValueError``
    (a fault to fix), not a request error.

    Raises:
        ValueError: not a string, not a plain decimal (signs, exponents, spaces), zero, or more
            than ``MAX_RATE_DIGITS`` digits.
    """
    if not isinstance(text, str) or _RATE.fullmatch(text) is None:
        raise ValueError(f"rate {text!r} is not a plain decimal string")
    if sum(ch.isdigit() for ch in text) > MAX_RATE_DIGITS:
        raise ValueError(f"rate {text!r} has more than {MAX_RATE_DIGITS} digits")
    rate = Decimal(text)  # exact: Decimal() from a string does not round
    if rate <= 0:
        raise ValueError(f"rate {text!r} must be greater than zero")
    return rate


def format_rate(rate: Decimal) -> str:
    """The rate as a plain decimal string, as configured (never an exponent)."""
    return format(rate, "f")


def convert(from_minor: int, from_code: str, to_code: str, rate: Decimal) -> int:
    """Minor units of ``to_code`` bought by ``from_minor`` minor units of ``from_code``, floored.

    Raises:
        UnsupportedCurrency: either currency is not supported.
    """
    scale = currency(to_code).decimals - currency(from_code).decimals
    exact = Fraction(from_minor) * Fraction(rate) * Fraction(10) ** scale
    return math.floor(exact)


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the epoch, floored, computed without float."""
    return (moment - _EPOCH) // _SECOND


def expiry_of(created_at: datetime, ttl_seconds: int) -> int:
    """The epoch second a quote created at ``created_at`` stops being valid: at least
    ``ttl_seconds`` later, rounded up to a whole second (the table's TTL is whole seconds)."""
    whole, part = divmod(created_at - _EPOCH, _SECOND)
    return whole + (1 if part else 0) + ttl_seconds


def check_pair(from_code: str, to_code: str) -> None:
    """Raises SameCurrencySwap when both currencies are the same."""
    if from_code == to_code:
        raise SameCurrencySwap(f"a swap from {from_code} to {to_code} exchanges nothing")


@dataclass(frozen=True)
class Quote:
    """A priced offer to one user: ``from_amount`` of ``from_currency`` for ``to_amount`` of
    ``to_currency``, valid while ``now < expires_at`` (epoch seconds), usable once."""

    id: str
    user_id: str
    from_currency: str
    to_currency: str
    from_amount: int
    to_amount: int
    rate: Decimal
    created_at: str
    expires_at: int
    used: bool = False
    transaction_id: str | None = None

    def expired(self, now: datetime) -> bool:
        # expires_at is a whole second, so comparing whole seconds is exact.
        return epoch_seconds(now) >= self.expires_at

    @property
    def expires_at_iso(self) -> str:
        return (_EPOCH + self.expires_at * _SECOND).strftime(_ISO)


def price(
    *,
    quote_id: str,
    user_id: str,
    from_code: str,
    to_code: str,
    from_minor: int,
    rate: Decimal,
    created_at: datetime,
    ttl_seconds: int,
) -> Quote:
    """A quote for ``from_minor`` at ``rate``.

    Raises:
        SameCurrencySwap: both currencies are the same.
        ConvertedAmountOutOfRange: the converted amount is below one minor unit of ``to_code``,
            or has more than 18 integer digits (the API's limit for any amount).
    """
    check_pair(from_code, to_code)
    to_minor = convert(from_minor, from_code, to_code, rate)
    to_decimals = currency(to_code).decimals
    if to_minor <= 0:
        smallest = format_amount(1, to_code)
        raise ConvertedAmountOutOfRange(
            f"{format_amount(from_minor, from_code)} {from_code} buys less than "
            f"{smallest} {to_code}"
        )
    if to_minor >= 10 ** (MAX_INTEGER_DIGITS + to_decimals):
        raise ConvertedAmountOutOfRange(
            f"the converted amount has more than {MAX_INTEGER_DIGITS} integer digits"
        )
    return Quote(
        id=quote_id,
        user_id=user_id,
        from_currency=from_code,
        to_currency=to_code,
        from_amount=from_minor,
        to_amount=to_minor,
        rate=rate,
        created_at=created_at.astimezone(UTC).strftime(_ISO),
        expires_at=expiry_of(created_at, ttl_seconds),
    )
