"""Card deposits (``/v1/deposits/card``, ``/v1/deposits/{id}``) and Stripe's webhook
(``/v1/webhooks/stripe``, public: its caller proves itself with ``Stripe-Signature``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.access import current_principal, protected
from chalicelib.api.dependencies import (
    get_bound_settings,
    get_ledger_service,
    get_payment_gateway,
)
from chalicelib.api.idempotency import idempotency_key, replayable
from chalicelib.api.log import logger
from chalicelib.api.requests import parse_body
from chalicelib.domain.money import format_amount

deposits = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import money_schemas

    return money_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import deposits as module

    return module


def deposit_view(d: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "status": d.status,
        "amount": format_amount(d.amount, d.currency),
        "currency": d.currency,
        "payment_intent_id": d.payment_intent_id,
        "created_at": d.created_at,
    }


@deposits.route("/v1/deposits/card", methods=["POST"])
@protected(deposits)
@replayable(deposits, "card-deposit")
def create_card_deposit() -> Response:
    body = parse_body(deposits.current_request, schemas().NewCardDeposit)
    get_bound_settings()
    d = service().create_card_deposit(
        get_payment_gateway(),
        user=current_principal().user,
        amount=body.amount,
        currency_code=body.currency,
        idempotency_key=idempotency_key(deposits),
    )
    body = {"deposit": deposit_view(d) | {"client_secret": d.client_secret}}
    return Response(body, status_code=201)


@deposits.route("/v1/deposits/{deposit_id}", methods=["GET"])
@protected(deposits)
def get_deposit(deposit_id: str) -> dict[str, Any]:
    get_bound_settings()
    return {"deposit": deposit_view(service().get_own(current_principal().user, deposit_id))}


@deposits.route("/v1/webhooks/stripe", methods=["POST"])
def stripe_webhook() -> dict[str, Any]:
    request = deposits.current_request
    outcome = service().handle_stripe_event(
        get_ledger_service(),
        get_payment_gateway(),
        request.raw_body or b"",
        request.headers.get("stripe-signature"),
    )
    logger.info("stripe webhook processed", outcome=outcome)
    return {"received": True}
