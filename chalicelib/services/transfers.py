"""Transfers between users (type ``transfer``) and payments to facilities (type ``payment``).

The transaction id is derived from the sender and the request's Idempotency-Key, so a retried
request moves money once even after its replay record has expired. Every transfer is assessed by
the risk rules first (``services.risk.record_assessed``): declined, held for review, or moved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.accounts import OwnerType, wallet_id
from chalicelib.domain.errors import AccountNotFound, InvalidRequest, RecipientNotFound
from chalicelib.domain.money import currency, format_amount, parse_amount
from chalicelib.domain.risk import Check, Operation, Review, ReviewStatus
from chalicelib.domain.transactions import Transaction, TransactionType, derive_transaction_id
from chalicelib.domain.users import User
from chalicelib.domain.webhooks import WebhookEvent, WebhookEventType
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite
from chalicelib.services.risk import ExtraFor, Guarded, Risk, record_assessed
from chalicelib.services.webhook_events import WebhookEvents

MAX_MEMO_LENGTH = 500


class Recipients(Protocol):
    """Who an email names (``adapters.dynamo.auth_repository``)."""

    def want_email_claim(self, email: str) -> None:
        """Read the email's claim with the request's first batch read (one round trip)."""
        ...

    def verified_user_id_for_email(self, email: str) -> str | None:
        """The user whose verified address it is; None for no one or an unverified claim."""
        ...


@dataclass(frozen=True)
class TransferRequest:
    amount: str
    currency: str
    to_email: str | None
    to_facility_id: str | None
    memo: str


def read_ahead(users: Recipients, to_email: object) -> None:
    """Name the recipient's email claim for the request's first batch read."""
    if isinstance(to_email, str) and to_email.strip():
        users.want_email_claim(to_email.strip())


def transfer(
    ledger: LedgerService,
    users: Recipients,
    risk: Risk,
    *,
    sender: User,
    request: TransferRequest,
    idempotency_key: str,
    extra_for: ExtraFor | None = None,
    events: WebhookEvents | None = None,
) -> Guarded:
    """Move ``amount`` from the sender's wallet to a user's wallet or a facility's account, or
    hold it for a risk review (``Guarded.review``).

    ``extra_for(transaction, verdict, review)`` (the request's replay record) is written with the
    money (``services.risk.record_assessed``). A payment to a facility that moves at once also
    writes, in the same write, the facility's ``payment.received`` event through ``events`` (the
    outbox): it exists exactly when the money moved, and a retried request (same transaction id,
    same event id) writes neither again. A payment held for review has no event until an admin
    approves it (``payment_received_on_approval``).

    Raises (in order of precedence):
        UnsupportedCurrency, InvalidAmount, InvalidRequest (both or no recipient, oneself,
        memo too long), RecipientNotFound, RiskDeclined, InsufficientFunds,
        TransactionExistsWithDifferentFields.
    """
    code = currency(request.currency).code
    amount = parse_amount(request.amount, code)
    if (request.to_email is None) == (request.to_facility_id is None):
        raise InvalidRequest("give exactly one of to_email and to_facility_id")
    if len(request.memo) > MAX_MEMO_LENGTH:
        raise InvalidRequest(f"memo has more than {MAX_MEMO_LENGTH} characters")
    if request.to_email is not None:
        # An unverified email answers like an unknown one (API.md, "Email verification").
        recipient_id = users.verified_user_id_for_email(request.to_email.strip())
        if recipient_id is None:
            raise RecipientNotFound("no user has this email")
        if recipient_id == sender.id:
            raise InvalidRequest("a transfer to oneself moves nothing")
        target = wallet_id(OwnerType.USER, recipient_id, code)
        kind, operation, recipient = TransactionType.TRANSFER, Operation.TRANSFER, recipient_id
    else:
        target = wallet_id(OwnerType.FACILITY, request.to_facility_id or "", code)
        kind, operation = TransactionType.PAYMENT, Operation.PAYMENT
        recipient = f"facility:{request.to_facility_id}"
    source = wallet_id(OwnerType.USER, sender.id, code)
    check = Check(
        user_id=sender.id,
        operation=operation,
        amount=amount,
        currency=code,
        at=now_iso(),
        recipient=f"user:{recipient}" if kind is TransactionType.TRANSFER else recipient,
        user_created_at=sender.created_at,
    )
    writes = extra_for
    metadata = {"initiated_by": sender.id}
    if kind is TransactionType.PAYMENT:
        metadata["facility_id"] = request.to_facility_id or ""
        if events is not None:
            writes = _with_payment_event(extra_for, events)
    try:
        guarded = record_assessed(
            ledger,
            risk,
            check,
            transaction_id=derive_transaction_id("transfer", sender.id, idempotency_key),
            type=kind,
            postings=[
                PostingRequest(source, code, -amount),
                PostingRequest(target, code, amount),
            ],
            memo=request.memo,
            metadata=metadata,
            extra_for=writes,
        )
    except AccountNotFound as exc:
        if exc.account_id == target:
            raise RecipientNotFound("the recipient has no account in this currency") from exc
        raise
    return guarded


def payment_received_event(txn: Transaction, at: str) -> WebhookEvent | None:
    """The facility's ``payment.received`` event about a payment, or None for a transaction that
    pays no facility (the facility is named in the payment's metadata)."""
    facility_id = txn.metadata.get("facility_id")
    if txn.type is not TransactionType.PAYMENT or not facility_id:
        return None
    credit = next(p for p in txn.postings if p.amount > 0)
    return WebhookEvent.about(
        WebhookEventType.PAYMENT_RECEIVED,
        txn.id,
        facility_id,
        at,
        {
            "transaction_id": txn.id,
            "amount": format_amount(credit.amount, credit.currency),
            "currency": credit.currency,
            "from_user_id": txn.metadata.get("initiated_by"),
            "memo": txn.memo,
        },
    )


def _with_payment_event(extra_for: ExtraFor | None, events: WebhookEvents) -> ExtraFor:
    """``extra_for``'s writes and, when the payment moves now (not held for review), the
    facility's ``payment.received`` event about the transaction as it will be written."""

    def writes(txn: Transaction, verdict: object, review: Review | None) -> Sequence[SideWrite]:
        own = list(extra_for(txn, verdict, review)) if extra_for else []  # type: ignore[arg-type]
        event = payment_received_event(txn, txn.created_at) if review is None else None
        return [*own, events.event(event)] if event is not None else own

    return writes


def payment_received_on_approval(
    transactions: Callable[[str], Transaction], events: WebhookEvents, clock: Callable[[], str]
) -> Callable[[Review], Sequence[SideWrite]]:
    """The writes a risk review's decision adds for a payment (``Risk.on_decision``): when it is
    approved, the facility's ``payment.received`` event, in the write that posts the hold."""

    def writes(review: Review) -> Sequence[SideWrite]:
        if review.status is not ReviewStatus.APPROVED:
            return []
        event = payment_received_event(transactions(review.transaction_id), clock())
        return [events.event(event)] if event is not None else []

    return writes
