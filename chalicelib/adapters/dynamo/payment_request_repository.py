"""Payment requests in DynamoDB. Implements ``services.payment_requests.PaymentRequestRepository``.

Three items per request, written together in every write:

- the request: PK ``PAYREQ#<id>``, SK ``PAYREQ``; while it is open, in GSI2 under
  ``PAYREQS#open`` by ``expires_at`` (the expiry job's queue; the keys are removed in the write
  that takes it out of open);
- its copy in the payer's list (``PAYER#<user id>``) and in the facility's list
  (``FACPAYREQ#<facility id>``), SK ``PAYREQ#<created_at>#<id>``: a list is one strongly
  consistent Query of one partition, newest first, filtered by status.

Every move is an update of the request on the condition that it is still ``open``, holds no
payment for a risk review, and (paying, declining, cancelling) not yet expired or (expiring)
past ``expires_at``. A payment held for review stores its ``transaction_id`` and ``review_id`` on
the open request; the review's decision either turns it ``paid`` or releases it (hold cleared,
``attempt`` + 1), on the condition that it is still held by that payment; the copies are updated
in the same ``TransactWriteItems``. Paying returns these updates as side writes for the ledger
engine, so the request turns ``paid`` in the same write as its money, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pynamodb.expressions.condition import Condition

from chalicelib.adapters.dynamo import cursors, keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import PaymentRequestItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.errors import PaymentRequestNotOpen, ReviewNotOpen, VersionConflict
from chalicelib.domain.payment_requests import PaymentRequest, PaymentRequestStatus
from chalicelib.domain.users import AuditEvent

Item = PaymentRequestItem


def _fields(pr: PaymentRequest) -> dict[str, Any]:
    return {
        "request_id": pr.id,
        "facility_id": pr.facility_id,
        "payer_id": pr.payer_id,
        "payer_email": pr.payer_email,
        "currency": pr.currency,
        "amount": pr.amount,
        "memo": pr.memo,
        "status": pr.status.value,
        "created_at": pr.created_at,
        "expires_at": pr.expires_at,
        "transaction_id": pr.transaction_id,
        "paid_at": pr.paid_at,
        "decided_at": pr.decided_at,
        "creation": pr.creation,
        "decided_request": pr.decided_request,
        "attempt": pr.attempt,
        "review_id": pr.review_id,
    }


def _request(item: Item) -> PaymentRequest:
    return PaymentRequest(
        id=item.request_id,
        facility_id=item.facility_id,
        payer_id=item.payer_id,
        payer_email=item.payer_email,
        currency=item.currency,
        amount=int(item.amount),
        memo=item.memo or "",
        status=PaymentRequestStatus(item.status),
        created_at=item.created_at,
        expires_at=item.expires_at,
        transaction_id=item.transaction_id,
        paid_at=item.paid_at,
        decided_at=item.decided_at,
        creation=item.creation,
        decided_request=item.decided_request,
        attempt=int(item.attempt or 0),
        review_id=item.review_id,
    )


def _main_key(request_id: str) -> Item:
    return Item(keys.payment_request_pk(request_id), keys.PAYMENT_REQUEST_SK)


def _list_keys(pr: PaymentRequest) -> list[Item]:
    sk = keys.listed_request_sk(pr.created_at, pr.id)
    return [
        Item(keys.payer_requests_pk(pr.payer_id), sk),
        Item(keys.facility_requests_pk(pr.facility_id), sk),
    ]


def _moved(pr: PaymentRequest, now: str) -> list[ExtraWrite]:
    """``pr``'s new state on the request (on the condition that it is still open, its payment
    not held for review, and due or not as the move needs) and on its two copies, out of the
    expiry queue."""
    actions = [
        Item.status.set(pr.status.value),
        Item.transaction_id.set(pr.transaction_id),
        Item.paid_at.set(pr.paid_at),
        Item.decided_at.set(pr.decided_at),
        Item.decided_request.set(pr.decided_request),
    ]
    still_open = (Item.status == PaymentRequestStatus.OPEN.value) & Item.review_id.does_not_exist()
    if pr.status is PaymentRequestStatus.EXPIRED:
        condition: Condition = still_open & (Item.expires_at <= now)
    else:
        condition = still_open & (Item.expires_at > now)
    error = PaymentRequestNotOpen(f"payment request {pr.id} is no longer open")
    return _updated(pr, actions, condition, error, leaves_queue=True)


def _updated(
    pr: PaymentRequest,
    actions: list[Any],
    condition: Condition,
    error: Exception,
    *,
    leaves_queue: bool,
) -> list[ExtraWrite]:
    """``actions`` on the request (if ``condition`` holds, else ``error``) and on its copies."""
    queue = [Item.GSI2PK.remove(), Item.GSI2SK.remove()] if leaves_queue else []
    writes = [
        ExtraWrite(
            model=_main_key(pr.id), condition=condition, error=error, actions=[*actions, *queue]
        )
    ]
    writes += [
        ExtraWrite(
            model=copy,
            condition=Item.PK.exists(),
            error=VersionConflict(f"a list copy of {pr.id} is missing"),
            actions=actions,
        )
        for copy in _list_keys(pr)
    ]
    return writes


def _send(writes: Sequence[ExtraWrite]) -> None:
    """The writes in one TransactWriteItems; a failed condition raises the error its write
    names, a conflicting write ``VersionConflict``."""
    write = AtomicWrite()
    for side in writes:
        if side.actions is None:
            write.put(side.model, side.condition, side.error)
        else:
            write.update(side.model, side.actions, side.condition, side.error)
    write.send_or_raise_tag()


class DynamoPaymentRequestRepository:
    """``services.payment_requests.PaymentRequestRepository`` on the ledger table."""

    def get(self, request_id: str) -> PaymentRequest | None:
        try:
            item = Item.get(
                keys.payment_request_pk(request_id), keys.PAYMENT_REQUEST_SK, consistent_read=True
            )
        except Item.DoesNotExist:
            return None
        return _request(item)

    def create(self, pr: PaymentRequest, event: AuditEvent) -> None:
        """The request, its two list copies and the audit event, in one write.

        Raises:
            VersionConflict: the id is taken (the same Idempotency-Key, raced); nothing written.
        """
        taken = VersionConflict(f"payment request {pr.id} exists")
        main = Item(
            keys.payment_request_pk(pr.id),
            keys.PAYMENT_REQUEST_SK,
            item_type=Item.ITEM_TYPE,
            GSI2PK=keys.OPEN_PAYMENT_REQUESTS_GSI_PK,
            GSI2SK=keys.open_payment_requests_gsi_sk(pr.expires_at, pr.id),
            **_fields(pr),
        )
        writes = [ExtraWrite(main, Item.PK.does_not_exist(), taken)]
        for copy in _list_keys(pr):
            listed = Item(copy.PK, copy.SK, item_type=Item.LISTED_TYPE, **_fields(pr))
            writes.append(ExtraWrite(listed, Item.PK.does_not_exist(), taken))
        writes.append(audit_entry(event))
        _send(writes)

    def paid_writes(self, paid: PaymentRequest, now: str) -> list[ExtraWrite]:
        """``paid`` stored, for the write of its money: fails ``PaymentRequestNotOpen`` (and with
        it the money) unless the request is still open and not expired at ``now``."""
        return _moved(paid, now)

    def held_writes(self, held: PaymentRequest, now: str) -> list[ExtraWrite]:
        """``held`` (its payment held for the review ``review_id``) stored, for the write of the
        hold: fails ``PaymentRequestNotOpen`` (and with it the hold) unless the request is still
        open, holds no payment and is not expired at ``now``. It stays in the expiry queue (the
        expiry's condition passes it by while it is held)."""
        actions = [
            Item.transaction_id.set(held.transaction_id),
            Item.review_id.set(held.review_id),
        ]
        condition = (
            (Item.status == PaymentRequestStatus.OPEN.value)
            & Item.review_id.does_not_exist()
            & (Item.expires_at > now)
        )
        error = PaymentRequestNotOpen(f"payment request {held.id} is no longer open")
        return _updated(held, actions, condition, error, leaves_queue=False)

    def approved_writes(self, paid: PaymentRequest) -> list[ExtraWrite]:
        """``paid`` (its held payment approved) stored, for the write that posts the hold: fails
        ``ReviewNotOpen`` unless the request is still held by that payment and review."""
        actions = [
            Item.status.set(paid.status.value),
            Item.paid_at.set(paid.paid_at),
        ]
        error = ReviewNotOpen(f"the payment of payment request {paid.id} was decided already")
        return _updated(paid, actions, _held_by(paid), error, leaves_queue=True)

    def released_writes(self, held: PaymentRequest, released: PaymentRequest) -> list[ExtraWrite]:
        """``released`` (its held payment rejected or expired: open for the next attempt)
        stored, for the write that voids the hold: fails ``ReviewNotOpen`` unless the request is
        still ``held``, by that payment and review."""
        actions = [
            Item.attempt.set(released.attempt),
            Item.transaction_id.remove(),
            Item.review_id.remove(),
        ]
        error = ReviewNotOpen(f"the payment of payment request {held.id} was decided already")
        return _updated(released, actions, _held_by(held), error, leaves_queue=False)

    def decide(
        self,
        decided: PaymentRequest,
        now: str,
        event: AuditEvent | None,
        extra: Sequence[ExtraWrite] = (),
    ) -> None:
        """Store ``decided`` (declined, cancelled: if still open and not expired at ``now``;
        expired: if still open and due), the audit event and ``extra`` (a webhook event), in one
        write.

        Raises:
            PaymentRequestNotOpen: it left open meanwhile (or is due / not due); nothing written.
        """
        writes = [*_moved(decided, now), *extra]
        if event is not None:
            writes.append(audit_entry(event))
        _send(writes)

    def due(self, now: str) -> Iterator[PaymentRequest]:
        """Requests still in the open queue whose ``expires_at`` is at or before ``now``,
        soonest first (the index is eventually consistent: the write's condition decides)."""
        found = Item.open_index.query(
            keys.OPEN_PAYMENT_REQUESTS_GSI_PK,
            Item.GSI2SK <= keys.open_payment_requests_gsi_sk(now, "~"),  # noqa: SIM300
        )
        return (_request(item) for item in found)

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
        return self._page(keys.payer_requests_pk(user_id), status, now, limit, cursor, since, until)

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
            keys.facility_requests_pk(facility_id), status, now, limit, cursor, since, until
        )

    @staticmethod
    def _page(
        pk: str,
        status: PaymentRequestStatus | None,
        now: str,
        limit: int,
        cursor: str | None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[PaymentRequest], str | None]:
        """Up to ``limit`` requests of one list, newest first, of ``status`` as of ``now`` (a
        request stored open past ``expires_at`` counts as expired), created from ``since`` to
        ``until`` (a key range of the list's SK), and the next cursor.

        Raises:
            ValueError: a cursor this query did not return.
        """
        low, high = keys.listed_request_bounds(since, until)
        start = (
            cursors.decode(cursor, partition={"PK": pk}, ranges={"SK": (low, high)})
            if cursor
            else None
        )
        results = Item.query(
            pk,
            Item.SK.between(low, high),
            scan_index_forward=False,
            filter_condition=_status_filter(status, now),
            limit=limit,
            page_size=limit,
            last_evaluated_key=start,
            consistent_read=True,
        )
        found = [_request(item) for item in results]
        last = results.last_evaluated_key
        return found, (cursors.encode(last) if last and len(found) == limit else None)


def _held_by(held: PaymentRequest) -> Condition:
    return (
        (Item.status == PaymentRequestStatus.OPEN.value)
        & (Item.review_id == (held.review_id or ""))
        & (Item.transaction_id == (held.transaction_id or ""))
    )


def _status_filter(status: PaymentRequestStatus | None, now: str) -> Condition | None:
    if status is None:
        return None
    # A request whose payment is held for review stays open until the review is decided.
    open_ = Item.status == PaymentRequestStatus.OPEN.value
    if status is PaymentRequestStatus.OPEN:
        return open_ & ((Item.expires_at > now) | Item.review_id.exists())
    if status is PaymentRequestStatus.EXPIRED:
        lapsed = open_ & (Item.expires_at <= now) & Item.review_id.does_not_exist()
        return (Item.status == status.value) | lapsed
    return Item.status == status.value
