"""``services.deposits.DepositRepository`` in memory, with the same conditions as DynamoDB.

A side write here is a ``MemoryWrite``: a check that raises the rule's error, and the change;
``write_together`` checks every write before applying any, so a batch applies whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from chalicelib.domain.deposits import Deposit, DepositStatus
from chalicelib.domain.errors import (
    AlreadyReversed,
    DepositNotFound,
    InvalidState,
    NotReversible,
    RefundExceedsDeposit,
)


@dataclass(frozen=True)
class MemoryWrite:
    check: Callable[[], None]
    apply: Callable[[], None]


def write_together(writes: Sequence[MemoryWrite]) -> None:
    for write in writes:
        write.check()
    for write in writes:
        write.apply()


class MemoryDepositRepository:
    def __init__(self) -> None:
        self.deposits: dict[str, Deposit] = {}

    def get(self, deposit_id: str) -> Deposit | None:
        return self.deposits.get(deposit_id)

    def add(self, deposit: Deposit) -> Deposit:
        return self.deposits.setdefault(deposit.id, deposit)

    def set_payment_intent(self, deposit_id: str, payment_intent_id: str) -> None:
        self.deposits[deposit_id] = self.deposits[deposit_id].with_payment_intent(payment_intent_id)

    def write(self, writes: Sequence[MemoryWrite]) -> None:
        write_together(writes)

    # -- side writes --------------------------------------------------------------------------
    def _change(self, deposit_id: str, check: Callable[[Deposit], None], change) -> MemoryWrite:
        def checked() -> None:
            if deposit_id not in self.deposits:
                raise DepositNotFound(f"deposit {deposit_id} disappeared")
            check(self.deposits[deposit_id])

        def apply() -> None:
            self.deposits[deposit_id] = change(self.deposits[deposit_id])

        return MemoryWrite(checked, apply)

    def credit(self, deposit: Deposit) -> MemoryWrite:
        fields = {
            "status": deposit.status,
            "payment_intent_id": deposit.payment_intent_id,
            "transaction_id": deposit.transaction_id,
            "credited_amount": deposit.credited_amount,
            "updated_at": deposit.updated_at,
        }
        return self._change(deposit.id, lambda d: None, lambda d: replace(d, **fields))

    def fail(self, deposit: Deposit) -> MemoryWrite:
        def pending(d: Deposit) -> None:
            if d.status is not DepositStatus.PENDING:
                raise InvalidState(f"deposit {d.id} is not pending")

        return self._change(
            deposit.id,
            pending,
            lambda d: replace(d, status=deposit.status, updated_at=deposit.updated_at),
        )

    def reserve_refund(self, deposit: Deposit, amount: int, at: str) -> MemoryWrite:
        def within(d: Deposit) -> None:
            if (
                d.status is not DepositStatus.SUCCEEDED
                or d.rolled_back_by
                or d.refund_reserved > (deposit.credited_amount or 0) - amount
            ):
                raise RefundExceedsDeposit(f"the refund would exceed what is left of {d.id}")

        return self._change(
            deposit.id,
            within,
            lambda d: replace(d, refund_reserved=d.refund_reserved + amount, updated_at=at),
        )

    def settle_refund(
        self, deposit_id: str, amount: int, *, succeeded: bool, at: str
    ) -> MemoryWrite:
        def change(d: Deposit) -> Deposit:
            if succeeded:
                return replace(d, refunded_amount=d.refunded_amount + amount, updated_at=at)
            return replace(d, refund_reserved=d.refund_reserved - amount, updated_at=at)

        return self._change(deposit_id, lambda d: None, change)

    def return_refund(self, deposit_id: str, amount: int, at: str) -> MemoryWrite:
        return self._change(
            deposit_id,
            lambda d: None,
            lambda d: replace(
                d,
                refunded_amount=d.refunded_amount - amount,
                refund_reserved=d.refund_reserved - amount,
                updated_at=at,
            ),
        )

    def roll_back(self, deposit_id: str, reversal_id: str, at: str) -> MemoryWrite:
        def reversible(d: Deposit) -> None:
            if d.refund_reserved or d.rolled_back_by or d.disputed_by:
                raise NotReversible(f"deposit {d.id} has refunds or a dispute")

        return self._change(
            deposit_id,
            reversible,
            lambda d: replace(d, rolled_back_by=reversal_id, updated_at=at),
        )

    def mark_disputed(
        self, deposit_id: str, dispute_id: str, *, rolled_back: bool, at: str
    ) -> MemoryWrite:
        def not_rolled_back(d: Deposit) -> None:
            if not rolled_back and d.rolled_back_by:
                raise AlreadyReversed(f"deposit {d.id} was rolled back")

        return self._change(
            deposit_id,
            not_rolled_back,
            lambda d: replace(d, disputed_by=dispute_id, updated_at=at),
        )
