"""The days a reconciliation covers and the instant it closes accounts at (UTC throughout)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.domain.errors import InvalidRequest

CUTOFF_MARGIN = timedelta(seconds=1)  # see closing_cutoff


def parse_day(text: Any, today: date) -> str:
    """A reconciliation date: ``YYYY-MM-DD``, today at the latest (UTC).

    Today runs as a *partial* day: everything written so far is checked and checkpointed, and
    the report is provisional (a later run of the same day sees more activity). The nightly run
    of the day, after it ended, redoes it from the same starting point and replaces the report
    and the checkpoints, so nothing of the partial run remains. Future days are refused.

    Raises:
        InvalidRequest: not a date, or a day after today.
    """
    if not isinstance(text, str):
        raise InvalidRequest("date must be a string YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest("date must be a date YYYY-MM-DD") from exc
    if len(text) != 10:
        raise InvalidRequest("date must be a date YYYY-MM-DD")
    if day > today:
        raise InvalidRequest("date must not be in the future (UTC)")
    return day.isoformat()


def closing_cutoff(now: str) -> str:
    """The instant a run closes every account at: a little before it started. Accounts are read
    one after another, so without one cut a transfer landing between two reads would count on
    one side only (a false trial-balance mismatch when reconciling today, or ``--full`` on a live
    table). The margin covers writes whose time was taken just before the run but that commit
    during it (the engine takes the time, then commits within its bounded retries)."""
    return to_iso(parse_iso(now) - CUTOFF_MARGIN)


def today_utc() -> date:
    return datetime.now(UTC).date()


def yesterday_utc() -> str:
    return (today_utc() - timedelta(days=1)).isoformat()


def day_after(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def days_between(after: str, through: str) -> list[str]:
    """The days after ``after`` up to and including ``through``."""
    days, current = [], day_after(after)
    while current <= through:
        days.append(current)
        current = day_after(current)
    return days
