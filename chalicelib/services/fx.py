"""Currency swaps: price a quote, then execute it once as one balanced ``swap`` transaction.

A swap of quote ``q`` (``from_amount`` A of currency F for ``to_amount`` B of currency T)::

    user's F wallet   -A        FX pool (F)   +A
    FX pool (T)       -B        user's T wallet  +B

Each currency balances on its own; the FX pools are sharded platform accounts and may go
negative (the platform's position). The transaction id is derived from the quote id, so a quote
moves money at most once even if everything else failed; the quote is marked used in the same
TransactWriteItems, on condition that it is still unused and unexpired, so neither two racing
swaps nor expiry in the last millisecond can spend it twice or late.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chalicelib.adapters.clock import to_iso
from chalicelib.domain import fx
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    LedgerError,
    QuoteExpired,
    QuoteNotFound,
    QuoteUsed,
)
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.transactions import Transaction, TransactionType, derive_transaction_id
from chalicelib.domain.users import User
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite

QUOTE_ID_PREFIX = "fxq_"


class QuoteRepository(Protocol):
    """Quotes, kept until they expire (``adapters.dynamo.quote_repository``)."""

    def put(self, quote: fx.Quote) -> None: ...
    def get(self, quote_id: str) -> fx.Quote | None:
        """Strongly consistent: a swap must see ``used`` as last written."""
        ...

    def mark_used(
        self,
        quote: fx.Quote,
        *,
        transaction_id: str,
        now_epoch: int,
        used_at: str,
        error: LedgerError,
    ) -> SideWrite:
        """The write that spends the quote in the swap's own transaction, on condition that it
        is still unused and unexpired (else ``error``)."""
        ...


@dataclass(frozen=True)
class QuoteRequest:
    from_currency: object
    to_currency: object
    from_amount: object


def swap_transaction_id(quote_id: str) -> str:
    return derive_transaction_id("swap", quote_id)


def create_quote(
    quotes: QuoteRepository,
    rates: fx.RateSource,
    *,
    user: User,
    request: QuoteRequest,
    ttl_seconds: int,
    now: datetime | None = None,
) -> fx.Quote:
    """Price ``from_amount`` at the current rate and keep the offer for ``ttl_seconds``.

    Raises (in order of precedence):
        UnsupportedCurrency, SameCurrencySwap, InvalidAmount, RateUnavailable,
        ConvertedAmountOutOfRange.
    """
    from_code = currency(request.from_currency).code
    to_code = currency(request.to_currency).code
    fx.check_pair(from_code, to_code)
    from_minor = parse_amount(request.from_amount, from_code)
    quote = fx.price(
        quote_id=QUOTE_ID_PREFIX + secrets.token_hex(12),
        user_id=user.id,
        from_code=from_code,
        to_code=to_code,
        from_minor=from_minor,
        rate=rates.rate(from_code, to_code),
        created_at=now or datetime.now(UTC),
        ttl_seconds=ttl_seconds,
    )
    quotes.put(quote)
    return quote


def swap(
    ledger: LedgerService,
    quotes: QuoteRepository,
    *,
    user: User,
    quote_id: str,
    now: datetime | None = None,
) -> Transaction:
    """Execute the caller's quote: one ``swap`` transaction, and the quote marked used with it.

    Raises (in order of precedence):
        QuoteNotFound: no such quote, or it is another user's.
        QuoteUsed: a swap already executed it (this one, or a racing one).
        QuoteExpired: it expired, even if only while this swap was being written.
        InsufficientFunds: the from-wallet cannot cover ``from_amount``.
    """
    now = now or datetime.now(UTC)
    quote = quotes.get(quote_id)
    if quote is None or quote.user_id != user.id:
        raise QuoteNotFound(f"no quote {quote_id}")
    if quote.used:
        raise QuoteUsed(f"quote {quote_id} was already used")
    if quote.expired(now):
        raise QuoteExpired(f"quote {quote_id} expired at {quote.expires_at_iso}")
    transaction_id = swap_transaction_id(quote.id)
    spend = quotes.mark_used(
        quote,
        transaction_id=transaction_id,
        now_epoch=fx.epoch_seconds(now),
        used_at=to_iso(now),
        error=QuoteExpired(f"quote {quote_id} expired at {quote.expires_at_iso}"),
    )
    try:
        recorded = ledger.record(
            transaction_id=transaction_id,
            type=TransactionType.SWAP,
            postings=_postings(quote, user.id),
            memo=f"swap {quote.from_currency} to {quote.to_currency}",
            metadata={"quote_id": quote.id, "rate": fx.format_rate(quote.rate)},
            extra=[spend],
        )
    except QuoteExpired:
        # The quote's condition failed without the transaction existing yet: it expired, or
        # (should a future writer mark quotes used elsewhere) it was spent. Say which.
        latest = quotes.get(quote_id)
        if latest is not None and latest.used:
            raise QuoteUsed(f"quote {quote_id} was already used") from None
        raise
    if not recorded.created:
        # The transaction of this quote was already written: by a racing swap, or by an earlier
        # swap whose replay record is gone. Either way this request moved nothing.
        raise QuoteUsed(f"quote {quote_id} was already used")
    return recorded.transaction


def _postings(quote: fx.Quote, user_id: str) -> list[PostingRequest]:
    """Through the FX pools; the user's wallets are found by their derived ids, no query."""
    give, get = quote.from_currency, quote.to_currency
    return [
        PostingRequest(wallet_id(OwnerType.USER, user_id, give), give, -quote.from_amount),
        PostingRequest(PlatformAccount(PlatformKind.FX_POOL, give), give, quote.from_amount),
        PostingRequest(PlatformAccount(PlatformKind.FX_POOL, get), get, -quote.to_amount),
        PostingRequest(wallet_id(OwnerType.USER, user_id, get), get, quote.to_amount),
    ]
