"""Fx quotes on the single table (``QuoteItem``): store, read, and the swap's "mark used" write."""

from __future__ import annotations

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import QuoteItem
from chalicelib.domain.errors import LedgerError, VersionConflict
from chalicelib.domain.fx import Quote


class DynamoQuoteRepository:
    def put(self, quote: Quote) -> None:
        """Store a new quote.

        Raises:
            VersionConflict: the quote id is taken (ids are random; this is a bug, not a race).
        """
        item = QuoteItem.from_domain(quote)
        try:
            item.save(condition=QuoteItem.PK.does_not_exist())
        except QuoteItem.PutError as exc:
            raise VersionConflict(f"quote id {quote.id} is taken") from exc

    def get(self, quote_id: str) -> Quote | None:
        """The quote, read strongly consistent (a swap must see ``used`` as last written)."""
        try:
            item = QuoteItem.get(keys.quote_pk(quote_id), keys.QUOTE_SK, consistent_read=True)
        except QuoteItem.DoesNotExist:
            return None
        return item.to_domain()

    @staticmethod
    def mark_used(
        quote: Quote, *, transaction_id: str, now_epoch: int, used_at: str, error: LedgerError
    ) -> ExtraWrite:
        """The update that spends the quote, for the swap's own TransactWriteItems.

        Its condition is ``used = false AND expires_at > now``: if another swap spent the quote,
        or it expired since it was read, nothing of the swap is written and ``error`` is raised.
        ``expires_at`` is a whole epoch second, so ``expires_at > floor(now)`` is exactly
        "not expired yet".
        """
        item = QuoteItem.from_domain(quote)
        return ExtraWrite(
            model=item,
            condition=(QuoteItem.used == False)  # noqa: E712 - a DynamoDB condition expression
            & (QuoteItem.expires_at > now_epoch),
            error=error,
            actions=[
                QuoteItem.used.set(True),
                QuoteItem.used_at.set(used_at),
                QuoteItem.transaction_id.set(transaction_id),
            ],
        )
