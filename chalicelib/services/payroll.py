"""Payroll payouts: a facility pays many users in one batch (``POST /v1/facility/payouts``).

The write path (docs/facilities.md, "Payroll payouts"; the rules are ``domain/payroll.py``'s):

1. the batch id is derived from the facility and the request's Idempotency-Key; a batch that
   exists already is finished (a retry) instead of created again;
2. the recipients' email claims are read in one BatchGetItem per 100 emails; unknown and
   unverified emails fail their item at once;
3. one write stores the batch (``processing``) and the ``funding`` transaction that moves the
   payable total from the facility to the platform's payroll transit account; the facility's
   overdraft condition makes it all or nothing (``422 insufficient_funds``, nothing stored);
4. each payable item: one transaction (id derived from the batch and the item's index) from the
   transit account to the recipient, with the item's outcome in the same write; a few workers
   do this in parallel, each on its own transit shard so they do not conflict with one another;
5. one write completes the batch: its final state, its ``payout.completed`` event and, if an item
   failed while processing, the ``return`` transaction of what was reserved and not paid.

A crash anywhere leaves a batch that the retry of the request, or ``finish_stuck`` (scheduled),
finishes: every step is written once (derived ids, ``attribute_not_exists``) and an item's
outcome is written with its money, so nobody is paid twice.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso, to_iso
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    AccountNotFound,
    IdempotencyKeyReused,
    InvalidAmount,
    InvalidRequest,
    LedgerError,
    PayrollChanged,
    PayrollNotFound,
    TransactionExistsWithDifferentFields,
)
from chalicelib.domain.money import currency, format_amount, parse_amount
from chalicelib.domain.payroll import (
    MAX_ITEMS,
    MAX_MEMO_LENGTH,
    RECIPIENT_NOT_FOUND,
    ItemOutcome,
    ItemStatus,
    Payroll,
    PayrollIncomplete,
    PayrollItem,
    PayrollStatus,
    derive_payroll_id,
    is_payroll_id,
    request_fingerprint,
)
from chalicelib.domain.transactions import TransactionType
from chalicelib.domain.webhooks import WebhookEvent, WebhookEventType
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite
from chalicelib.services.webhook_events import WebhookEvents

logger = Logger(child=True)

WORKERS = 4  # items paid in parallel by one run (bench/payroll.py)
FINISH_AFTER_SECONDS = 300  # a batch processing this long is taken over by the finisher
FINISH_LIMIT = 20  # batches one finisher run takes on
# DynamoDB numbers hold 38 digits: a total above this could not be stored as a balance.
MAX_TOTAL = 10**38 - 1
# The batch, its event and its stored answer are single DynamoDB items (400 KB at most): a batch
# whose answer would be larger than this (JSON-escaped text, e.g. memos in a non-Latin script,
# grows up to 6 bytes a character) is refused before anything is written.
MAX_ANSWER_BYTES = 380_000
ITEM_ANSWER_OVERHEAD = 200  # an item's keys, status, amount and transaction id in the answer


class PayrollRepository(Protocol):
    """``adapters.dynamo.payroll_repository.DynamoPayrollRepository``."""

    def verified_recipients(self, emails: Sequence[str]) -> dict[str, str]:
        """Lower-case email -> user id, for the verified ones only."""
        ...

    def get(self, payroll_id: str) -> Payroll | None: ...
    def outcomes(self, payroll_id: str) -> dict[int, ItemOutcome]: ...
    def of_facility(
        self,
        facility_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[Payroll], str | None]: ...
    def processing_since_before(self, before: str, limit: int) -> list[str]: ...
    def created(self, payroll: Payroll) -> Sequence[SideWrite]:
        """The new batch (written once) and whatever lists it."""
        ...

    def item_paid(self, payroll_id: str, index: int, transaction_id: str, at: str) -> SideWrite: ...

    def item_failed(self, payroll_id: str, index: int, error_code: str, at: str) -> bool: ...
    def completed(self, payroll: Payroll) -> SideWrite: ...
    def write(self, writes: Sequence[SideWrite]) -> None: ...


@dataclass(frozen=True)
class PayrollLine:
    to_email: str
    amount: Any  # as sent: parsed here, so a bad one is named (invalid_amount)
    memo: str = ""


@dataclass(frozen=True)
class PayrollRequest:
    currency: Any
    items: Sequence[PayrollLine]


@dataclass
class Payer:
    """What a run needs: the engine, the batches, the outbox of webhook events, a clock."""

    ledger: LedgerService
    payrolls: PayrollRepository
    events: WebhookEvents
    clock: Callable[[], str] = now_iso
    workers: int = WORKERS


# -- the view (the API's answer and the event's data) ----------------------------------------------
def payout_data(payroll: Payroll) -> dict[str, Any]:
    """The batch as the API shows it: the ``payout`` of the answer, and the data of its
    ``payout.completed`` event."""
    code = payroll.currency
    return {
        "id": payroll.id,
        "status": payroll.status.value,
        "currency": code,
        "total": format_amount(payroll.total, code),
        "paid_total": format_amount(payroll.paid_total, code),
        "item_count": len(payroll.items),
        "created_at": payroll.created_at,
        "completed_at": payroll.completed_at,
        "items": [
            {
                "to_email": item.to_email,
                "amount": format_amount(item.amount, code),
                "memo": item.memo,
                "status": item.status.value,
                "error_code": item.error_code,
                "transaction_id": item.transaction_id,
            }
            for item in payroll.items
        ],
    }


# -- use cases -------------------------------------------------------------------------------------
def pay(
    payer: Payer, *, facility_id: str, request: PayrollRequest, idempotency_key: str
) -> Payroll:
    """Pay a batch, or finish the batch this key started (a retry).

    Raises (in order of precedence):
        UnsupportedCurrency, InvalidRequest (no items, too many, a memo too long), InvalidAmount,
        IdempotencyKeyReused (the key's batch was another request), AccountNotFound (the
        facility has no account in the currency), InsufficientFunds (nothing stored), and, safe
        to retry, VersionConflict / PayrollChanged.
    """
    code = currency(request.currency).code
    lines = _lines(request.items, code)
    fingerprint = request_fingerprint(code, lines)
    payroll_id = derive_payroll_id(facility_id, idempotency_key)
    existing = payer.payrolls.get(payroll_id)
    if existing is None:
        emails = [email for email, _, _ in lines]
        new = Payroll.new(
            payroll_id,
            facility_id,
            code,
            lines,
            payer.payrolls.verified_recipients(emails),
            payer.clock(),
        )
        existing = _store(payer, new)  # or the batch a concurrent run of the key stored
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for another payout batch")
    return finish(payer, existing)


def get_payroll(payrolls: PayrollRepository, facility_id: str, payroll_id: str) -> Payroll:
    """A facility's batch; another facility's answers like none (``PayrollNotFound``). A batch
    still processing shows the items decided so far."""
    found = payrolls.get(payroll_id) if is_payroll_id(payroll_id) else None
    if found is None or found.facility_id != facility_id:
        raise PayrollNotFound(f"payout {payroll_id} does not exist")
    if found.status is PayrollStatus.PROCESSING:
        found = found.with_outcomes(payrolls.outcomes(payroll_id))
    return found


def payrolls_of_facility(
    payrolls: PayrollRepository,
    facility_id: str,
    *,
    limit: int = 20,
    cursor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> tuple[list[Payroll], str | None]:
    """One page of the facility's batches, newest first, and the cursor of the next.

    Raises:
        InvalidRequest: the cursor was not handed out for this facility's list.
    """
    try:
        return payrolls.of_facility(
            facility_id, limit=limit, cursor=cursor, since=since, until=until
        )
    except ValueError as exc:
        raise InvalidRequest("cursor is not valid for this list") from exc


def finish(payer: Payer, payroll: Payroll) -> Payroll:
    """Pay every payable item not decided yet, then complete the batch (idempotent)."""
    if payroll.status is not PayrollStatus.PROCESSING:
        return payroll
    outcomes = payer.payrolls.outcomes(payroll.id)
    todo = [item for item in payroll.payable_items if item.index not in outcomes]
    decided = _pay_items(payer, payroll, todo)
    if any(outcome is None for outcome in decided.values()):
        outcomes = payer.payrolls.outcomes(payroll.id)  # another run decided some: read them
    else:
        outcomes.update({i: o for i, o in decided.items() if o is not None})
    return _complete(payer, payroll, outcomes)


def finish_stuck(
    payer: Payer,
    *,
    now: datetime,
    older_than_seconds: int | None = None,
    limit: int | None = None,
) -> dict[str, str]:
    """The scheduled finisher: every batch processing for ``older_than_seconds`` (default
    ``FINISH_AFTER_SECONDS``: its request crashed or timed out) is finished, up to ``limit``
    (``FINISH_LIMIT``) oldest first. Returns each batch's outcome; a batch that cannot be
    finished now (contention) is reported and taken again by the next run."""
    age = FINISH_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    before = to_iso(now - timedelta(seconds=age))
    report: dict[str, str] = {}
    for payroll_id in payer.payrolls.processing_since_before(before, limit or FINISH_LIMIT):
        payroll = payer.payrolls.get(payroll_id)
        if payroll is None or payroll.status is not PayrollStatus.PROCESSING:
            report[payroll_id] = "already_finished"
            continue
        try:
            report[payroll_id] = finish(payer, payroll).status.value
        except LedgerError as exc:
            report[payroll_id] = f"error:{type(exc).__name__}"
        except Exception as exc:  # one batch's failure (throttling, a bug) does not stop the rest
            logger.exception("could not finish a payroll batch", extra={"payroll_id": payroll_id})
            report[payroll_id] = f"error:{type(exc).__name__}"
    return report


# -- internals -------------------------------------------------------------------------------------
def _lines(items: Sequence[PayrollLine], code: str) -> tuple[tuple[str, int, str], ...]:
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidRequest(f"a payout batch has 1 to {MAX_ITEMS} items")
    lines = []
    for index, line in enumerate(items):
        email = line.to_email.strip()
        if not email:
            raise InvalidRequest(f"items.{index}.to_email is empty")
        if len(line.memo) > MAX_MEMO_LENGTH:
            raise InvalidRequest(f"items.{index}.memo has more than {MAX_MEMO_LENGTH} characters")
        try:
            amount = parse_amount(line.amount, code)
        except InvalidAmount as exc:
            raise InvalidAmount(f"items.{index}.amount: {exc}") from exc
        lines.append((email, amount, line.memo))
    if sum(amount for _, amount, _ in lines) > MAX_TOTAL:
        raise InvalidAmount("the items' total is too large")
    size = sum(
        len(json.dumps(email)) + len(json.dumps(memo)) + ITEM_ANSWER_OVERHEAD
        for email, _, memo in lines
    )
    if size > MAX_ANSWER_BYTES:
        raise InvalidRequest("the batch is too large to store in one piece: split it in two")
    return tuple(lines)


def _facility_account(payroll: Payroll) -> str:
    return wallet_id(OwnerType.FACILITY, payroll.facility_id, payroll.currency)


def _transit(code: str) -> PlatformAccount:
    return PlatformAccount(PlatformKind.PAYROLL, code)


def _metadata(payroll: Payroll, leg: str) -> dict[str, str]:
    return {"payroll_id": payroll.id, "facility_id": payroll.facility_id, "payroll_leg": leg}


def _reread(payer: Payer, payroll_id: str) -> Payroll:
    found = payer.payrolls.get(payroll_id)
    if found is None:  # the other run's write failed after all: nothing is stored
        raise PayrollChanged(f"payroll batch {payroll_id} changed while it was written")
    return found


def _completed_event(payroll: Payroll) -> WebhookEvent:
    return WebhookEvent.about(
        WebhookEventType.PAYOUT_COMPLETED,
        payroll.id,
        payroll.facility_id,
        payroll.completed_at or payroll.created_at,
        payout_data(payroll),
    )


def _store(payer: Payer, payroll: Payroll) -> Payroll:
    """Store the new batch with the reservation of its payable total, in one write."""
    code = payroll.currency
    try:
        if payroll.reserved == 0:  # nobody to pay: the batch is complete as it is stored
            done = payroll.settled({}, payroll.created_at)
            payer.payrolls.write(
                [*payer.payrolls.created(done), payer.events.event(_completed_event(done))]
            )
            return done
        recorded = payer.ledger.record(
            transaction_id=payroll.funding_transaction_id,
            type=TransactionType.TRANSFER,
            postings=[
                PostingRequest(_facility_account(payroll), code, -payroll.reserved),
                PostingRequest(_transit(code), code, payroll.reserved),
            ],
            memo=f"payroll {payroll.id}",
            metadata=_metadata(payroll, "funding"),
            extra=payer.payrolls.created(payroll),
        )
    except (PayrollChanged, TransactionExistsWithDifferentFields):
        return _reread(payer, payroll.id)  # a concurrent run of the same key stored it first
    return payroll if recorded.created else _reread(payer, payroll.id)


def _pay_items(
    payer: Payer, payroll: Payroll, todo: Sequence[PayrollItem]
) -> dict[int, ItemOutcome | None]:
    """Pay ``todo``, ``payer.workers`` at a time, each worker on its own transit shard. An
    outcome of None: another run decided the item first. The first error is raised once every
    worker stopped (what was paid stays paid and recorded)."""
    if not todo:
        return {}
    workers = max(1, min(payer.workers, len(todo)))
    shards = payer.ledger.platform_shards
    first = zlib.crc32(payroll.id.encode()) % shards  # concurrent batches start apart
    transit = _transit(payroll.currency)
    groups = [(transit.shard_id((first + w) % shards), todo[w::workers]) for w in range(workers)]
    decided: dict[int, ItemOutcome | None] = {}
    errors: list[BaseException] = []

    def run(shard: str, items: Sequence[PayrollItem]) -> None:
        for item in items:
            try:
                decided[item.index] = _pay_item(payer, payroll, item, shard)
            except Exception as exc:  # raised below, after the other workers stopped
                errors.append(exc)
                return

    if workers == 1:
        run(*groups[0])
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="payroll") as pool:
            for future in [pool.submit(run, shard, items) for shard, items in groups]:
                future.result()
    if errors:
        raise errors[0]
    return decided


def _pay_item(payer: Payer, payroll: Payroll, item: PayrollItem, shard: str) -> ItemOutcome | None:
    code = payroll.currency
    transaction_id = payroll.item_transaction_id(item.index)
    target = wallet_id(OwnerType.USER, item.recipient_id or "", code)
    try:
        payer.ledger.record(
            transaction_id=transaction_id,
            type=TransactionType.TRANSFER,
            postings=[
                PostingRequest(shard, code, -item.amount),
                PostingRequest(target, code, item.amount),
            ],
            memo=item.memo,
            metadata={**_metadata(payroll, "item"), "payroll_item": str(item.index)},
            extra=[payer.payrolls.item_paid(payroll.id, item.index, transaction_id, payer.clock())],
        )
    except AccountNotFound as exc:
        if exc.account_id != target:
            raise
        # The recipient has no wallet in this currency: the item fails, its amount is returned.
        if not payer.payrolls.item_failed(
            payroll.id, item.index, RECIPIENT_NOT_FOUND, payer.clock()
        ):
            return None
        return ItemOutcome(item.index, ItemStatus.FAILED, error_code=RECIPIENT_NOT_FOUND)
    except PayrollChanged:
        return None  # failed by another run
    return ItemOutcome(item.index, ItemStatus.PAID, transaction_id=transaction_id)


def _complete(payer: Payer, payroll: Payroll, outcomes: Mapping[int, ItemOutcome]) -> Payroll:
    """Store the final state, the event and the return of what was not paid, in one write."""
    try:
        done = payroll.settled(outcomes, payer.clock())
    except PayrollIncomplete as exc:
        raise PayrollChanged(str(exc)) from exc
    code = payroll.currency
    writes = [payer.payrolls.completed(done), payer.events.event(_completed_event(done))]
    try:
        if done.returned == 0:
            payer.payrolls.write(writes)
            return done
        recorded = payer.ledger.record(
            transaction_id=done.return_transaction_id,
            type=TransactionType.TRANSFER,
            postings=[
                PostingRequest(_transit(code), code, -done.returned),
                PostingRequest(_facility_account(done), code, done.returned),
            ],
            memo=f"payroll {done.id}: not paid",
            metadata=_metadata(done, "return"),
            extra=writes,
        )
    except PayrollChanged:
        return _reread(payer, payroll.id)  # completed by another run
    return done if recorded.created else _reread(payer, payroll.id)
