"""A tamper-evident audit trail: each UTC day's events are sealed into a digest chained to the
previous day's, and the chain can be recomputed to find the first day where it breaks.

Sealing a day (the scheduled function, early each UTC day, for the days up to yesterday):

    events_hash = sha256( line(e1) + "\\n" + line(e2) + "\\n" + ... )   # all events of the day,
                                                                     # in <at>#<id> order
    digest      = sha256( previous_digest + "\\n" + day + "\\n" + count + "\\n" + events_hash )

where ``line(e)`` is the event's canonical JSON (sorted keys, no spaces, UTF-8) and the first
sealed day's ``previous_digest`` is ``GENESIS``. Days without events are sealed too (count 0),
so the chain has no holes. Each digest is written once, with the chain head
(``AUDITDIGEST#HEAD``) moved in the same conditional write, so two sealers cannot fork it.

Verifying a range of days recomputes, for each sealed day: the digest from its own fields
(an edited digest), the link to the previous day's digest (an edited or replaced earlier day),
and the events hash from the events stored now (an edited, deleted or inserted event). It names
the first day that fails and why. What this does and does not prove: docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso, parse_iso
from chalicelib.domain.audit import ChainHead, DayDigest, event_order
from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.users import AuditEvent

logger = Logger(child=True)
GENESIS = "0" * 64
# One run seals at most this many days (a chain left unsealed for longer catches up over runs).
MAX_DAYS_PER_RUN = 400
MAX_VERIFY_DAYS = 3660


class AuditChainStore(Protocol):
    """The events of a day and the chain of digests (``adapters.dynamo.audit_repository``)."""

    def events_of_day(self, day: str) -> list[AuditEvent]:
        """All of the day's events, in ``event_order``."""
        ...

    def get_digest(self, day: str) -> DayDigest | None: ...
    def get_head(self) -> ChainHead | None: ...
    def seal(self, digest: DayDigest, head: ChainHead | None) -> None:
        """Write the day's digest and move the head from ``head`` to it, both or neither;
        InvalidState if the head moved meanwhile."""
        ...


# -- the hash chain (pure) ----------------------------------------------------------------------
def canonical_line(event: AuditEvent) -> bytes:
    """The one serialization of an event that its day's hash covers."""
    return json.dumps(
        {
            "id": event.id,
            "at": event.at,
            "actor_id": event.actor_id,
            "action": event.action,
            "target": event.target,
            "ip": event.ip,
            "details": {str(k): str(v) for k, v in event.details.items()},
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def events_hash(events: Iterable[AuditEvent]) -> tuple[int, str]:
    """How many events, and the hash of their canonical lines in ``<at>#<id>`` order."""
    ordered = sorted(events, key=event_order)
    digest = hashlib.sha256()
    for event in ordered:
        digest.update(canonical_line(event) + b"\n")
    return len(ordered), digest.hexdigest()


def chain_digest(previous: str, day: str, count: int, hashed: str) -> str:
    return hashlib.sha256(f"{previous}\n{day}\n{count}\n{hashed}".encode()).hexdigest()


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _previous_day(day: str) -> str:
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


def as_day(name: str, value: str) -> str:
    """A UTC day from a date (``2026-11-23``) or an ISO-8601 instant (its UTC date)."""
    try:
        if len(value) == len("YYYY-MM-DD"):
            return date.fromisoformat(value).isoformat()
        return parse_iso(value).astimezone(UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(
            f"{name} must be a date (YYYY-MM-DD) or an ISO-8601 instant",
            [{"field": name, "message": "not a date"}],
        ) from exc


def yesterday(now: datetime | None = None) -> str:
    return ((now or datetime.now(UTC)).date() - timedelta(days=1)).isoformat()


# -- sealing ------------------------------------------------------------------------------------
def seal_through(
    repository: AuditChainStore,
    last_day: str | None = None,
    *,
    first_day: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[DayDigest]:
    """Seal every unsealed day up to ``last_day`` (default: yesterday, UTC), in order.

    The chain continues from its head; an empty chain starts at ``first_day`` (default:
    ``last_day``). Only past days can be sealed: events of today are still being written.

    Raises:
        InvalidRequest: a day is not a date, or ``last_day`` is not in the past.
        InvalidState: another sealer moved the chain meanwhile (nothing of this run is lost:
            what was sealed stays sealed, and the next run continues from the new head).
    """
    today = now().date().isoformat()
    last_day = as_day("to", last_day) if last_day else yesterday(now())
    if last_day >= today:
        raise InvalidRequest(
            "only past days can be sealed", [{"field": "to", "message": "not before today"}]
        )
    head = repository.get_head()
    day = _next_day(head.day) if head else as_day("from", first_day or last_day)
    sealed: list[DayDigest] = []
    while day <= last_day and len(sealed) < MAX_DAYS_PER_RUN:
        count, hashed = events_hash(repository.events_of_day(day))
        previous = head.digest if head else GENESIS
        digest = DayDigest(
            day=day,
            event_count=count,
            events_hash=hashed,
            previous_digest=previous,
            digest=chain_digest(previous, day, count, hashed),
            sealed_at=now_iso(),
        )
        repository.seal(digest, head)
        # The digest leaves the table here too: the log is the anchor (docs/audit.md).
        logger.info(
            "audit day sealed",
            audit_day=day,
            digest=digest.digest,
            previous_digest=previous,
            event_count=count,
        )
        sealed.append(digest)
        head = ChainHead(day=day, digest=digest.digest)
        day = _next_day(day)
    return sealed


# -- verifying ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing the chain over [first_day, last_day]."""

    ok: bool
    first_day: str
    last_day: str
    days_checked: int
    broken_day: str | None = None
    problem: str | None = None
    # Days of the range after the chain's head (not sealed yet): nothing is claimed about them.
    unsealed_from: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def verify(
    repository: AuditChainStore,
    first_day: str,
    last_day: str,
    *,
    max_days: int = MAX_VERIFY_DAYS,
) -> Verification:
    """Recompute the chain over the days [first_day, last_day] and name the first broken day.

    Days before the chain's first digest are skipped; once a digest is found every later day of
    the range up to the head must have one.

    Raises:
        InvalidRequest: a day is not a date, the range is reversed or longer than ``max_days``
            (default 10 years; about five DynamoDB round trips per day).
    """
    first_day, last_day = as_day("from", first_day), as_day("to", last_day)
    if first_day > last_day:
        raise InvalidRequest(
            "from must not be after to", [{"field": "from", "message": "after to"}]
        )
    if (date.fromisoformat(last_day) - date.fromisoformat(first_day)).days >= max_days:
        raise InvalidRequest(
            f"a verification covers at most {max_days} days",
            [{"field": "from", "message": f"at most {max_days} days before to"}],
        )
    head = repository.get_head()
    end = min(last_day, head.day) if head else None
    unsealed = None
    if head is None:
        unsealed = first_day
    elif head.day < last_day:
        unsealed = max(_next_day(head.day), first_day)

    def result(checked: int, day: str | None = None, problem: str | None = None) -> Verification:
        return Verification(
            ok=problem is None,
            first_day=first_day,
            last_day=last_day,
            days_checked=checked,
            broken_day=day,
            problem=problem,
            unsealed_from=unsealed,
        )

    previous: DayDigest | None = None
    started = False
    checked = 0
    day = first_day
    while end is not None and day <= end:
        sealed = repository.get_digest(day)
        if sealed is None:
            if started:
                return result(checked, day, "the day's digest is missing (deleted)")
            day = _next_day(day)
            continue
        if not started:
            started = True
            previous = repository.get_digest(_previous_day(day))
            if previous is None and sealed.previous_digest != GENESIS:
                return result(checked, day, "the previous day's digest is missing (deleted)")
        problem = _check_day(repository, sealed, previous)
        if problem is None and day == head.day and sealed.digest != head.digest:
            problem = "the chain head does not match the day's digest"
        if problem is not None:
            return result(checked, day, problem)
        checked += 1
        previous = sealed
        day = _next_day(day)
    return result(checked)


def _check_day(
    repository: AuditChainStore, sealed: DayDigest, previous: DayDigest | None
) -> str | None:
    expected_previous = previous.digest if previous is not None else GENESIS
    if sealed.previous_digest != expected_previous:
        return "the link to the previous day's digest does not match (a day before was re-sealed)"
    recomputed = chain_digest(
        sealed.previous_digest, sealed.day, sealed.event_count, sealed.events_hash
    )
    if recomputed != sealed.digest:
        return "the stored digest does not match its own fields (the digest was edited)"
    count, hashed = events_hash(repository.events_of_day(sealed.day))
    if count < sealed.event_count:
        return f"{sealed.event_count - count} audit event(s) of the day are missing (deleted)"
    if count > sealed.event_count:
        return f"{count - sealed.event_count} audit event(s) were added to the day after sealing"
    if hashed != sealed.events_hash:
        return "an audit event of the day was changed after sealing"
    return None
