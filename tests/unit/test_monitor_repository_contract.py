"""The contract of ``services.monitors.MonitorRepository``, run against the in-memory repository
and ``DynamoMonitorRepository`` (moto)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.adapters.dynamo.monitor_repository import DynamoMonitorRepository
from chalicelib.domain.accounts import PlatformKind
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.monitors import BalanceMonitor, MonitorCondition, MonitorState
from chalicelib.domain.users import AuditEvent
from tests.memory.monitors import MemoryMonitorRepository

AT = "2026-03-14T10:00:00.000000Z"
LATER = "2026-03-14T11:00:00.000000Z"


def monitor(number: int, **changes) -> BalanceMonitor:
    base = BalanceMonitor(
        id=f"mon_{number:04d}",
        name=f"monitor {number}",
        currency="USD",
        condition=MonitorCondition.BELOW,
        threshold=-500_00,
        created_at=AT,
        created_by="usr_admin",
        platform=PlatformKind.STRIPE_CLEARING,
    )
    return replace(base, **changes)


def event(action: str, m: BalanceMonitor) -> AuditEvent:
    return AuditEvent.new(action, at=AT, actor_id="usr_admin", target=m.id, ip=None)


class TestMonitorRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def repository(self, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
        if request.param == "memory":
            return MemoryMonitorRepository()
        request.getfixturevalue("table")
        return DynamoMonitorRepository()

    def test_created_monitors_read_back_and_list_oldest_first_in_pages(self, repository):
        made = [monitor(1), monitor(2, account_id="acct_x", platform=None), monitor(3)]
        for m in made:
            repository.create(m, event("monitor.created", m))
        assert repository.get("mon_0002") == made[1]
        assert repository.get("mon_9999") is None
        assert repository.all() == made
        first = repository.page(2, None)
        assert first.monitors == made[:2]
        assert first.next_cursor is not None
        second = repository.page(2, first.next_cursor)
        assert (second.monitors, second.next_cursor) == ([made[2]], None)
        with pytest.raises(ValueError, match="cursor"):
            repository.page(2, "not-a-cursor")

    def test_a_taken_id_creates_nothing(self, repository):
        repository.create(monitor(1), event("monitor.created", monitor(1)))
        with pytest.raises(VersionConflict):
            repository.create(monitor(1, name="other"), event("monitor.created", monitor(1)))
        assert repository.get("mon_0001").name == "monitor 1"

    def test_a_monitor_is_disabled_once(self, repository):
        m = monitor(1)
        repository.create(m, event("monitor.created", m))
        off = m.disabled("usr_admin", LATER)
        repository.disable(off, event("monitor.disabled", m))
        assert repository.get(m.id) == off
        with pytest.raises(VersionConflict):
            repository.disable(off, event("monitor.disabled", m))

    def test_a_state_change_needs_the_state_read_and_an_enabled_monitor(self, repository):
        m = monitor(1)
        repository.create(m, event("monitor.created", m))
        crossed = m.after(-600_00, LATER)
        assert crossed is not None
        assert crossed.state is MonitorState.CROSSED
        assert repository.change_state(crossed, MonitorState.OK, event("monitor.crossed", m))
        assert repository.get(m.id) == crossed
        # A second run that read "ok" too finds the condition false: nothing written.
        assert not repository.change_state(crossed, MonitorState.OK, event("monitor.crossed", m))
        repository.disable(crossed.disabled("usr_admin", LATER), event("monitor.disabled", m))
        back = crossed.after(0, LATER)
        assert not repository.change_state(back, MonitorState.CROSSED, event("monitor.x", m))
        assert repository.get(m.id).state is MonitorState.CROSSED
