"""Withdrawals (``/v1/withdrawals``) and their review (``/v1/admin/withdrawals``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal, protected
from chalicelib.api.accounts import parse_list_query, query_param
from chalicelib.api.dependencies import (
    get_bound_settings,
    get_crypto_gateway,
    get_hold_expiries,
    get_ledger_service,
    get_payout_repository,
    get_risk,
    get_withdrawal_repository,
)
from chalicelib.api.idempotency import idempotency_key, optional_request_mark, replayable
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.money import format_amount

withdrawals = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import money_schemas

    return money_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import withdrawals as module

    return module


def withdrawal_view(w: Any) -> responses.Withdrawal:
    return responses.Withdrawal(**_withdrawal_fields(w))


def _withdrawal_fields(w: Any) -> dict[str, Any]:
    return {
        "id": w.id,
        "status": str(w.status),
        "amount": format_amount(w.amount, w.currency),
        "currency": w.currency,
        "destination": w.destination,
        "transaction_id": w.transaction_id,
        "created_at": w.created_at,
        "decided_at": w.decided_at,
        "reason": w.reason,
    }


def queued_withdrawal_view(w: Any) -> responses.QueuedWithdrawal:
    """A withdrawal in the review queue: whose it is, too."""
    return responses.QueuedWithdrawal(
        **_withdrawal_fields(w), user_id=w.user_id, risk_rule=w.risk_rule
    )


def _risk_ahead(request: Any, user_id: str) -> None:
    """The caller's risk counter (and the rules, when the cache is stale) in the first read."""
    from chalicelib.services import risk

    risk.read_ahead(get_risk(), user_id)


@withdrawals.route("/v1/withdrawals", methods=["POST"])
@protected(withdrawals, read_ahead=_risk_ahead)
@replayable(withdrawals, "withdrawal")
def request_withdrawal() -> Response:
    body = parse_body(withdrawals.current_request, schemas().NewWithdrawal)
    w = service().request(
        get_ledger_service(),
        get_withdrawal_repository(),
        get_bound_settings(),
        get_risk(),
        user=current_principal().user,
        amount=body.amount,
        currency_code=body.currency,
        destination=body.destination,
        idempotency_key=idempotency_key(withdrawals),
        deadlines=get_hold_expiries(),
    )
    answer = responses.WithdrawalAnswer(withdrawal=withdrawal_view(w))
    return Response(answer.body(), status_code=201)


@withdrawals.route("/v1/withdrawals/{withdrawal_id}", methods=["GET"])
@protected(withdrawals)
def get_withdrawal(withdrawal_id: str) -> dict[str, Any]:
    w = service().get_own(get_withdrawal_repository(), current_principal().user, withdrawal_id)
    return responses.WithdrawalAnswer(withdrawal=withdrawal_view(w)).body()


@withdrawals.route("/v1/withdrawals/{withdrawal_id}/cancel", methods=["POST"])
@protected(withdrawals)
def cancel_withdrawal(withdrawal_id: str) -> dict[str, Any]:
    parse_body(withdrawals.current_request, schemas().RequestBody)
    user = current_principal().user
    mark = optional_request_mark(withdrawals, f"withdrawal.cancel\x1f{withdrawal_id}", user.id)
    w = service().cancel(
        get_ledger_service(), get_withdrawal_repository(), user, withdrawal_id, mark
    )
    return responses.WithdrawalAnswer(withdrawal=withdrawal_view(w)).body()


@withdrawals.route("/v1/admin/withdrawals", methods=["GET"])
@admin_only(withdrawals)
def review_queue() -> dict[str, Any]:
    params = withdrawals.current_request.query_params
    query = parse_list_query(params)
    try:
        page = service().review_queue(
            get_withdrawal_repository(), query_param(params, "status"), query.limit, query.cursor
        )
    except ValueError as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest("cursor is not valid") from exc
    return responses.QueuedWithdrawalPage(
        data=[queued_withdrawal_view(w) for w in page.withdrawals], next_cursor=page.next_cursor
    ).body()


@withdrawals.route("/v1/admin/withdrawals/{withdrawal_id}/approve", methods=["POST"])
@admin_only(withdrawals)
def approve_withdrawal(withdrawal_id: str) -> dict[str, Any]:
    parse_body(withdrawals.current_request, schemas().RequestBody)
    admin = current_principal().user
    w = service().approve(
        get_withdrawal_repository(),
        get_payout_repository(),
        admin,
        withdrawal_id,
        source_ip(withdrawals.current_request),
        get_crypto_gateway(),
        optional_request_mark(withdrawals, f"withdrawal.approve\x1f{withdrawal_id}", admin.id),
    )
    return responses.WithdrawalAnswer(withdrawal=withdrawal_view(w)).body()


@withdrawals.route("/v1/admin/withdrawals/{withdrawal_id}/reject", methods=["POST"])
@admin_only(withdrawals)
def reject_withdrawal(withdrawal_id: str) -> dict[str, Any]:
    body = parse_body(withdrawals.current_request, schemas().Rejection)
    admin = current_principal().user
    w = service().reject(
        get_ledger_service(),
        get_withdrawal_repository(),
        admin,
        withdrawal_id,
        body.reason,
        source_ip(withdrawals.current_request),
        optional_request_mark(withdrawals, f"withdrawal.reject\x1f{withdrawal_id}", admin.id),
    )
    return responses.WithdrawalAnswer(withdrawal=withdrawal_view(w)).body()
