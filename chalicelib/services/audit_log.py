"""Reading the audit trail (``GET /v1/admin/audit``): events in a time range, oldest first,
optionally of one actor or one action, a page at a time.

Events live in per-day partitions (``AUDIT#<day>#<shard>``), so a page walks the range day by day
and merges each day's shards into the ``<at>#<id>`` order. The cursor is the sort key of the last
event returned (or the next day to look at): stable while new events arrive. A page looks at
most ``MAX_DAYS_PER_PAGE`` days, so a long, sparse range costs bounded work per request; when it
stops early the page may be short and ``next_cursor`` carries on from the next day.

Defaults: ``to`` is now; ``from`` is ``DEFAULT_WINDOW`` before ``to``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.users import AuditEvent

if TYPE_CHECKING:
    from chalicelib.adapters.dynamo.audit_repository import DynamoAuditRepository

DEFAULT_WINDOW = timedelta(hours=24)
MAX_DAYS_PER_PAGE = 31
MAX_FILTER_LENGTH = 128


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _filter(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not 0 < len(value) <= MAX_FILTER_LENGTH:
        raise InvalidRequest(
            f"{name} must have 1 to {MAX_FILTER_LENGTH} characters",
            [{"field": name, "message": "empty or too long"}],
        )
    return value


def _decode_cursor(cursor: str, low: str, high: str) -> str:
    try:
        after = cursors.decode(cursor, partition={}, ranges={"after": (low, high)})["after"]["S"]
        date.fromisoformat(after[:10])  # a day that exists (not 2025-02-30): a cursor of ours
        return after
    except ValueError as exc:
        raise InvalidRequest(
            "cursor is not valid",
            [{"field": "cursor", "message": "is not a cursor this list returned"}],
        ) from exc


def _encode_cursor(after: str) -> str:
    return cursors.encode({"after": {"S": after}})


def query(
    repository: DynamoAuditRepository,
    *,
    since: str | None,
    until: str | None,
    actor_id: str | None = None,
    action: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    now: datetime | None = None,
) -> AuditPage:
    """One page of audit events in [since, until] (canonical ISO instants, inclusive).

    Raises:
        InvalidRequest: a filter is empty or too long, ``from`` is after ``to``, or the cursor
            is not one this query returned.
    """
    actor_id = _filter("actor_id", actor_id)
    action = _filter("action", action)
    until = until or to_iso(now or datetime.now(UTC))
    since = since or to_iso(parse_iso(until) - DEFAULT_WINDOW)
    if since > until:
        raise InvalidRequest(
            "from must not be after to", [{"field": "from", "message": "after to"}]
        )
    low, high = keys.audit_time_bounds(since, until)
    after = _decode_cursor(cursor, since[:10], high) if cursor else None
    day = max((after or since)[:10], since[:10])
    last_day = until[:10]
    events: list[AuditEvent] = []
    for _ in range(MAX_DAYS_PER_PAGE):
        if day > last_day:
            return AuditPage(events, None)
        events += repository.events_of_day(
            day,
            low=low,
            high=high,
            after=after,
            actor_id=actor_id,
            action=action,
            limit=limit - len(events),
        )
        if len(events) >= limit:
            last = events[-1]
            return AuditPage(events, _encode_cursor(keys.audit_sk(last.at, last.id)))
        day = _next_day(day)
    # The day budget ran out before the range did: carry on from the next day.
    return AuditPage(events, _encode_cursor(day) if day <= last_day else None)
