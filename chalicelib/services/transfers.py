"""Transfers between users (type ``transfer``) and payments to facilities (type ``payment``).

The transaction id is derived from the sender and the request's Idempotency-Key, so a retried
request moves money once even after its replay record has expired. Every transfer is assessed by
the risk rules first (``services.risk.record_assessed``): declined, held for review, or moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.accounts import OwnerType, wallet_id
from chalicelib.domain.errors import AccountNotFound, InvalidRequest, RecipientNotFound
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.risk import Check, Operation
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.domain.users import User
from chalicelib.services.ledger import LedgerService, PostingRequest
from chalicelib.services.risk import ExtraFor, Guarded, Risk, record_assessed

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
) -> Guarded:
    """Move ``amount`` from the sender's wallet to a user's wallet or a facility's account, or
    hold it for a risk review (``Guarded.review``).

    ``extra_for(transaction, verdict, review)`` (the request's replay record) is written with the
    money (``services.risk.record_assessed``).

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
            metadata={"initiated_by": sender.id},
            extra_for=extra_for,
        )
    except AccountNotFound as exc:
        if exc.account_id == target:
            raise RecipientNotFound("the recipient has no account in this currency") from exc
        raise
    return guarded
