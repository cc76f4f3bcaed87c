"""Balance monitors: an operator's threshold on one account's balance, checked every 5 minutes
(``services/monitors.py``; docs/risk.md, "Balance monitors"). No I/O.

A monitor watches either one account (a user's or a facility's, by id) or a platform account (a
``PlatformKind`` in one currency, whose balance is the sum of its shards). Its balance is the
account's ``posted`` balance as the ledger signs it. ``below`` is crossed while the balance is
strictly under the threshold, ``above`` while strictly over it; the threshold is a signed amount
of the account's currency (zero and negative thresholds are meaningful: a platform account is
normally negative).

Its ``state`` is ``ok`` or ``crossed``; it moves only on a change (``ok -> crossed``: an alert;
``crossed -> ok``: a recovery notice), so a balance that stays crossed pages once. A disabled
monitor is no longer checked; it stays listed.

The out-of-the-box monitor (``DEFAULT_MONITOR_ID``): the ledger posts a card deposit as a debit
of Stripe clearing and a credit of the user's wallet, and a refund or a lost dispute the other way
round, so Stripe clearing's balance is normally *negative*: minus what Stripe holds for the
ledger's users. Above zero, more money has left through Stripe than came in through it: the
ledger owes Stripe (or money was created). From Stripe's side that is "our balance at Stripe is
below zero", hence the monitor's name; in the ledger's sign it is ``above 0``.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from chalicelib.domain.accounts import PlatformAccount, PlatformKind
from chalicelib.domain.errors import InvalidAmount, InvalidRequest
from chalicelib.domain.money import currency, parse_signed_amount

MAX_NAME_LENGTH = 100
DEFAULT_MONITOR_ID = "mon_default_stripe_clearing_usd"
DEFAULT_MONITOR_NAME = "Stripe clearing balance below zero (the ledger owes Stripe)"
_ZERO = re.compile(r"-?0{1,18}(?:\.(?P<frac>0{1,18}))?")


class MonitorCondition(StrEnum):
    BELOW = "below"
    ABOVE = "above"


class MonitorState(StrEnum):
    OK = "ok"
    CROSSED = "crossed"


def parse_threshold(raw: Any, code: str) -> int:
    """A signed decimal string of the currency, zero included, in minor units.

    Raises:
        UnsupportedCurrency, InvalidAmount: as ``money.parse_signed_amount``.
    """
    cur = currency(code)
    if isinstance(raw, str):
        zero = _ZERO.fullmatch(raw)
        if zero is not None:
            if len(zero.group("frac") or "") > cur.decimals:
                raise InvalidAmount(f"{cur.code} amounts have at most {cur.decimals} decimals")
            return 0
    return parse_signed_amount(raw, code)


def new_monitor_id(now: float | None = None) -> str:
    """``mon_`` + the creation time (ms, hex) + randomness: ids sort by creation."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"mon_{millis:012x}{secrets.token_hex(6)}"


@dataclass(frozen=True)
class BalanceMonitor:
    id: str
    name: str
    currency: str
    condition: MonitorCondition
    threshold: int  # minor units of ``currency``, signed
    created_at: str
    created_by: str | None  # None: the out-of-the-box monitor
    account_id: str | None = None
    platform: PlatformKind | None = None
    state: MonitorState = MonitorState.OK
    enabled: bool = True
    state_changed_at: str | None = None
    last_balance: int | None = None  # the balance of the last state change
    # The last state change's alert is not published yet: stored with the change, cleared once
    # the alert topic took it; each check publishes it again until then.
    alert_pending: bool = False
    disabled_at: str | None = None
    disabled_by: str | None = None

    def __post_init__(self) -> None:
        if (self.account_id is None) == (self.platform is None):
            raise InvalidRequest(
                "a monitor watches either account_id or platform and currency",
                [{"field": "account_id", "message": "give account_id or platform, not both"}],
            )
        if not self.name or len(self.name) > MAX_NAME_LENGTH:
            raise InvalidRequest(
                f"name must have 1 to {MAX_NAME_LENGTH} characters",
                [{"field": "name", "message": f"1 to {MAX_NAME_LENGTH} characters"}],
            )

    @property
    def platform_account(self) -> PlatformAccount | None:
        return PlatformAccount(self.platform, self.currency) if self.platform else None

    @property
    def target(self) -> str:
        """What it watches, for people: an account id, or ``platform stripe_clearing USD``."""
        if self.platform is not None:
            return f"platform {self.platform.value} {self.currency}"
        return f"account {self.account_id}"

    def crossed_at(self, balance: int) -> bool:
        if self.condition is MonitorCondition.BELOW:
            return balance < self.threshold
        return balance > self.threshold

    def after(self, balance: int, at: str) -> BalanceMonitor | None:
        """The monitor once it saw ``balance``, if its state changes (else None)."""
        state = MonitorState.CROSSED if self.crossed_at(balance) else MonitorState.OK
        if state is self.state:
            return None
        return replace(
            self, state=state, state_changed_at=at, last_balance=balance, alert_pending=True
        )

    def disabled(self, by: str, at: str) -> BalanceMonitor:
        return replace(self, enabled=False, disabled_at=at, disabled_by=by)


def default_monitor(at: str) -> BalanceMonitor:
    """The out-of-the-box monitor: Stripe clearing (USD) above zero (module docstring)."""
    return BalanceMonitor(
        id=DEFAULT_MONITOR_ID,
        name=DEFAULT_MONITOR_NAME,
        currency="USD",
        condition=MonitorCondition.ABOVE,
        threshold=0,
        created_at=at,
        created_by=None,
        platform=PlatformKind.STRIPE_CLEARING,
    )


@dataclass(frozen=True)
class MonitorPage:
    monitors: list[BalanceMonitor]
    next_cursor: str | None
