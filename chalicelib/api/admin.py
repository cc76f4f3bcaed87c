"""Operator routes (API.md, "Admin"): users and their suspension, any transaction, the
rollback of a posted transaction and adjustments. Every route needs an admin signed in with MFA
(``admin_only``); parse, call ``chalicelib.services.operators`` (or ``.adjustments``), answer."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal
from chalicelib.api.accounts import parse_list_query, query_param
from chalicelib.api.dependencies import (
    get_auth_repository,
    get_bound_settings,
    get_deposit_repository,
    get_ledger_service,
)
from chalicelib.api.idempotency import replayable, request_mark
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.api.views import managed_user_view, transaction_view
from chalicelib.domain.adjustments import Adjustment
from chalicelib.domain.money import format_amount

admin = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import admin_schemas

    return admin_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import operators

    return operators


@admin.route("/v1/admin/users", methods=["GET"])
@admin_only(admin)
def list_users() -> dict[str, Any]:
    query = parse_list_query(admin.current_request.query_params)
    page = service().list_users(
        get_auth_repository(),
        query_param(admin.current_request.query_params, "email"),
        query.limit,
        query.cursor,
    )
    return responses.ManagedUserPage(
        data=[managed_user_view(u) for u in page.users], next_cursor=page.next_cursor
    ).body()


@admin.route("/v1/admin/users/{user_id}/suspend", methods=["POST"])
@admin_only(admin)
def suspend_user(user_id: str) -> dict[str, Any]:
    body = parse_body(admin.current_request, schemas().Suspension)
    user = service().suspend(
        get_auth_repository(),
        current_principal().user,
        user_id,
        body.reason,
        source_ip(admin.current_request),
    )
    return responses.ManagedUserAnswer(user=managed_user_view(user)).body()


@admin.route("/v1/admin/users/{user_id}/unsuspend", methods=["POST"])
@admin_only(admin)
def unsuspend_user(user_id: str) -> dict[str, Any]:
    parse_body(admin.current_request, schemas().RequestBody)
    user = service().unsuspend(
        get_auth_repository(),
        current_principal().user,
        user_id,
        source_ip(admin.current_request),
    )
    return responses.ManagedUserAnswer(user=managed_user_view(user)).body()


@admin.route("/v1/admin/users/{user_id}/role", methods=["POST"])
@admin_only(admin)
def change_role(user_id: str) -> dict[str, Any]:
    body = parse_body(admin.current_request, schemas().RoleChange)
    user = service().set_role(
        get_auth_repository(),
        current_principal().user,
        user_id,
        body.role,
        source_ip(admin.current_request),
    )
    return responses.ManagedUserAnswer(user=managed_user_view(user)).body()


@admin.route("/v1/admin/transactions/{transaction_id}", methods=["GET"])
@admin_only(admin)
def get_any_transaction(transaction_id: str) -> dict[str, Any]:
    txn = service().get_transaction(get_ledger_service(), transaction_id)
    return responses.TransactionAnswer(transaction=transaction_view(txn)).body()


@admin.route("/v1/admin/transactions/{transaction_id}/rollback", methods=["POST"])
@admin_only(admin)
@replayable(admin, "rollback")
def rollback_transaction(transaction_id: str) -> Response:
    body = parse_body(admin.current_request, schemas().Rollback)
    user = current_principal().user
    reversal = service().rollback(
        get_ledger_service(),
        get_deposit_repository(),
        user,
        transaction_id,
        reason=body.reason,
        force=body.force,
        ip=source_ip(admin.current_request),
        request_mark=request_mark(admin, "rollback", user.id),
    )
    return Response(transaction_answer(reversal), status_code=201)


def transaction_answer(txn: Any) -> dict[str, Any]:
    return responses.TransactionAnswer(transaction=transaction_view(txn)).body()


def adjustment_view(adjustment: Adjustment) -> responses.Adjustment:
    return responses.Adjustment(
        id=adjustment.id,
        status=adjustment.status.value,
        account_id=adjustment.account_id,
        amount=format_amount(adjustment.amount, adjustment.currency),
        currency=adjustment.currency,
        reason=adjustment.reason,
        requested_by=adjustment.requested_by,
        requested_at=adjustment.requested_at,
        approved_by=adjustment.approved_by,
        approved_at=adjustment.approved_at,
        transaction_id=adjustment.transaction_id,
    )


def _adjustments():  # type: ignore[no-untyped-def]
    from chalicelib.adapters.dynamo.adjustment_repository import DynamoAdjustmentRepository
    from chalicelib.services import adjustments

    return adjustments, DynamoAdjustmentRepository()


@admin.route("/v1/admin/adjustments", methods=["POST"])
@admin_only(admin)
@replayable(admin, "adjustment")
def create_adjustment() -> Response:
    from chalicelib.adapters.rates import rate_source_for

    body = parse_body(admin.current_request, schemas().NewAdjustment)
    settings = get_bound_settings()
    adjustments, repository = _adjustments()
    user = current_principal().user
    requested = adjustments.request(
        get_ledger_service(),
        repository,
        rate_source_for(settings),
        user,
        account_id=body.account_id,
        amount=body.amount,
        reason=body.reason,
        threshold=adjustments.threshold_minor(settings.adjustment_approval_threshold),
        ip=source_ip(admin.current_request),
        request_mark=request_mark(admin, "adjustment", user.id),
    )
    if requested.transaction is None:
        answer = responses.AdjustmentAnswer(adjustment=adjustment_view(requested.adjustment))
        return Response(answer.body(), status_code=202)
    return Response(transaction_answer(requested.transaction), status_code=201)


@admin.route("/v1/admin/adjustments/{adjustment_id}/approve", methods=["POST"])
@admin_only(admin)
def approve_adjustment(adjustment_id: str) -> Response:
    parse_body(admin.current_request, schemas().RequestBody)
    adjustments, repository = _adjustments()
    txn = adjustments.approve(
        get_ledger_service(),
        repository,
        current_principal().user,
        adjustment_id,
        source_ip(admin.current_request),
    )
    return Response(transaction_answer(txn), status_code=201)
