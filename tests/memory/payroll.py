"""Payroll batches in memory: ``services.payroll.PayrollRepository``.

Side writes are ``MemoryWrite``s (``tests/memory/withdrawals.py``): ``write`` checks every
condition before it changes anything, as one TransactWriteItems would.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from chalicelib.domain.errors import PayrollChanged
from chalicelib.domain.payroll import ItemOutcome, ItemStatus, Payroll, PayrollStatus
from tests.memory.withdrawals import MemoryWrite, commit


class MemoryPayrollRepository:
    def __init__(self, claims: dict[str, tuple[str, bool]] | None = None) -> None:
        self.claims = {email.lower(): claim for email, claim in (claims or {}).items()}
        self.batches: dict[str, Payroll] = {}
        self.listed: dict[str, list[tuple[str, str]]] = defaultdict(list)  # (order, id)
        self.decided: dict[str, dict[int, ItemOutcome]] = defaultdict(dict)

    # -- reads ------------------------------------------------------------------------------------
    def verified_recipients(self, emails: Iterable[str]) -> dict[str, str]:
        found = {}
        for email in (e.strip().lower() for e in emails):
            user_id, verified = self.claims.get(email, (None, False))
            if user_id is not None and verified:
                found[email] = user_id
        return found

    def get(self, payroll_id: str) -> Payroll | None:
        return self.batches.get(payroll_id)

    def outcomes(self, payroll_id: str) -> dict[int, ItemOutcome]:
        return dict(self.decided[payroll_id])

    def of_facility(
        self,
        facility_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[Payroll], str | None]:
        low, high = (since or "0"), ((until + "#~") if until else "~")
        rows = sorted((r for r in self.listed[facility_id] if low <= r[0] <= high), reverse=True)
        if cursor is not None:
            try:
                after = base64.urlsafe_b64decode(cursor.encode()).decode()
            except ValueError as exc:
                raise ValueError("invalid cursor") from exc
            if after not in {order for order, _ in rows}:
                raise ValueError("invalid cursor")
            rows = [r for r in rows if r[0] < after]
        page = rows[:limit]
        more = len(rows) > limit
        next_cursor = base64.urlsafe_b64encode(page[-1][0].encode()).decode() if more else None
        return [self.batches[payroll_id] for _, payroll_id in page], next_cursor

    def processing_since_before(self, before: str, limit: int) -> list[str]:
        waiting = sorted(
            (p.created_at, p.id)
            for p in self.batches.values()
            if p.status is PayrollStatus.PROCESSING and p.created_at < before
        )
        return [payroll_id for _, payroll_id in waiting[:limit]]

    # -- side writes ------------------------------------------------------------------------------
    def created(self, payroll: Payroll) -> list[MemoryWrite]:
        def store() -> None:
            self.batches[payroll.id] = payroll
            order = f"{payroll.created_at}#{payroll.id}"
            self.listed[payroll.facility_id].append((order, payroll.id))

        return [
            MemoryWrite(
                lambda: payroll.id not in self.batches,
                PayrollChanged(f"payroll batch {payroll.id} exists"),
                store,
            )
        ]

    def item_paid(self, payroll_id: str, index: int, transaction_id: str, at: str) -> MemoryWrite:
        outcome = ItemOutcome(index, ItemStatus.PAID, transaction_id=transaction_id)
        return MemoryWrite(
            lambda: index not in self.decided[payroll_id],
            PayrollChanged(f"item {index} of {payroll_id} was decided by another run"),
            lambda: self.decided[payroll_id].__setitem__(index, outcome),
        )

    def item_failed(self, payroll_id: str, index: int, error_code: str, at: str) -> bool:
        if index in self.decided[payroll_id]:
            return False
        self.decided[payroll_id][index] = ItemOutcome(
            index, ItemStatus.FAILED, error_code=error_code
        )
        return True

    def completed(self, payroll: Payroll) -> MemoryWrite:
        def complete() -> None:
            stored = self.batches[payroll.id]
            self.batches[payroll.id] = replace(
                stored.with_outcomes(
                    {
                        i.index: ItemOutcome(i.index, i.status, i.transaction_id, i.error_code)
                        for i in payroll.payable_items
                    }
                ),
                status=payroll.status,
                completed_at=payroll.completed_at,
            )

        return MemoryWrite(
            lambda: (
                self.batches.get(payroll.id) is not None
                and self.batches[payroll.id].status is PayrollStatus.PROCESSING
            ),
            PayrollChanged(f"payroll batch {payroll.id} was completed by another run"),
            complete,
        )

    def write(self, writes: Sequence[object]) -> None:
        commit(writes)
