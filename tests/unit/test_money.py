"""Amounts at the API edge: strict decimal strings in, integer minor units out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import InvalidAmount, UnsupportedCurrency
from chalicelib.domain.money import CURRENCIES, format_amount, parse_amount


@pytest.mark.parametrize(
    ("raw", "code", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12", "USD", 1200),
        ("0.01", "USD", 1),
        ("12.3", "USD", 1230),
        ("0.00015000", "BTC", 15000),
        ("1", "ETH", 10**18),
        ("0.000000000000000001", "ETH", 1),
        ("999999999999999999.999999", "USDT", 999999999999999999999999),
    ],
)
def test_valid_amounts_parse_to_minor_units(raw, code, minor):
    assert parse_amount(raw, code) == minor


@pytest.mark.parametrize(
    "raw",
    [
        12.34,  # a JSON number
        12,
        None,
        True,
        "-1.00",
        "+1.00",
        "0",
        "0.00",
        "1.001",  # more decimals than USD has
        "1e3",
        " 1.00",
        "1.00 ",
        "1.",
        ".5",
        "1,00",
        "١٢",  # non-ASCII digits
        "",
        "1234567890123456789",  # 19 integer digits
        "NaN",
        "Infinity",
    ],
)
def test_invalid_amounts_are_refused(raw):
    with pytest.raises(InvalidAmount):
        parse_amount(raw, "USD")


@pytest.mark.parametrize("code", ["usd", "EUR", "", None, 1])
def test_unknown_currencies_are_refused(code):
    with pytest.raises(UnsupportedCurrency):
        parse_amount("1.00", code)


def test_eighteen_integer_digits_are_the_limit():
    assert parse_amount("9" * 18, "USD") == int("9" * 18) * 100


def test_formatting_keeps_every_decimal_and_the_sign():
    assert format_amount(1234, "USD") == "12.34"
    assert format_amount(-5, "USD") == "-0.05"
    assert format_amount(15000, "BTC") == "0.00015000"
    assert format_amount(0, "USDT") == "0.000000"


@given(code=st.sampled_from(sorted(CURRENCIES)), minor=st.integers(1, 10**36 - 1))
def test_format_then_parse_is_the_identity(code, minor):
    decimals = CURRENCIES[code].decimals
    if minor >= 10 ** (18 + decimals):
        return
    assert parse_amount(format_amount(minor, code), code) == minor
