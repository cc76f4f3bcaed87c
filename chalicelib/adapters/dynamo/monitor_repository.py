"""Balance monitors in DynamoDB: one directory partition (PK ``MONITORS``, SK ``MON#<id>``).
Implements ``services.monitors.MonitorRepository``.

Creating, disabling and each state change write the monitor and its audit event in one
``TransactWriteItems``; a state change is conditioned on the monitor being enabled and still in
the state the check read, so two concurrent checks store (and announce) one change.
"""

from __future__ import annotations

from pynamodb.exceptions import UpdateError

from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.adapters.dynamo.models import MonitorItem
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.monitors import BalanceMonitor, MonitorPage, MonitorState
from chalicelib.domain.users import AuditEvent

_SK_RANGE = (keys.MONITOR_PREFIX, keys.MONITOR_PREFIX + "\U0010ffff")


class _Lost(Exception):
    """The state-change condition was false (changed elsewhere, or disabled)."""


class DynamoMonitorRepository:
    """``services.monitors.MonitorRepository`` on the ledger table."""

    def create(self, monitor: BalanceMonitor, event: AuditEvent) -> None:
        """Raises VersionConflict: the id (or the event id) is taken; nothing is written."""
        write = AtomicWrite()
        write.put(
            MonitorItem.from_domain(monitor),
            MonitorItem.SK.does_not_exist(),
            VersionConflict("monitor id taken"),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def get(self, monitor_id: str) -> BalanceMonitor | None:
        try:
            item = MonitorItem.get(
                keys.MONITORS_PK, keys.monitor_sk(monitor_id), consistent_read=True
            )
        except MonitorItem.DoesNotExist:
            return None
        return item.to_domain()

    def page(self, limit: int, cursor: str | None) -> MonitorPage:
        """Raises ValueError: the cursor was not produced by this query."""
        start = None
        if cursor:
            start = cursors.decode(
                cursor, partition={"PK": keys.MONITORS_PK}, ranges={"SK": _SK_RANGE}
            )
        results = MonitorItem.query(
            keys.MONITORS_PK,
            MonitorItem.SK.startswith(keys.MONITOR_PREFIX),
            consistent_read=True,
            limit=limit,
            page_size=limit,
            last_evaluated_key=start,
        )
        found = [item.to_domain() for item in results]
        last = results.last_evaluated_key
        more = last is not None and len(found) == limit
        return MonitorPage(found, cursors.encode(last) if more else None)

    def all(self) -> list[BalanceMonitor]:
        found = MonitorItem.query(
            keys.MONITORS_PK,
            MonitorItem.SK.startswith(keys.MONITOR_PREFIX),
            consistent_read=True,
        )
        return [item.to_domain() for item in found]

    def disable(self, monitor: BalanceMonitor, event: AuditEvent) -> None:
        """Raises VersionConflict: the monitor is not (or no longer) enabled."""
        write = AtomicWrite()
        write.update(
            MonitorItem.from_domain(monitor),
            [
                MonitorItem.enabled.set(False),
                MonitorItem.disabled_at.set(monitor.disabled_at),
                MonitorItem.disabled_by.set(monitor.disabled_by),
            ],
            MonitorItem.enabled == True,  # noqa: E712 - a DynamoDB condition
            VersionConflict("the monitor is not enabled"),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def change_state(
        self, monitor: BalanceMonitor, expected: MonitorState, event: AuditEvent
    ) -> bool:
        write = AtomicWrite()
        write.update(
            MonitorItem.from_domain(monitor),
            [
                MonitorItem.state.set(monitor.state.value),
                MonitorItem.state_changed_at.set(monitor.state_changed_at),
                MonitorItem.last_balance.set(monitor.last_balance),
                MonitorItem.alert_pending.set(True),
            ],
            (MonitorItem.state == expected.value) & (MonitorItem.enabled == True),  # noqa: E712
            _Lost(),
        )
        write.append_audit(event)
        try:
            write.send_or_raise_tag()
        except _Lost:
            return False
        except VersionConflict:
            # A concurrent transaction touched the monitor: whichever run it was, the stored
            # state is no longer the one read; the next check starts from the new one.
            return False
        return True

    def alert_sent(self, monitor: BalanceMonitor) -> None:
        """Clear the pending alert of ``monitor``'s state change, unless the stored monitor has
        changed state since (that change's alert is still pending)."""
        try:
            MonitorItem(keys.MONITORS_PK, keys.monitor_sk(monitor.id)).update(
                actions=[MonitorItem.alert_pending.remove()],
                condition=(MonitorItem.state_changed_at == monitor.state_changed_at)
                & (MonitorItem.alert_pending == True),  # noqa: E712 - a DynamoDB condition
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
