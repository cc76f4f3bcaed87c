"""``services.refunds.RefundRepository`` in memory, with the same conditions as DynamoDB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from chalicelib.domain.errors import InvalidState, VersionConflict
from chalicelib.domain.refunds import Refund, RefundStatus
from chalicelib.domain.users import AuditEvent
from tests.memory.deposits import MemoryWrite, write_together


class MemoryRefundRepository:
    def __init__(self) -> None:
        self.refunds: dict[str, Refund] = {}
        self.queue: dict[str, str] = {}  # refund id -> its place in the pending queue
        self.audit_events: dict[str, AuditEvent] = {}

    def get(self, refund_id: str) -> Refund | None:
        return self.refunds.get(refund_id)

    def pending(self, limit: int) -> list[str]:
        return sorted(self.queue, key=lambda refund_id: self.queue[refund_id])[:limit]

    def to_the_back(self, refund_id: str, at: str) -> None:
        if refund_id in self.queue:
            self.queue[refund_id] = f"{at}#{refund_id}"

    def remember_stripe_refund(self, refund_id: str, stripe_refund_id: str) -> None:
        refund = self.refunds[refund_id]
        if refund.stripe_refund_id in (None, stripe_refund_id):
            self.refunds[refund_id] = replace(refund, stripe_refund_id=stripe_refund_id)

    def write(self, writes: Sequence[MemoryWrite]) -> None:
        write_together(writes)

    # -- side writes --------------------------------------------------------------------------
    def add(self, refund: Refund) -> MemoryWrite:
        def new() -> None:
            if refund.id in self.refunds:
                raise InvalidState("refund id taken")

        def apply() -> None:
            self.refunds[refund.id] = refund
            self.queue[refund.id] = f"{refund.created_at}#{refund.id}"

        return MemoryWrite(new, apply)

    def _from(self, status: RefundStatus, refund: Refund, error: str) -> MemoryWrite:
        def still() -> None:
            current = self.refunds.get(refund.id)
            if current is None or current.status is not status:
                raise InvalidState(error)

        def apply() -> None:
            current = self.refunds[refund.id]
            self.refunds[refund.id] = replace(
                current,
                status=refund.status,
                stripe_refund_id=refund.stripe_refund_id or current.stripe_refund_id,
                failure_reason=refund.failure_reason,
                updated_at=refund.updated_at,
            )
            self.queue.pop(refund.id, None)

        return MemoryWrite(still, apply)

    def finish(self, refund: Refund) -> MemoryWrite:
        return self._from(RefundStatus.PENDING, refund, f"refund {refund.id} is finished")

    def fail_after_success(self, refund: Refund) -> MemoryWrite:
        return self._from(RefundStatus.SUCCEEDED, refund, f"refund {refund.id} is not succeeded")

    def audit(self, event: AuditEvent) -> MemoryWrite:
        def new() -> None:
            if event.id in self.audit_events:
                raise VersionConflict(f"audit event {event.id} exists")

        return MemoryWrite(new, lambda: self.audit_events.setdefault(event.id, event))
