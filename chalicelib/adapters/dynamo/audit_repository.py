"""Audit events and their daily digests on the table: reads by day, and the chain's writes.

One day's events are spread over ``keys.AUDIT_SHARDS`` partitions (so a busy day's writes do
not all land on one partition); within a day, the sort key ``<at>#<id>`` is one global order, so
the shards' results merge into it and "events after this one" is a key range.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import date, timedelta

from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.adapters.dynamo.models import AuditChainHeadItem, AuditDigestItem, AuditItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.audit import AuditPage, ChainHead, DayDigest
from chalicelib.domain.errors import InvalidRequest, InvalidState
from chalicelib.domain.users import AuditEvent


def _sort_key(event: AuditEvent) -> str:
    """The table's order of a day's events, which is ``domain.audit.event_order`` (a test)."""
    return keys.audit_sk(event.at, event.id)


# A page looks at most this many days, so a long, sparse range costs bounded work per request.
MAX_DAYS_PER_PAGE = 31


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


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


class DynamoAuditRepository:
    # -- events ---------------------------------------------------------------------------------
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
        """One page of events in [since, until] (canonical ISO instants), oldest first.

        Events live in per-day partitions, so a page walks the range day by day and merges each
        day's shards into the ``<at>#<id>`` order. The cursor is the sort key of the last event
        returned (or the next day to look at): stable while new events arrive. A page looks at
        most ``MAX_DAYS_PER_PAGE`` days; when it stops early the page may be short and
        ``next_cursor`` carries on from the next day.

        Raises:
            InvalidRequest: the cursor is not one this query returned.
        """
        low, high = keys.audit_time_bounds(since, until)
        after = _decode_cursor(cursor, since[:10], high) if cursor else None
        day = max((after or since)[:10], since[:10])
        last_day = until[:10]
        events: list[AuditEvent] = []
        for _ in range(MAX_DAYS_PER_PAGE):
            if day > last_day:
                return AuditPage(events, None)
            events += self.events_of_day(
                day,
                low=low,
                high=high,
                after=after,
                actor_id=actor_id,
                action=action,
                limit=limit - len(events),
            )
            if len(events) >= limit:
                return AuditPage(events, _encode_cursor(_sort_key(events[-1])))
            day = _next_day(day)
        # The day budget ran out before the range did: carry on from the next day.
        return AuditPage(events, _encode_cursor(day) if day <= last_day else None)

    def events_of_day(
        self,
        day: str,
        *,
        low: str = "",
        high: str = "~",
        after: str | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """The day's events with sort keys in [low, high] and above ``after``, in ``<at>#<id>``
        order, optionally only one actor's or one action's; at most ``limit`` (None: all)."""
        # Every key of the day starts with the day (DynamoDB refuses an empty bound).
        low, high = max(low, day), min(high, day + "~")
        if after is not None and after >= low:
            low = after + "\x00"  # the smallest key above ``after``
        if low > high:
            return []
        streams = [
            self._shard(pk, low, high, actor_id, action, limit) for pk in keys.audit_day_pks(day)
        ]
        merged: list[AuditEvent] = []
        for event in heapq.merge(*streams, key=_sort_key):
            merged.append(event)
            if limit is not None and len(merged) >= limit:
                break
        return merged

    @staticmethod
    def _shard(
        pk: str,
        low: str,
        high: str,
        actor_id: str | None,
        action: str | None,
        limit: int | None,
    ) -> Iterator[AuditEvent]:
        condition = None
        if actor_id is not None:
            condition = AuditItem.actor_id == actor_id
        if action is not None:
            by_action = AuditItem.action == action
            condition = by_action if condition is None else condition & by_action
        # Pages of ``limit`` items: the merge stops pulling once it has enough.
        results = AuditItem.query(
            pk,
            AuditItem.SK.between(low, high),
            filter_condition=condition,
            consistent_read=True,
            page_size=max(limit or 100, 25),
        )
        for item in results:
            yield item.to_domain()

    # -- digests --------------------------------------------------------------------------------
    def get_digest(self, day: str) -> DayDigest | None:
        try:
            item = AuditDigestItem.get(
                keys.audit_digest_pk(day), keys.AUDIT_DIGEST_SK, consistent_read=True
            )
        except AuditDigestItem.DoesNotExist:
            return None
        return DayDigest(
            day=item.day,
            event_count=int(item.event_count),
            events_hash=item.events_hash,
            previous_digest=item.previous_digest,
            digest=item.digest,
            sealed_at=item.sealed_at,
        )

    def get_head(self) -> ChainHead | None:
        try:
            item = AuditChainHeadItem.get(
                keys.AUDIT_DIGEST_HEAD_PK, keys.AUDIT_DIGEST_SK, consistent_read=True
            )
        except AuditChainHeadItem.DoesNotExist:
            return None
        return ChainHead(day=item.day, digest=item.digest)

    def seal(self, digest: DayDigest, head: ChainHead | None) -> None:
        """Write a day's digest and move the head to it, in one write, only if the head is still
        ``head`` (None: the chain is empty) and the day has no digest yet.

        Raises:
            InvalidState: another sealer moved the head, or the day is sealed already.
        """
        write = AtomicWrite()
        item = AuditDigestItem(
            keys.audit_digest_pk(digest.day),
            keys.AUDIT_DIGEST_SK,
            item_type=AuditDigestItem.ITEM_TYPE,
            day=digest.day,
            event_count=digest.event_count,
            events_hash=digest.events_hash,
            previous_digest=digest.previous_digest,
            digest=digest.digest,
            sealed_at=digest.sealed_at,
        )
        write.put(
            item,
            AuditDigestItem.PK.does_not_exist(),
            InvalidState(f"audit day {digest.day} is sealed already"),
        )
        new_head = AuditChainHeadItem(
            keys.AUDIT_DIGEST_HEAD_PK,
            keys.AUDIT_DIGEST_SK,
            item_type=AuditChainHeadItem.ITEM_TYPE,
            day=digest.day,
            digest=digest.digest,
        )
        condition = (
            AuditChainHeadItem.PK.does_not_exist()
            if head is None
            else (AuditChainHeadItem.day == head.day) & (AuditChainHeadItem.digest == head.digest)
        )
        write.put(new_head, condition, InvalidState("the audit chain head moved meanwhile"))
        write.send_or_raise_tag()
