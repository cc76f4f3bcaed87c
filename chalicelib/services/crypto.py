"""Crypto deposits and the crypto gateway's webhooks.

Deposit addresses: one per user and currency, from the gateway (``deposit_address``); each is
stored with its owner, written once (``AddressRepository``), so a webhook finds the owner.

Webhooks (``POST /v1/webhooks/crypto``): ``verify`` checks ``X-Signature`` (HMAC-SHA256 of
``"<t>.<raw body>"``, constant-time compare, 300 s tolerance) and reads ``{id, type, data}``;
anything wrong raises ``InvalidWebhook`` before anything is written. ``handle`` then applies the
event exactly once: its inbox record (``services.inbox.Inbox``) is written in the same
transaction as the money it moves, so a redelivery is a no-op (``duplicate``). This module routes
the gateway's withdrawal events to ``services.withdrawals``; that module never imports this one.

- ``deposit.confirmed`` credits the address owner's wallet from crypto custody, once per
  ``tx_hash`` (the transaction id is derived from currency and tx_hash, so a second event for the
  same transfer is recorded ``duplicate_tx`` and moves nothing). An unknown address is recorded
  ``unmatched`` and credits nobody.
- ``withdrawal.completed`` posts the withdrawal's hold and moves it ``processing -> completed``;
  ``withdrawal.failed`` voids the hold, moves it ``processing -> failed`` and gives the amount
  back to the day's limit. A withdrawal not in ``processing`` (already settled, never approved,
  unknown) is recorded ``ignored``: nothing moves.
- any other type is recorded ``ignored``.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.crypto_gateway import (
    DEPOSIT_CURRENCIES,
    CryptoGateway,
    CryptoGatewayError,
)
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    HoldNotPending,
    InvalidAmount,
    InvalidState,
    InvalidWebhook,
    ProviderUnavailable,
    TransactionExistsWithDifferentFields,
    UnsupportedCurrency,
    WebhookEventSeen,
)
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.signatures import signature
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.domain.users import User
from chalicelib.domain.withdrawals import WithdrawalStatus
from chalicelib.services import withdrawals
from chalicelib.services.inbox import DUPLICATE, Inbox
from chalicelib.services.ledger import LedgerService, PostingRequest
from chalicelib.services.payouts import PayoutRepository
from chalicelib.services.withdrawals import WithdrawalRepository

PROVIDER = "crypto"
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9:._-]{1,128}")
_ADDRESS = re.compile(r"[A-Za-z0-9]{8,128}")

CREDITED, DUPLICATE_TX = "credited", "duplicate_tx"
UNMATCHED, IGNORED, CONFLICT = "unmatched", "ignored", "conflict"
COMPLETED, FAILED = WithdrawalStatus.COMPLETED.value, WithdrawalStatus.FAILED.value


class AddressRepository(Protocol):
    """Deposit addresses and their owners
    (``adapters.dynamo.crypto_address_repository.DynamoAddressRepository``)."""

    def claim(self, code: str, address: str, user_id: str, at: str) -> bool:
        """Store the address as the user's, once; False if it was stored before (for anyone)."""
        ...

    def owner(self, code: str, address: str) -> str | None: ...


@dataclass(frozen=True)
class CryptoStores:
    """What the crypto webhook reads and writes besides the ledger."""

    inbox: Inbox
    addresses: AddressRepository
    withdrawals: WithdrawalRepository
    payouts: PayoutRepository


# -- deposit addresses ----------------------------------------------------------------------------
def deposit_address(
    gateway: CryptoGateway, addresses: AddressRepository, user: User, currency_code: Any
) -> tuple[str, str]:
    """The user's deposit address for a currency: ``(currency, address)``, always the same.

    Raises UnsupportedCurrency (USD, or unknown), InvalidState (the address belongs to someone
    else: the gateway broke its promise), ProviderUnavailable (the gateway failed: retry).
    """
    code = currency(currency_code).code
    if code not in DEPOSIT_CURRENCIES:
        raise UnsupportedCurrency(f"{code} cannot be deposited by crypto transfer")
    try:
        address = gateway.deposit_address(user.id, code)
    except CryptoGatewayError as exc:
        raise ProviderUnavailable("the crypto gateway could not be reached; retry later") from exc
    claimed = addresses.claim(code, address, user.id, now_iso())
    if not claimed and addresses.owner(code, address) != user.id:
        raise InvalidState(f"address {address} belongs to another user")
    return code, address


# -- webhooks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


def verify(raw_body: bytes, header: str | None, secret: str, now: int | None = None) -> Event:
    """Check the signature and read the event. Raises InvalidWebhook; writes nothing."""
    if not header or len(raw_body) > MAX_BODY_BYTES:
        raise InvalidWebhook("missing X-Signature header or body too large")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError as exc:
                raise InvalidWebhook("X-Signature timestamp is not a number") from exc
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidWebhook("X-Signature needs t= and v1=")
    now = int(time.time()) if now is None else now
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise InvalidWebhook("X-Signature timestamp is outside the tolerance")
    expected = signature(secret, timestamp, raw_body)
    # Check every candidate (no early exit) with a constant-time compare.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise InvalidWebhook("X-Signature does not match")
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidWebhook("body is not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidWebhook("body must be a JSON object")
    event_id, event_type, data = body.get("id"), body.get("type"), body.get("data")
    if not isinstance(event_id, str) or not _TOKEN.fullmatch(event_id):
        raise InvalidWebhook("id must be 1 to 128 letters, digits or :._-")
    if not isinstance(event_type, str) or not _TOKEN.fullmatch(event_type):
        raise InvalidWebhook("type must be 1 to 128 letters, digits or :._-")
    if not isinstance(data, dict):
        raise InvalidWebhook("data must be a JSON object")
    return Event(event_id, event_type, data)


def handle(ledger: LedgerService, stores: CryptoStores, event: Event) -> str:
    """Apply a verified event exactly once; returns what it did (the inbox item's outcome)."""
    inbox = stores.inbox
    if inbox.seen(PROVIDER, event.id):
        return DUPLICATE
    try:
        if event.type == "deposit.confirmed":
            return _deposit_confirmed(ledger, stores, event)
        if event.type == "withdrawal.completed":
            return _settle_withdrawal(ledger, stores, event, completed=True)
        if event.type == "withdrawal.failed":
            return _settle_withdrawal(ledger, stores, event, completed=False)
        return inbox.record(PROVIDER, event, IGNORED)
    except WebhookEventSeen:
        return DUPLICATE


def _deposit_confirmed(ledger: LedgerService, stores: CryptoStores, event: Event) -> str:
    inbox = stores.inbox
    data = event.data
    address, tx_hash = data.get("address"), data.get("tx_hash")
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise InvalidWebhook("data.address is not an address")
    if not isinstance(tx_hash, str) or not _TOKEN.fullmatch(tx_hash):
        raise InvalidWebhook("data.tx_hash is not a transaction hash")
    try:
        code = currency(data.get("currency")).code
        if code not in DEPOSIT_CURRENCIES:
            raise UnsupportedCurrency(code)
        amount = parse_amount(data.get("amount"), code)
    except (UnsupportedCurrency, InvalidAmount) as exc:
        raise InvalidWebhook(f"data.currency or data.amount: {exc}") from exc

    owner = stores.addresses.owner(code, address)
    if owner is None:
        return inbox.record(PROVIDER, event, UNMATCHED, subject=f"{code}:{address}")
    # One credit per (transaction, output address): one blockchain transaction may pay several
    # users' addresses, and each is credited once.
    txn_id = derive_transaction_id("crypto-deposit", code, tx_hash, address)
    legacy = _legacy_credit(ledger, code, tx_hash, address)
    if legacy is not None:
        return inbox.record(PROVIDER, event, DUPLICATE_TX, subject=legacy)
    try:
        recorded = ledger.record(
            transaction_id=txn_id,
            type=TransactionType.DEPOSIT,
            postings=[
                PostingRequest(PlatformAccount(PlatformKind.CRYPTO_CUSTODY, code), code, -amount),
                PostingRequest(wallet_id(OwnerType.USER, owner, code), code, amount),
            ],
            memo=f"crypto deposit {tx_hash}",
            metadata={"tx_hash": tx_hash, "address": address, "event_id": event.id},
            extra=[inbox.entry(PROVIDER, event, CREDITED, txn_id)],
        )
    except TransactionExistsWithDifferentFields:
        # The same tx_hash reported again with another amount or address: never credit twice.
        return inbox.record(PROVIDER, event, CONFLICT, subject=txn_id)
    if recorded.created:
        return CREDITED
    return inbox.record(PROVIDER, event, DUPLICATE_TX, subject=txn_id)


def _legacy_credit(ledger: LedgerService, code: str, tx_hash: str, address: str) -> str | None:
    """The id of a credit of this (transaction, address) made before credits were per address
    (their id was derived from the transaction alone), so that a redelivery of such a deposit
    under a new event id does not credit it again."""
    legacy_id = derive_transaction_id("crypto-deposit", code, tx_hash)
    found = ledger.repository.read([], [legacy_id]).transactions.get(legacy_id)
    if found is not None and found.metadata.get("address") == address:
        return legacy_id
    return None


def _settle_withdrawal(
    ledger: LedgerService, stores: CryptoStores, event: Event, *, completed: bool
) -> str:
    inbox = stores.inbox
    withdrawal_id = event.data.get("withdrawal_id")
    if not isinstance(withdrawal_id, str) or not _TOKEN.fullmatch(withdrawal_id):
        raise InvalidWebhook("data.withdrawal_id is missing")
    w = stores.withdrawals.get(withdrawal_id)
    if w is None or w.status is not WithdrawalStatus.PROCESSING:
        return inbox.record(PROVIDER, event, IGNORED, subject=withdrawal_id)
    if completed:
        settled = w.completed(now_iso())
    else:
        reason = event.data.get("reason")
        settled = w.failed(now_iso(), reason if isinstance(reason, str) else None)
    extra = [
        *withdrawals.settlement_writes(stores.withdrawals, stores.payouts, settled),
        inbox.entry(PROVIDER, event, settled.status.value, w.id),
    ]
    try:
        if completed:
            ledger.post_pending(w.transaction_id, extra=extra)
        else:
            ledger.void_pending(w.transaction_id, extra=extra)
    except (HoldNotPending, InvalidState):
        # Settled by a concurrent event between our read and our write: nothing moves now.
        return inbox.record(PROVIDER, event, IGNORED, subject=w.id)
    return settled.status.value
