"""The audit trail's terms beyond the event itself (``domain.users.AuditEvent``): the order of a
day's events, the page of a query, and the daily digests that chain the days (docs/audit.md)."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.users import AuditEvent


def event_order(event: AuditEvent) -> str:
    """The one order of a day's events, ``<at>#<id>``: the store keeps them in it (its sort key
    has the same form) and a day's hash is taken in it."""
    return f"{event.at}#{event.id}"


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None


@dataclass(frozen=True)
class DayDigest:
    """What is kept about one sealed day."""

    day: str
    event_count: int
    events_hash: str
    previous_digest: str
    digest: str
    sealed_at: str


@dataclass(frozen=True)
class ChainHead:
    day: str
    digest: str
