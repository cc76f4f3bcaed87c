"""Balance monitors in memory: ``services.monitors.MonitorRepository``, with the same conditions
as ``DynamoMonitorRepository`` (the contract test runs both)."""

from __future__ import annotations

import threading
from dataclasses import replace

from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.monitors import BalanceMonitor, MonitorPage, MonitorState
from chalicelib.domain.users import AuditEvent


class MemoryMonitorRepository:
    def __init__(self) -> None:
        self.monitors: dict[str, BalanceMonitor] = {}
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()  # the store's conditions hold under threads too

    def create(self, monitor: BalanceMonitor, event: AuditEvent) -> None:
        with self._lock:
            if monitor.id in self.monitors:
                raise VersionConflict("monitor id taken")
            self.monitors[monitor.id] = monitor
            self.events.append(event)

    def get(self, monitor_id: str) -> BalanceMonitor | None:
        return self.monitors.get(monitor_id)

    def page(self, limit: int, cursor: str | None) -> MonitorPage:
        ids = sorted(self.monitors)
        if cursor is not None:
            if cursor not in self.monitors:
                raise ValueError("invalid cursor")
            ids = [i for i in ids if i > cursor]
        chosen = ids[:limit]
        more = len(ids) > limit
        return MonitorPage([self.monitors[i] for i in chosen], chosen[-1] if more else None)

    def all(self) -> list[BalanceMonitor]:
        return [self.monitors[i] for i in sorted(self.monitors)]

    def disable(self, monitor: BalanceMonitor, event: AuditEvent) -> None:
        with self._lock:
            stored = self.monitors.get(monitor.id)
            if stored is None or not stored.enabled:
                raise VersionConflict("the monitor is not enabled")
            self.monitors[monitor.id] = replace(
                stored,
                enabled=False,
                disabled_at=monitor.disabled_at,
                disabled_by=monitor.disabled_by,
            )
            self.events.append(event)

    def change_state(
        self, monitor: BalanceMonitor, expected: MonitorState, event: AuditEvent
    ) -> bool:
        with self._lock:
            stored = self.monitors.get(monitor.id)
            if stored is None or not stored.enabled or stored.state is not expected:
                return False
            self.monitors[monitor.id] = replace(
                stored,
                state=monitor.state,
                state_changed_at=monitor.state_changed_at,
                last_balance=monitor.last_balance,
                alert_pending=True,
            )
            self.events.append(event)
            return True

    def alert_sent(self, monitor: BalanceMonitor) -> None:
        with self._lock:
            stored = self.monitors.get(monitor.id)
            if stored is not None and stored.state_changed_at == monitor.state_changed_at:
                self.monitors[monitor.id] = replace(stored, alert_pending=False)
