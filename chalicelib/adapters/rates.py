"""Where fx rates come from: implementations of ``chalicelib.domain.fx.RateSource``.

``rate_source_for(settings)`` picks one by the ``FX_RATE_SOURCE`` setting. Today there is one,
``static``: a table of rates from the ``FX_RATES`` setting, e.g.
``{"USD/BTC": "0.00001047", "BTC/USD": "94525.00"}``. The local and test stages fall back to
``BUILT_IN_RATES``; a deployed stage without ``FX_RATES`` has no rates and refuses every quote
(``RateUnavailable``) rather than trade at made-up prices. docs/fx.md says how to add a feed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

from chalicelib.domain.errors import RateUnavailable, UnsupportedCurrency
from chalicelib.domain.fx import RateSource, parse_rate
from chalicelib.domain.money import currency

if TYPE_CHECKING:  # a type only: config imports adapters (secrets) at run time
    from chalicelib.config import Settings

# Approximate prices, each direction 0.1-0.5% below mid so that no round trip (A -> B -> A, or
# through a third currency) ends with more than it started: the spread is the platform's.
BUILT_IN_RATES: Mapping[str, str] = {
    "USD/BTC": "0.00001047",
    "USD/ETH": "0.0002842",
    "USD/USDT": "0.999",
    "BTC/USD": "94525.00",
    "BTC/ETH": "27.00",
    "BTC/USDT": "94525.00",
    "ETH/USD": "3482.50",
    "ETH/BTC": "0.03665",
    "ETH/USDT": "3482.50",
    "USDT/USD": "0.999",
    "USDT/BTC": "0.00001047",
    "USDT/ETH": "0.0002842",
}
STAGES_WITH_BUILT_IN_RATES = ("local", "test")


class StaticRateSource:
    """Rates from a fixed table keyed ``"FROM/TO"``.

    A missing direction is never derived from its inverse: the operator sets both directions
    (and so the spread) on purpose, and ``1 / rate`` would hand out the mid price for free.
    """

    def __init__(self, rates: Mapping[tuple[str, str], Decimal]) -> None:
        self._rates = dict(rates)

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> StaticRateSource:
        """Raises ValueError for a malformed pair name, an unsupported currency, a pair of one
        currency with itself, or a rate that is not a positive plain decimal string."""
        rates: dict[tuple[str, str], Decimal] = {}
        for pair, raw in table.items():
            codes = pair.split("/") if isinstance(pair, str) else []
            if len(codes) != 2 or codes[0] == codes[1]:
                raise ValueError(f"fx pair {pair!r} is not FROM/TO of two different currencies")
            try:
                from_code, to_code = (currency(code).code for code in codes)
            except UnsupportedCurrency as exc:  # a configuration fault, not a request error
                raise ValueError(f"fx pair {pair!r}: {exc}") from exc
            rates[(from_code, to_code)] = parse_rate(raw)
        return cls(rates)

    @classmethod
    def from_json(cls, text: str) -> StaticRateSource:
        """Raises ValueError: not a JSON object, or any entry ``from_table`` refuses."""
        try:
            table = json.loads(text)
        except ValueError as exc:
            raise ValueError("FX_RATES is not valid JSON") from exc
        if not isinstance(table, dict):
            raise ValueError('FX_RATES must be a JSON object like {"USD/BTC": "0.00001047"}')
        return cls.from_table(table)

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticRateSource:
        if settings.fx_rates:
            return cls.from_json(settings.fx_rates)
        if settings.stage in STAGES_WITH_BUILT_IN_RATES:
            return cls.from_table(BUILT_IN_RATES)
        return cls({})

    def rate(self, from_code: str, to_code: str) -> Decimal:
        found = self._rates.get((from_code, to_code))
        if found is None:
            raise RateUnavailable(f"no exchange rate is configured for {from_code}/{to_code}")
        return found


RATE_SOURCES: Mapping[str, Callable[[Settings], RateSource]] = {
    "static": StaticRateSource.from_settings,
}


@cache
def rate_source_for(settings: Settings) -> RateSource:
    """The rate source the settings name, built once per settings.

    Raises:
        ValueError: ``FX_RATE_SOURCE`` names no known source, or its configuration is invalid.
    """
    factory = RATE_SOURCES.get(settings.fx_rate_source)
    if factory is None:
        known = ", ".join(sorted(RATE_SOURCES))
        raise ValueError(f"FX_RATE_SOURCE {settings.fx_rate_source!r} is not one of: {known}")
    return factory(settings)
