"""Fx without I/O: exact conversion that always floors, quotes and their expiry, and the rate
table read from settings (both directions set by the operator, never inverted)."""

from __future__ import annotations

import ast
import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from chalicelib.adapters import rates
from chalicelib.adapters.rates import BUILT_IN_RATES, StaticRateSource, rate_source_for
from chalicelib.config import get_settings
from chalicelib.domain import fx
from chalicelib.domain.errors import (
    ConvertedAmountOutOfRange,
    InvalidAmount,
    InvalidRequest,
    RateUnavailable,
    SameCurrencySwap,
    UnsupportedCurrency,
)
from chalicelib.domain.money import CURRENCIES, parse_amount

PROJECT = Path(__file__).resolve().parents[2]
NOON = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def reference(from_minor: int, from_code: str, to_code: str, rate: str) -> int:
    """The conversion in plain integers: rate = numerator / 10**places."""
    whole, _, frac = rate.partition(".")
    numerator, places = int(whole + frac), len(frac)
    scale = CURRENCIES[to_code].decimals - CURRENCIES[from_code].decimals
    top = from_minor * numerator * 10 ** max(scale, 0)
    bottom = 10**places * 10 ** max(-scale, 0)
    return top // bottom


# -- conversion -----------------------------------------------------------------------------------
def test_one_dollar_buys_the_rate_in_satoshi():
    assert fx.convert(1_00, "USD", "BTC", Decimal("0.00001047")) == 1047


def test_conversion_floors_in_the_platforms_favour():
    # 0.01 USD * 0.00001047 = 0.0000001047 BTC = 10.47 satoshi: the user gets 10.
    assert fx.convert(1, "USD", "BTC", Decimal("0.00001047")) == 10
    # 0.00052350 BTC * 94525.00 = 49.4838375 USD: the user gets 49.48.
    assert fx.convert(52350, "BTC", "USD", Decimal("94525.00")) == 4948


def test_an_exact_result_is_not_floored_below_itself():
    assert fx.convert(50_00, "USD", "BTC", Decimal("0.00001047")) == 52350
    assert fx.convert(100_000000, "USDT", "USD", Decimal("0.999")) == 99_90


def test_eighteen_decimal_eth_converts_exactly_both_ways():
    assert fx.convert(1_00, "USD", "ETH", Decimal("0.0002842")) == 284_200_000_000_000
    assert fx.convert(10**18, "ETH", "USD", Decimal("3482.50")) == 3482_50
    # One wei is worth far less than a cent.
    assert fx.convert(1, "ETH", "USD", Decimal("3482.50")) == 0
    # 1 wei short of a cent's worth still floors to nothing.
    wei_per_cent = 10**18 // 348250 + 1  # the smallest wei amount worth at least 0.01 USD
    assert fx.convert(wei_per_cent - 1, "ETH", "USD", Decimal("3482.50")) == 0
    assert fx.convert(wei_per_cent, "ETH", "USD", Decimal("3482.50")) == 1


def test_huge_amounts_keep_every_digit():
    most_btc = parse_amount("999999999999999999.99999999", "BTC")
    result = fx.convert(most_btc, "BTC", "ETH", Decimal("27.00"))
    assert result == 26_999_999_999_999_999_999_999_999_730_000_000_000
    assert result == reference(most_btc, "BTC", "ETH", "27.00")
    # A float would have kept ~16 significant digits of these 38.
    assert result != int(float(most_btc) * 27.0 * 1e10)


@pytest.mark.parametrize(
    ("from_code", "to_code", "rate"),
    [
        ("USD", "ETH", "0.000285714285714285714285"),
        ("ETH", "BTC", "0.036657894736842105263157"),
        ("USDT", "ETH", "0.333333333333333333333333333"),
        ("ETH", "USDT", "3482.123456789012345678"),
        ("BTC", "USD", "94525.99"),
    ],
)
@pytest.mark.parametrize("amount", [1, 7, 10**6 + 3, 123456789012345678901234567, 10**36 - 1])
def test_conversion_matches_integer_arithmetic(from_code, to_code, rate, amount):
    assert fx.convert(amount, from_code, to_code, Decimal(rate)) == reference(
        amount, from_code, to_code, rate
    )


def test_conversion_is_exact_where_float_is_not():
    # 0.1 has no float representation; Decimal("0.1") is exact.
    assert fx.convert(3, "USD", "USDT", Decimal("0.1")) == 3000
    assert Fraction(Decimal("0.1")) == Fraction(1, 10)


@pytest.mark.parametrize(
    "module",
    [
        "chalicelib/domain/fx.py",
        "chalicelib/adapters/rates.py",
        "chalicelib/services/fx.py",
        "chalicelib/api/fx.py",
    ],
)
def test_no_float_anywhere_in_fx(module):
    tree = ast.parse((PROJECT / module).read_text())
    floats = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Name) and node.id == "float")
        or (isinstance(node, ast.Constant) and isinstance(node.value, float))
        or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div))
        or (isinstance(node, ast.Attribute) and node.attr == "timestamp")
    ]
    assert floats == [], f"{module} uses float (or true division) on lines {floats}"


# -- quotes ---------------------------------------------------------------------------------------
def price(from_code="USD", to_code="BTC", from_minor=50_00, rate="0.00001047", at=NOON):
    return fx.price(
        quote_id="fxq_1",
        user_id="usr_1",
        from_code=from_code,
        to_code=to_code,
        from_minor=from_minor,
        rate=Decimal(rate),
        created_at=at,
        ttl_seconds=60,
    )


def test_a_quote_fixes_both_amounts_and_the_rate():
    quote = price()
    assert (quote.from_amount, quote.to_amount, quote.rate) == (50_00, 52350, Decimal("0.00001047"))
    assert not quote.used
    assert quote.created_at == "2025-03-01T12:00:00.000000Z"
    assert quote.expires_at_iso == "2025-03-01T12:01:00.000000Z"
    assert quote.expires_at == fx.epoch_seconds(NOON) + 60


def test_a_quote_expires_on_a_whole_second_at_least_the_ttl_later():
    quote = price(at=NOON + timedelta(microseconds=1))
    assert quote.expires_at_iso == "2025-03-01T12:01:01.000000Z"


def test_a_quote_is_valid_until_its_expiry_instant_and_not_at_it():
    quote = price()
    expiry = NOON + timedelta(seconds=60)
    assert not quote.expired(expiry - timedelta(microseconds=1))
    assert quote.expired(expiry)
    assert quote.expired(expiry + timedelta(days=1))


def test_a_quote_in_one_currency_is_refused_as_an_invalid_request():
    with pytest.raises(SameCurrencySwap) as caught:
        price(to_code="USD")
    assert isinstance(caught.value, InvalidRequest)


def test_a_quote_that_buys_nothing_is_an_invalid_amount():
    with pytest.raises(ConvertedAmountOutOfRange) as caught:
        price(from_code="ETH", to_code="USD", from_minor=1, rate="3482.50")
    assert isinstance(caught.value, InvalidAmount)
    assert "less than 0.01 USD" in str(caught.value)


def test_a_quote_whose_result_exceeds_eighteen_integer_digits_is_refused():
    most_btc = parse_amount("999999999999999999", "BTC")
    with pytest.raises(ConvertedAmountOutOfRange):
        price(from_code="BTC", to_code="USD", from_minor=most_btc, rate="94525.00")


def test_a_quote_in_an_unsupported_currency_is_refused():
    with pytest.raises(UnsupportedCurrency):
        price(to_code="DOGE")


# -- rates ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["0.00001047", "94525.00", "1", "27.000000000000000000000001"])
def test_a_plain_decimal_string_is_a_rate_exactly(text):
    assert fx.parse_rate(text) == Decimal(text)
    assert fx.format_rate(fx.parse_rate(text)) == text


@pytest.mark.parametrize(
    "raw",
    ["0", "0.000", "-1", "+1", "1e-5", "1E5", " 1", "1 ", "1.", ".5", "", "NaN", "Infinity",
     "1" * 31, 1, 1.5, None, Decimal("1")],
)  # fmt: skip
def test_anything_else_is_not_a_rate(raw):
    with pytest.raises(ValueError, match="rate"):
        fx.parse_rate(raw)


def test_a_tiny_rate_is_shown_without_an_exponent():
    assert fx.format_rate(fx.parse_rate("0.0000001")) == "0.0000001"


def test_the_static_source_answers_each_configured_direction():
    source = StaticRateSource.from_json('{"USD/BTC": "0.00001050", "BTC/USD": "95000.00"}')
    assert source.rate("USD", "BTC") == Decimal("0.00001050")
    assert source.rate("BTC", "USD") == Decimal("95000.00")


def test_a_missing_direction_is_not_derived_from_its_inverse():
    source = StaticRateSource.from_json('{"BTC/USD": "95000.00"}')
    with pytest.raises(RateUnavailable, match="USD/BTC"):
        source.rate("USD", "BTC")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '["USD/BTC", "1"]',
        '{"USDBTC": "1"}',
        '{"USD/BTC/ETH": "1"}',
        '{"USD/USD": "1"}',
        '{"USD/DOGE": "1"}',
        '{"usd/btc": "1"}',
        '{"USD/BTC": 0.00001}',
        '{"USD/BTC": "-1"}',
    ],
)
def test_a_malformed_rate_table_is_a_configuration_error(text):
    with pytest.raises(ValueError, match=r"FX_RATES|fx pair|rate"):
        StaticRateSource.from_json(text)


def settings(**changes):
    get_settings.cache_clear()
    return dataclasses.replace(get_settings(), **changes)


def test_the_test_stage_without_fx_rates_has_all_twelve_built_in_pairs():
    source = rate_source_for(settings(stage="test", fx_rates=None))
    pairs = list(itertools.permutations(CURRENCIES, 2))
    assert len(pairs) == len(BUILT_IN_RATES) == 12
    for from_code, to_code in pairs:
        assert source.rate(from_code, to_code) == Decimal(BUILT_IN_RATES[f"{from_code}/{to_code}"])


@pytest.mark.parametrize("length", [2, 3])
def test_no_round_trip_through_the_built_in_rates_ends_with_more(length):
    for cycle in itertools.permutations(CURRENCIES, length):
        legs = zip(cycle, cycle[1:] + cycle[:1], strict=True)
        product = Fraction(1)
        for a, b in legs:
            product *= Fraction(Decimal(BUILT_IN_RATES[f"{a}/{b}"]))
        assert Fraction(98, 100) < product < 1, cycle


def test_a_deployed_stage_without_fx_rates_refuses_every_pair():
    source = rate_source_for(settings(stage="prod", fx_rates=None))
    for from_code, to_code in itertools.permutations(CURRENCIES, 2):
        with pytest.raises(RateUnavailable):
            source.rate(from_code, to_code)


def test_fx_rates_replace_the_built_in_table():
    source = rate_source_for(settings(stage="local", fx_rates='{"ETH/USD": "4000.00"}'))
    assert source.rate("ETH", "USD") == Decimal("4000.00")
    with pytest.raises(RateUnavailable):
        source.rate("USD", "ETH")


def test_an_unknown_rate_source_is_a_configuration_error():
    with pytest.raises(ValueError, match="oracle"):
        rate_source_for(settings(fx_rate_source="oracle"))


def test_a_new_rate_source_plugs_in_by_name(monkeypatch):
    class Fixed:
        def rate(self, from_code: str, to_code: str) -> Decimal:
            return Decimal("2")

    monkeypatch.setitem(rates.RATE_SOURCES, "fixed", lambda _settings: Fixed())
    assert rate_source_for(settings(fx_rate_source="fixed")).rate("USD", "BTC") == Decimal("2")
