"""Transfers between users (type ``transfer``) and payments to facilities (type ``payment``).

The transaction id is derived from the sender and the request's Idempotency-Key, so a retried
request moves money once even after its replay record has expired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chalicelib.domain.accounts import OwnerType, wallet_id
from chalicelib.domain.errors import AccountNotFound, InvalidRequest, RecipientNotFound
from chalicelib.domain.money import currency, format_amount, parse_amount
from chalicelib.domain.transactions import Transaction, TransactionType, derive_transaction_id
from chalicelib.domain.users import User
from chalicelib.domain.webhooks import WebhookEvent, WebhookEventType
from chalicelib.services.ledger import LedgerService, PostingRequest, Recorded, SideWrite
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
    *,
    sender: User,
    request: TransferRequest,
    idempotency_key: str,
    extra_for: Callable[[Transaction], Sequence[SideWrite]] | None = None,
    events: WebhookEvents | None = None,
) -> Recorded:
    """Move ``amount`` from the sender's wallet to a user's wallet or a facility's account.

    ``extra_for`` (the request's replay record) is written with the money (``LedgerService``).
    A payment to a facility also writes, in the same write, the facility's ``payment.received``
    event through ``events`` (the outbox): it exists exactly when the money moved, and a retried
    request (same transaction id, same event id) writes neither again.

    Raises (in order of precedence):
        UnsupportedCurrency, InvalidAmount, InvalidRequest (both or no recipient, oneself,
        memo too long), RecipientNotFound, InsufficientFunds, TransactionExistsWithDifferentFields.
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
        kind = TransactionType.TRANSFER
    else:
        target = wallet_id(OwnerType.FACILITY, request.to_facility_id or "", code)
        kind = TransactionType.PAYMENT
    source = wallet_id(OwnerType.USER, sender.id, code)
    writes = extra_for
    if kind is TransactionType.PAYMENT and events is not None:
        writes = _with_payment_event(
            extra_for, events, request.to_facility_id or "", sender.id, amount, code
        )
    try:
        recorded = ledger.record(
            transaction_id=derive_transaction_id("transfer", sender.id, idempotency_key),
            type=kind,
            postings=[
                PostingRequest(source, code, -amount),
                PostingRequest(target, code, amount),
            ],
            memo=request.memo,
            metadata={"initiated_by": sender.id},
            extra_for=writes,
        )
    except AccountNotFound as exc:
        if exc.account_id == target:
            raise RecipientNotFound("the recipient has no account in this currency") from exc
        raise
    return recorded


def _with_payment_event(
    extra_for: Callable[[Transaction], Sequence[SideWrite]] | None,
    events: WebhookEvents,
    facility_id: str,
    sender_id: str,
    amount: int,
    code: str,
) -> Callable[[Transaction], Sequence[SideWrite]]:
    """``extra_for``'s writes and the facility's ``payment.received`` event about the
    transaction as it will be written (its id and time)."""

    def writes(txn: Transaction) -> Sequence[SideWrite]:
        event = WebhookEvent.about(
            WebhookEventType.PAYMENT_RECEIVED,
            txn.id,
            facility_id,
            txn.created_at,
            {
                "transaction_id": txn.id,
                "amount": format_amount(amount, code),
                "currency": code,
                "from_user_id": sender_id,
                "memo": txn.memo,
            },
        )
        return [*(extra_for(txn) if extra_for else ()), events.event(event)]

    return writes
