"""Payroll batches on the single table: the batch item, one small outcome item per decided item,
the recipients' email claims, and the side writes that go with the batch's money.

Conditions (each in the same ``TransactWriteItems`` as the money it goes with):

* the batch is created with its funding transaction: ``attribute_not_exists(PK)``;
* an item's outcome is created with its payment (or alone, when it fails):
  ``attribute_not_exists(PK)``, so an item is paid or failed once, never both;
* the batch completes with its return transaction (or alone, when nothing is returned):
  ``status = processing``, so it completes once.

A refused condition raises ``PayrollChanged``: another run of the batch got there first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from pynamodb.exceptions import PutError

from chalicelib.adapters.dynamo import cursors, keys, read_ahead
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import (
    EmailClaimItem,
    PayrollBatchItem,
    PayrollListingItem,
    PayrollOutcomeItem,
)
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.domain.errors import PayrollChanged
from chalicelib.domain.payroll import (
    ItemOutcome,
    ItemStatus,
    Payroll,
    PayrollItem,
    PayrollStatus,
)

MAX_PAGE = 100


def _items_json(items: Iterable[PayrollItem]) -> str:
    return json.dumps(
        [
            {
                "e": i.to_email,
                "a": i.amount,
                "m": i.memo,
                "r": i.recipient_id,
                "s": i.status.value,
                "c": i.error_code,
                "t": i.transaction_id,
            }
            for i in items
        ],
        separators=(",", ":"),
        ensure_ascii=False,  # stored as UTF-8: no escaping growth
    )


def _items_of(text: str) -> tuple[PayrollItem, ...]:
    return tuple(
        PayrollItem(
            index=index,
            to_email=raw["e"],
            amount=int(raw["a"]),
            memo=raw["m"],
            recipient_id=raw["r"],
            status=ItemStatus(raw["s"]),
            error_code=raw["c"],
            transaction_id=raw["t"],
        )
        for index, raw in enumerate(json.loads(text))
    )


def batch_item(payroll: Payroll) -> PayrollBatchItem:
    processing = payroll.status is PayrollStatus.PROCESSING
    order = keys.payroll_order_key(payroll.created_at, payroll.id)
    return PayrollBatchItem(
        keys.payroll_pk(payroll.id),
        keys.PAYROLL_SK,
        item_type=PayrollBatchItem.ITEM_TYPE,
        GSI2PK=keys.PAYROLLS_PROCESSING_GSI_PK if processing else None,
        GSI2SK=order if processing else None,
        payroll_id=payroll.id,
        facility_id=payroll.facility_id,
        currency=payroll.currency,
        status=payroll.status.value,
        items=_items_json(payroll.items),
        outcomes=None if processing else _outcomes_json(payroll),
        created_at=payroll.created_at,
        completed_at=payroll.completed_at,
        request_hash=payroll.request_hash,
    )


def _outcomes_json(payroll: Payroll) -> str:
    return json.dumps(
        {
            str(i.index): [i.status.value, i.transaction_id, i.error_code]
            for i in payroll.payable_items
        },
        separators=(",", ":"),
    )


def _outcomes_of(text: str | None) -> dict[int, ItemOutcome]:
    return {
        int(index): ItemOutcome(int(index), ItemStatus(status), transaction_id, error_code)
        for index, (status, transaction_id, error_code) in json.loads(text or "{}").items()
    }


def payroll_of(item: PayrollBatchItem) -> Payroll:
    stored = Payroll(
        id=item.payroll_id,
        facility_id=item.facility_id,
        currency=item.currency,
        status=PayrollStatus(item.status),
        items=_items_of(item.items),
        created_at=item.created_at,
        request_hash=item.request_hash,
        completed_at=item.completed_at,
    )
    return stored.with_outcomes(_outcomes_of(item.outcomes)) if item.outcomes else stored


def _outcome_item(payroll_id: str, outcome: ItemOutcome, at: str) -> PayrollOutcomeItem:
    return PayrollOutcomeItem(
        keys.payroll_pk(payroll_id),
        keys.payroll_item_sk(outcome.index),
        item_type=PayrollOutcomeItem.ITEM_TYPE,
        status=outcome.status.value,
        transaction_id=outcome.transaction_id,
        error_code=outcome.error_code,
        decided_at=at,
    )


def _decided_elsewhere(payroll_id: str, index: int) -> PayrollChanged:
    return PayrollChanged(f"item {index} of {payroll_id} was decided by another run")


class DynamoPayrollRepository:
    # -- reads ------------------------------------------------------------------------------------
    def verified_recipients(self, emails: Iterable[str]) -> dict[str, str]:
        """Lower-case email -> user id, for the emails whose claim is verified (the rule of
        ``services.transfers``: an unverified email answers like an unknown one). One
        BatchGetItem per 100 distinct emails."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails))
        found = read_ahead.get_many([(keys.email_pk(e), keys.EMAIL_SK) for e in wanted])
        recipients: dict[str, str] = {}
        for email in wanted:
            raw = found.get((keys.email_pk(email), keys.EMAIL_SK))
            if raw is None:
                continue
            claim = EmailClaimItem.from_raw_data(raw)
            if claim.verified:
                recipients[email] = claim.user_id
        return recipients

    def get(self, payroll_id: str) -> Payroll | None:
        raw = read_ahead.get_raw(keys.payroll_pk(payroll_id), keys.PAYROLL_SK)
        return payroll_of(PayrollBatchItem.from_raw_data(raw)) if raw is not None else None

    def outcomes(self, payroll_id: str) -> dict[int, ItemOutcome]:
        """Every decided item of the batch (one strongly consistent Query)."""
        found: dict[int, ItemOutcome] = {}
        for item in PayrollOutcomeItem.query(
            keys.payroll_pk(payroll_id),
            PayrollOutcomeItem.SK.startswith(keys.PAYROLL_ITEM_PREFIX),
            consistent_read=True,
        ):
            index = keys.payroll_item_index(item.SK)
            found[index] = ItemOutcome(
                index=index,
                status=ItemStatus(item.status),
                transaction_id=item.transaction_id,
                error_code=item.error_code,
            )
        return found

    def of_facility(
        self,
        facility_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[Payroll], str | None]:
        """One page of a facility's batches, newest first: ids from the listing partition (one
        strongly consistent Query), the batches read by key in one BatchGetItem (so a batch
        shows its current status).

        Raises:
            ValueError: the cursor was not handed out for this list.
        """
        limit = max(1, min(limit, MAX_PAGE))
        pk = keys.payrolls_of_facility_pk(facility_id)
        low, high = (since or "0"), ((until + "#~") if until else "~")
        results = PayrollListingItem.query(
            pk,
            PayrollListingItem.SK.between(low, high),
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            consistent_read=True,
            last_evaluated_key=(
                cursors.decode(cursor, partition={"PK": pk}, ranges={"SK": (low, high)})
                if cursor
                else None
            ),
        )
        wanted = [(keys.payroll_pk(item.payroll_id), keys.PAYROLL_SK) for item in results]
        last = results.last_evaluated_key
        raw = read_ahead.get_many(wanted)
        page = [
            payroll_of(PayrollBatchItem.from_raw_data(raw[key]))
            for key in wanted
            if raw.get(key) is not None
        ]
        next_cursor = cursors.encode(last) if last and len(wanted) == limit else None
        return page, next_cursor

    def processing_since_before(self, before: str, limit: int) -> list[str]:
        """Ids of batches still processing that were created before ``before``, oldest first
        (GSI2, eventually consistent: the finisher re-reads each batch by key)."""
        results = PayrollBatchItem.processing_index.query(
            keys.PAYROLLS_PROCESSING_GSI_PK,
            PayrollBatchItem.GSI2SK < before,  # noqa: SIM300 (a key condition)
            limit=limit,
        )
        return [item.payroll_id for item in results]

    # -- side writes (go with the money) ----------------------------------------------------------
    def created(self, payroll: Payroll) -> list[ExtraWrite]:
        """The new batch, written once, and its line in the facility's list."""
        listing = PayrollListingItem(
            keys.payrolls_of_facility_pk(payroll.facility_id),
            keys.payroll_order_key(payroll.created_at, payroll.id),
            item_type=PayrollListingItem.ITEM_TYPE,
            payroll_id=payroll.id,
        )
        exists = PayrollChanged(f"payroll batch {payroll.id} exists")
        return [
            ExtraWrite(batch_item(payroll), PayrollBatchItem.PK.does_not_exist(), exists),
            ExtraWrite(listing, PayrollListingItem.PK.does_not_exist(), exists),
        ]

    def item_paid(self, payroll_id: str, index: int, transaction_id: str, at: str) -> ExtraWrite:
        """Item ``index`` paid by ``transaction_id``: unless it was decided before."""
        outcome = ItemOutcome(index, ItemStatus.PAID, transaction_id=transaction_id)
        return ExtraWrite(
            _outcome_item(payroll_id, outcome, at),
            PayrollOutcomeItem.PK.does_not_exist(),
            _decided_elsewhere(payroll_id, index),
        )

    def completed(self, payroll: Payroll) -> ExtraWrite:
        """The batch's final state (its status, its payable items' outcomes), once; it leaves
        the processing queue. The items as first stored are not rewritten."""
        return ExtraWrite(
            PayrollBatchItem(keys.payroll_pk(payroll.id), keys.PAYROLL_SK),
            PayrollBatchItem.status == PayrollStatus.PROCESSING.value,
            PayrollChanged(f"payroll batch {payroll.id} was completed by another run"),
            actions=[
                PayrollBatchItem.status.set(payroll.status.value),
                PayrollBatchItem.outcomes.set(_outcomes_json(payroll)),
                PayrollBatchItem.completed_at.set(payroll.completed_at),
                PayrollBatchItem.GSI2PK.remove(),
                PayrollBatchItem.GSI2SK.remove(),
            ],
        )

    # -- writes without money ---------------------------------------------------------------------
    def item_failed(self, payroll_id: str, index: int, error_code: str, at: str) -> bool:
        """Item ``index`` failed (nothing paid); False if it was decided before."""
        outcome = ItemOutcome(index, ItemStatus.FAILED, error_code=error_code)
        try:
            _outcome_item(payroll_id, outcome, at).save(PayrollOutcomeItem.PK.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def write(self, writes: Sequence[ExtraWrite]) -> None:
        """Side writes alone, in one TransactWriteItems (a batch stored or completed without
        money: no item could be paid, or nothing is left to return).

        Raises:
            the refused write's own error (``PayrollChanged``); VersionConflict on a conflict.
        """
        write = AtomicWrite()
        for extra in writes:
            if extra.actions is None:
                write.put(extra.model, extra.condition, extra.error)
            else:
                write.update(extra.model, extra.actions, extra.condition, extra.error)
        write.send_or_raise_tag()
