"""``POST /v1/fx/quotes`` and ``POST /v1/fx/swaps`` (API.md, "Moving money"): price a currency
swap, then execute it. Parse, call ``chalicelib.services.fx``, answer with the views below."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import current_principal, protected
from chalicelib.api.dependencies import get_bound_settings, get_ledger_service
from chalicelib.api.idempotency import replayable
from chalicelib.api.requests import parse_body
from chalicelib.api.views import transaction_view
from chalicelib.domain.fx import Quote, format_rate
from chalicelib.domain.money import format_amount

fx = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import fx_schemas

    return fx_schemas


def quote_view(quote: Quote) -> responses.Quote:
    return responses.Quote(
        id=quote.id,
        from_currency=quote.from_currency,
        to_currency=quote.to_currency,
        from_amount=format_amount(quote.from_amount, quote.from_currency),
        to_amount=format_amount(quote.to_amount, quote.to_currency),
        rate=format_rate(quote.rate),
        created_at=quote.created_at,
        expires_at=quote.expires_at_iso,
    )


@fx.route("/v1/fx/quotes", methods=["POST"])
@protected(fx)
def create_quote() -> Response:
    # No Idempotency-Key: a quote moves and reserves nothing; a retry just prices again.
    from chalicelib.adapters.dynamo.quote_repository import DynamoQuoteRepository
    from chalicelib.adapters.rates import rate_source_for
    from chalicelib.services import fx as service

    body = parse_body(fx.current_request, schemas().NewQuote)
    settings = get_bound_settings()
    quote = service.create_quote(
        DynamoQuoteRepository(),
        rate_source_for(settings),
        user=current_principal().user,
        request=service.QuoteRequest(body.from_currency, body.to_currency, body.from_amount),
        ttl_seconds=settings.fx_quote_ttl_seconds,
    )
    return Response(responses.QuoteAnswer(quote=quote_view(quote)).body(), status_code=201)


@fx.route("/v1/fx/swaps", methods=["POST"])
@protected(fx)
@replayable(fx, "swap")
def create_swap() -> Response:
    from chalicelib.adapters.dynamo.quote_repository import DynamoQuoteRepository
    from chalicelib.services import fx as service

    body = parse_body(fx.current_request, schemas().NewSwap)
    txn = service.swap(
        get_ledger_service(),
        DynamoQuoteRepository(),
        user=current_principal().user,
        quote_id=body.quote_id,
    )
    answer = responses.TransactionAnswer(transaction=transaction_view(txn))
    return Response(answer.body(), status_code=201)
