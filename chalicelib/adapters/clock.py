"""Time as the ledger writes it: ISO-8601 UTC, microseconds, ``Z``. Fixed width, so it sorts."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 instant with an offset or ``Z``.

    Raises:
        ValueError: not an ISO-8601 instant, or no offset given.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


def now_iso() -> str:
    return to_iso(datetime.now(UTC))
