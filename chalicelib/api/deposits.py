"""Card deposits (``/v1/deposits/card``, ``/v1/deposits/{id}``), their refunds
(``/v1/admin/deposits/{id}/refunds``) and Stripe's webhook (``/v1/webhooks/stripe``, public: its
caller proves itself with ``Stripe-Signature``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal, protected
from chalicelib.api.dependencies import (
    get_bound_settings,
    get_deposit_repository,
    get_dispute_repository,
    get_inbox,
    get_ledger_service,
    get_payment_gateway,
    get_refund_repository,
    get_risk,
)
from chalicelib.api.idempotency import idempotency_key, replayable
from chalicelib.api.log import logger
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.domain.money import format_amount

deposits = Blueprint(__name__)

RECEIVED = responses.Received(received=True).body()


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import money_schemas

    return money_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import deposits as module

    return module


def refund_service():  # type: ignore[no-untyped-def]
    from chalicelib.services import refunds as module

    return module


def stripe_events():  # type: ignore[no-untyped-def]
    from chalicelib.services import stripe_events as module

    return module


def deposit_view(d: Any) -> responses.Deposit:
    return responses.Deposit(**_deposit_fields(d))


def _deposit_fields(d: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "status": d.public_status,
        "amount": format_amount(d.amount, d.currency),
        "currency": d.currency,
        "payment_intent_id": d.payment_intent_id,
        "created_at": d.created_at,
        "credited_amount": _amount(d.credited_amount, d.currency),
        "refunded_amount": format_amount(d.refunded_amount, d.currency),
    }


def _amount(minor: int | None, code: str) -> str | None:
    return None if minor is None else format_amount(minor, code)


def refund_view(r: Any) -> responses.Refund:
    return responses.Refund(
        id=r.id,
        deposit_id=r.deposit_id,
        amount=format_amount(r.amount, r.currency),
        currency=r.currency,
        status=r.status.value,
        reason=r.reason,
        transaction_id=r.transaction_id,
        stripe_refund_id=r.stripe_refund_id,
        failure_reason=r.failure_reason,
        created_at=r.created_at,
    )


def _risk_ahead(request: Any, user_id: str) -> None:
    """The caller's risk counter (and the rules, when the cache is stale) in the first read."""
    from chalicelib.services import risk

    risk.read_ahead(get_risk(), user_id)


@deposits.route("/v1/deposits/card", methods=["POST"])
@protected(deposits, read_ahead=_risk_ahead)
@replayable(deposits, "card-deposit")
def create_card_deposit() -> Response:
    body = parse_body(deposits.current_request, schemas().NewCardDeposit)
    get_bound_settings()
    d = service().create_card_deposit(
        get_payment_gateway(),
        deposits=get_deposit_repository(),
        risk=get_risk(),
        user=current_principal().user,
        amount=body.amount,
        currency_code=body.currency,
        idempotency_key=idempotency_key(deposits),
    )
    created = responses.NewDeposit(**_deposit_fields(d), client_secret=d.client_secret)
    return Response(responses.NewDepositAnswer(deposit=created).body(), status_code=201)


@deposits.route("/v1/deposits/{deposit_id}", methods=["GET"])
@protected(deposits)
def get_deposit(deposit_id: str) -> dict[str, Any]:
    get_bound_settings()
    deposit = service().get_own(get_deposit_repository(), current_principal().user, deposit_id)
    return responses.DepositAnswer(deposit=deposit_view(deposit)).body()


@deposits.route("/v1/admin/deposits/{deposit_id}/refunds", methods=["POST"])
@admin_only(deposits)
@replayable(deposits, "refund")
def refund_deposit(deposit_id: str) -> Response:
    request = deposits.current_request
    body = parse_body(request, schemas().NewRefund)
    get_bound_settings()
    refund = refund_service().request_refund(
        get_ledger_service(),
        get_payment_gateway(),
        refunds=get_refund_repository(),
        deposits=get_deposit_repository(),
        inbox=get_inbox(),
        admin=current_principal().user,
        deposit_id=deposit_id,
        amount=body.amount,
        reason=body.reason,
        idempotency_key=idempotency_key(deposits),
        ip=source_ip(request),
    )
    return Response(responses.RefundAnswer(refund=refund_view(refund)).body(), status_code=201)


@deposits.route("/v1/webhooks/stripe", methods=["POST"])
def stripe_webhook() -> dict[str, Any]:
    request = deposits.current_request
    outcome = stripe_events().handle(
        get_ledger_service(),
        get_payment_gateway(),
        request.raw_body or b"",
        request.headers.get("stripe-signature"),
        deposits=get_deposit_repository(),
        refunds=get_refund_repository(),
        disputes=get_dispute_repository(),
        inbox=get_inbox(),
    )
    logger.info("stripe webhook processed", outcome=outcome)
    return RECEIVED
