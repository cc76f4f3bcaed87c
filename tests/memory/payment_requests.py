"""Payment requests in memory: ``services.payment_requests.PaymentRequestRepository``.

Side writes are ``tests.memory.withdrawals.MemoryWrite``s (``commit`` checks every condition
before it changes anything, as one TransactWriteItems would). Lists are newest first; a cursor
names the last request of a page."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from chalicelib.domain.errors import PaymentRequestNotOpen, ReviewNotOpen, VersionConflict
from chalicelib.domain.payment_requests import PaymentRequest, PaymentRequestStatus
from chalicelib.domain.users import AuditEvent
from tests.memory.withdrawals import MemoryWrite, commit


class MemoryPaymentRequestRepository:
    def __init__(self) -> None:
        self.requests: dict[str, PaymentRequest] = {}
        self.events: list[AuditEvent] = []

    def get(self, request_id: str) -> PaymentRequest | None:
        return self.requests.get(request_id)

    def create(self, pr: PaymentRequest, event: AuditEvent) -> None:
        def store() -> None:
            self.requests[pr.id] = pr
            self.events.append(event)

        taken = VersionConflict(f"payment request {pr.id} exists")
        commit([MemoryWrite(lambda: pr.id not in self.requests, taken, store)])

    def paid_writes(self, paid: PaymentRequest, now: str) -> list[MemoryWrite]:
        return [self._moved(paid, now)]

    def held_writes(self, held: PaymentRequest, now: str) -> list[MemoryWrite]:
        def holds() -> bool:
            stored = self.requests.get(held.id)
            return (
                stored is not None
                and stored.status is PaymentRequestStatus.OPEN
                and not stored.held
                and stored.expires_at > now
            )

        def store() -> None:
            self.requests[held.id] = held

        return [MemoryWrite(holds, PaymentRequestNotOpen(f"{held.id} is no longer open"), store)]

    def approved_writes(self, paid: PaymentRequest) -> list[MemoryWrite]:
        return [self._settled(paid, paid)]

    def released_writes(self, held: PaymentRequest, released: PaymentRequest) -> list[MemoryWrite]:
        return [self._settled(held, released)]

    def _settled(self, held: PaymentRequest, after: PaymentRequest) -> MemoryWrite:
        def holds() -> bool:
            stored = self.requests.get(held.id)
            return (
                stored is not None
                and stored.held
                and (stored.review_id, stored.transaction_id)
                == (held.review_id, held.transaction_id)
            )

        def store() -> None:
            self.requests[held.id] = after

        return MemoryWrite(holds, ReviewNotOpen(f"{held.id} holds no such payment"), store)

    def decide(
        self,
        decided: PaymentRequest,
        now: str,
        event: AuditEvent | None,
        extra: Sequence[MemoryWrite] = (),
    ) -> None:
        writes = [self._moved(decided, now), *extra]
        if event is not None:
            exists = VersionConflict(f"audit event {event.id} exists")
            writes.append(MemoryWrite(lambda: True, exists, lambda: self.events.append(event)))
        commit(writes)

    def _moved(self, pr: PaymentRequest, now: str) -> MemoryWrite:
        def holds() -> bool:
            stored = self.requests.get(pr.id)
            if stored is None or stored.status is not PaymentRequestStatus.OPEN or stored.held:
                return False
            if pr.status is PaymentRequestStatus.EXPIRED:
                return stored.expires_at <= now
            return stored.expires_at > now

        def store() -> None:
            self.requests[pr.id] = pr

        return MemoryWrite(holds, PaymentRequestNotOpen(f"{pr.id} is no longer open"), store)

    def due(self, now: str) -> Iterator[PaymentRequest]:
        found = [
            pr
            for pr in self.requests.values()
            if pr.status is PaymentRequestStatus.OPEN and pr.expires_at <= now
        ]
        return iter(sorted(found, key=lambda pr: (pr.expires_at, pr.id)))

    def of_payer(
        self,
        user_id: str,
        status: PaymentRequestStatus | None,
        now: str,
        limit: int,
        cursor: str | None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[PaymentRequest], str | None]:
        return self._page(
            lambda pr: pr.payer_id == user_id and _within(pr, since, until),
            status,
            now,
            limit,
            cursor,
        )

    def of_facility(
        self,
        facility_id: str,
        status: PaymentRequestStatus | None,
        now: str,
        limit: int,
        cursor: str | None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[PaymentRequest], str | None]:
        return self._page(
            lambda pr: pr.facility_id == facility_id and _within(pr, since, until),
            status,
            now,
            limit,
            cursor,
        )

    def _page(self, mine, status, now, limit, cursor):  # type: ignore[no-untyped-def]
        if cursor is not None and "#pr_" not in cursor:
            raise ValueError("invalid cursor")
        ordered = sorted(
            (pr for pr in self.requests.values() if mine(pr)),
            key=lambda pr: f"{pr.created_at}#{pr.id}",
            reverse=True,
        )
        if cursor is not None:
            ordered = [pr for pr in ordered if f"{pr.created_at}#{pr.id}" < cursor]
        wanted = [pr for pr in ordered if status is None or pr.status_at(now) is status]
        page = wanted[:limit]
        more = len(wanted) > limit
        last = page[-1] if page else None
        return page, (f"{last.created_at}#{last.id}" if more and last else None)


def _within(pr: PaymentRequest, since: str | None, until: str | None) -> bool:
    return (since is None or pr.created_at >= since) and (until is None or pr.created_at <= until)
