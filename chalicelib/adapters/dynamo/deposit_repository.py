"""Card deposits in DynamoDB: their item (``DEPOSIT#<id>`` / ``DEPOSIT``), its mapping, and the
conditions that enforce again, in the write itself, what ``domain/deposits.py`` checks:

* the credit is written with the ledger transaction whose id is derived from the PaymentIntent
  (``attribute_not_exists`` on the transaction: one credit per PaymentIntent);
* a failure only applies to a ``pending`` deposit;
* a refund reserves its amount only if ``refund_reserved <= credited_amount - amount``, the
  deposit is ``succeeded`` and not rolled back (refund at most what was credited);
* a rollback requires no refund reserved, no dispute and no earlier rollback; a dispute requires
  no rollback (unless it knows of one and holds nothing).

Implements ``services.deposits.DepositRepository``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import PutError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import DepositItem
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.domain.deposits import Deposit, DepositStatus
from chalicelib.domain.errors import (
    AlreadyReversed,
    DepositNotFound,
    InvalidState,
    NotReversible,
    RefundExceedsDeposit,
)


def write_together(writes: Sequence[ExtraWrite]) -> None:
    """Side writes alone, in one ``TransactWriteItems`` (no money moves); a failed condition
    raises its write's error."""
    write = AtomicWrite()
    for part in writes:
        if part.actions is None:
            write.put(part.model, part.condition, part.error)
        else:
            write.update(part.model, part.actions, part.condition, part.error)
    write.send_or_raise_tag()


def _key(deposit_id: str) -> DepositItem:
    return DepositItem(keys.deposit_pk(deposit_id), keys.DEPOSIT_SK)


def _item(deposit: Deposit) -> DepositItem:
    return DepositItem(
        keys.deposit_pk(deposit.id),
        keys.DEPOSIT_SK,
        item_type=DepositItem.ITEM_TYPE,
        deposit_id=deposit.id,
        user_id=deposit.user_id,
        amount=deposit.amount,
        currency=deposit.currency,
        status=deposit.status.value,
        created_at=deposit.created_at,
    )


def _deposit(item: DepositItem) -> Deposit:
    return Deposit(
        id=item.deposit_id,
        user_id=item.user_id,
        amount=int(item.amount),
        currency=item.currency,
        status=DepositStatus(item.status),
        payment_intent_id=item.payment_intent_id,
        created_at=item.created_at,
        transaction_id=item.transaction_id,
        credited_amount=None if item.credited_amount is None else int(item.credited_amount),
        refund_reserved=int(item.refund_reserved or 0),
        refunded_amount=int(item.refunded_amount or 0),
        rolled_back_by=item.rolled_back_by,
        disputed_by=item.disputed_by,
        updated_at=item.updated_at,
    )


class DynamoDepositRepository:
    """``services.deposits.DepositRepository`` on the ledger table."""

    def get(self, deposit_id: str) -> Deposit | None:
        try:
            item = DepositItem.get(
                keys.deposit_pk(deposit_id), keys.DEPOSIT_SK, consistent_read=True
            )
        except DepositItem.DoesNotExist:
            return None
        return _deposit(item)

    def add(self, deposit: Deposit) -> Deposit:
        """Store a new pending deposit; if a concurrent retry of the same request stored it
        first, that one is returned."""
        try:
            _item(deposit).save(condition=DepositItem.PK.does_not_exist())
        except PutError as exc:
            if not condition_failed(exc):
                raise
            raced = self.get(deposit.id)
            if raced is None:
                raise
            return raced
        return deposit

    def set_payment_intent(self, deposit_id: str, payment_intent_id: str) -> None:
        """Raises UpdateError if the deposit has another PaymentIntent."""
        _key(deposit_id).update(
            actions=[DepositItem.payment_intent_id.set(payment_intent_id)],
            condition=DepositItem.payment_intent_id.does_not_exist()
            | (DepositItem.payment_intent_id == payment_intent_id),
        )

    def write(self, writes: Sequence[ExtraWrite]) -> None:
        write_together(writes)

    # -- side writes --------------------------------------------------------------------------
    def credit(self, deposit: Deposit) -> ExtraWrite:
        """The deposit as ``Deposit.credited`` left it, written with its credit."""
        return ExtraWrite(
            model=_key(deposit.id),
            condition=DepositItem.PK.exists(),
            error=DepositNotFound(f"deposit {deposit.id} disappeared"),
            actions=[
                DepositItem.status.set(deposit.status.value),
                DepositItem.payment_intent_id.set(str(deposit.payment_intent_id)),
                DepositItem.transaction_id.set(str(deposit.transaction_id)),
                DepositItem.credited_amount.set(deposit.credited_amount),
                DepositItem.updated_at.set(str(deposit.updated_at)),
            ],
        )

    def fail(self, deposit: Deposit) -> ExtraWrite:
        """The deposit as ``Deposit.failed`` left it; InvalidState unless it is still pending."""
        return ExtraWrite(
            model=_key(deposit.id),
            condition=DepositItem.status == DepositStatus.PENDING.value,
            error=InvalidState(f"deposit {deposit.id} is not pending"),
            actions=[
                DepositItem.status.set(deposit.status.value),
                DepositItem.updated_at.set(str(deposit.updated_at)),
            ],
        )

    def reserve_refund(self, deposit: Deposit, amount: int, at: str) -> ExtraWrite:
        """``amount`` added to ``refund_reserved``, only while it stays within what was credited
        (RefundExceedsDeposit), the deposit succeeded and was not rolled back."""
        return ExtraWrite(
            model=_key(deposit.id),
            condition=(DepositItem.status == DepositStatus.SUCCEEDED.value)
            & DepositItem.rolled_back_by.does_not_exist()
            & (
                DepositItem.refund_reserved.does_not_exist()
                | (DepositItem.refund_reserved <= (deposit.credited_amount or 0) - amount)
            ),
            error=RefundExceedsDeposit(f"the refund would exceed what is left of {deposit.id}"),
            actions=[DepositItem.refund_reserved.add(amount), DepositItem.updated_at.set(at)],
        )

    def settle_refund(
        self, deposit_id: str, amount: int, *, succeeded: bool, at: str
    ) -> ExtraWrite:
        """A reserved refund ended: counted refunded, or its reservation given back (atomic
        ADDs, so two refunds finishing at once cannot leave stale totals)."""
        action = (
            DepositItem.refunded_amount.add(amount)
            if succeeded
            else DepositItem.refund_reserved.add(-amount)
        )
        return ExtraWrite(
            _key(deposit_id),
            DepositItem.PK.exists(),
            DepositNotFound(f"deposit {deposit_id} disappeared"),
            [action, DepositItem.updated_at.set(at)],
        )

    def return_refund(self, deposit_id: str, amount: int, at: str) -> ExtraWrite:
        """A refund that failed after it succeeded: neither refunded nor reserved any more."""
        return ExtraWrite(
            _key(deposit_id),
            DepositItem.PK.exists(),
            DepositNotFound(f"deposit {deposit_id} disappeared"),
            [
                DepositItem.refunded_amount.add(-amount),
                DepositItem.refund_reserved.add(-amount),
                DepositItem.updated_at.set(at),
            ],
        )

    def roll_back(self, deposit_id: str, reversal_id: str, at: str) -> ExtraWrite:
        """For the rollback of the deposit's credit: marks it rolled back, and refuses
        (NotReversible) when a refund is reserved or made, or the payment was disputed."""
        return ExtraWrite(
            model=_key(deposit_id),
            condition=(
                DepositItem.refund_reserved.does_not_exist() | (DepositItem.refund_reserved == 0)
            )
            & DepositItem.rolled_back_by.does_not_exist()
            & DepositItem.disputed_by.does_not_exist(),
            error=NotReversible(
                f"deposit {deposit_id} has refunds or a dispute: refund the rest, or let the"
                " dispute settle it, instead of rolling it back"
            ),
            actions=[DepositItem.rolled_back_by.set(reversal_id), DepositItem.updated_at.set(at)],
        )

    def mark_disputed(
        self, deposit_id: str, dispute_id: str, *, rolled_back: bool, at: str
    ) -> ExtraWrite:
        """For a dispute's opening write: marks the deposit disputed (so no rollback can follow)
        and, unless it is known to be rolled back already, requires that it still is not
        (AlreadyReversed: an admin rolled it back meanwhile, so the dispute must hold nothing)."""
        return ExtraWrite(
            model=_key(deposit_id),
            condition=None if rolled_back else DepositItem.rolled_back_by.does_not_exist(),
            error=AlreadyReversed(f"deposit {deposit_id} was rolled back"),
            actions=[DepositItem.disputed_by.set(dispute_id), DepositItem.updated_at.set(at)],
        )
