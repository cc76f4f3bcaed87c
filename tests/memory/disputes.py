"""``services.disputes.DisputeRepository`` in memory, with the same conditions as DynamoDB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from chalicelib.domain.disputes import Dispute, DisputeStatus
from chalicelib.domain.errors import InvalidState, VersionConflict
from chalicelib.domain.users import AuditEvent
from tests.memory.deposits import MemoryWrite, write_together


class MemoryDisputeRepository:
    def __init__(self) -> None:
        self.disputes: dict[str, Dispute] = {}
        self.audit_events: dict[str, AuditEvent] = {}

    def get(self, dispute_id: str) -> Dispute | None:
        return self.disputes.get(dispute_id)

    def write(self, writes: Sequence[MemoryWrite]) -> None:
        write_together(writes)

    # -- side writes --------------------------------------------------------------------------
    def add(self, dispute: Dispute) -> MemoryWrite:
        def new() -> None:
            if dispute.id in self.disputes:
                raise InvalidState("dispute exists")

        return MemoryWrite(new, lambda: self.disputes.setdefault(dispute.id, dispute))

    def close(self, dispute: Dispute) -> MemoryWrite:
        def still_open() -> None:
            current = self.disputes.get(dispute.id)
            if current is None or current.status is not DisputeStatus.OPEN:
                raise InvalidState(f"dispute {dispute.id} is closed")

        def apply() -> None:
            self.disputes[dispute.id] = replace(
                self.disputes[dispute.id], status=dispute.status, closed_at=dispute.closed_at
            )

        return MemoryWrite(still_open, apply)

    def audit(self, event: AuditEvent) -> MemoryWrite:
        def new() -> None:
            if event.id in self.audit_events:
                raise VersionConflict(f"audit event {event.id} exists")

        return MemoryWrite(new, lambda: self.audit_events.setdefault(event.id, event))
