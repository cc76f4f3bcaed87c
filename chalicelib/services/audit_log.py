"""Reading the audit trail (``GET /v1/admin/audit``): events in a time range, oldest first,
optionally of one actor or one action, a page at a time.

How a page walks the stored days, and what its cursor is, is the store's
(``adapters.dynamo.audit_repository.DynamoAuditRepository.page``).

Defaults: ``to`` is now; ``from`` is ``DEFAULT_WINDOW`` before ``to``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.domain.audit import AuditPage
from chalicelib.domain.errors import InvalidRequest

DEFAULT_WINDOW = timedelta(hours=24)
MAX_FILTER_LENGTH = 128


class AuditReader(Protocol):
    """The audit trail's reads (``adapters.dynamo.audit_repository``)."""

    def page(
        self,
        *,
        since: str,
        until: str,
        actor_id: str | None,
        action: str | None,
        limit: int,
        cursor: str | None,
    ) -> AuditPage:
        """Events in [since, until], oldest first, from ``cursor`` on; InvalidRequest for a
        cursor it did not hand out."""
        ...


def _filter(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not 0 < len(value) <= MAX_FILTER_LENGTH:
        raise InvalidRequest(
            f"{name} must have 1 to {MAX_FILTER_LENGTH} characters",
            [{"field": name, "message": "empty or too long"}],
        )
    return value


def query(
    repository: AuditReader,
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
    return repository.page(
        since=since, until=until, actor_id=actor_id, action=action, limit=limit, cursor=cursor
    )
