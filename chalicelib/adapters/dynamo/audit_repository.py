"""Audit events and their daily digests on the table: reads by day, and the chain's writes.

One day's events are spread over ``keys.AUDIT_SHARDS`` partitions (so a busy day's writes do
not all land on one partition); within a day, the sort key ``<at>#<id>`` is one global order, so
the shards' results merge into it and "events after this one" is a key range.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import AuditChainHeadItem, AuditDigestItem, AuditItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.errors import InvalidState
from chalicelib.domain.users import AuditEvent


@dataclass(frozen=True)
class DayDigest:
    """What the table holds about one sealed day."""

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


def _sort_key(event: AuditEvent) -> str:
    return keys.audit_sk(event.at, event.id)


class DynamoAuditRepository:
    # -- events ---------------------------------------------------------------------------------
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
