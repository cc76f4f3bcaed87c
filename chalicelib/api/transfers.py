"""``POST /v1/transfers`` and facilities (``POST /v1/admin/facilities``, ``GET /v1/facilities``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal, current_user_id, protected
from chalicelib.api.dependencies import (
    get_auth_service,
    get_facility_repository,
    get_ledger_service,
    get_risk,
    get_webhook_events,
)
from chalicelib.api.idempotency import current_money_replay, idempotency_key, replayed_with_money
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.api.views import transaction_view

if TYPE_CHECKING:
    from chalicelib.domain.risk import Review, Verdict
    from chalicelib.domain.transactions import Transaction

transfers = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import money_schemas

    return money_schemas


def _recipient_ahead(request: Any) -> None:
    """The recipient's email claim (and the caller's risk counter, when there are rules) is read
    in the same batch as the caller (DESIGN.md budget)."""
    from chalicelib.services import risk as risk_service
    from chalicelib.services import transfers as service

    risk_service.read_ahead(get_risk(), current_user_id())

    try:
        body = json.loads(request.raw_body or b"{}")
    except (ValueError, RecursionError):
        return  # parse_body answers 400 for it
    if isinstance(body, dict):
        service.read_ahead(get_auth_service().repository, body.get("to_email"))


def _answer(txn: Transaction, review: Review | None = None) -> tuple[int, dict[str, Any]]:
    """201 and the transaction; 202 with its review when a risk rule held it (API.md, "Risk")."""
    if review is None:
        return 201, responses.TransactionAnswer(transaction=transaction_view(txn)).body()
    from chalicelib.api.risk import review_view

    answer = responses.ReviewedTransactionAnswer(
        transaction=transaction_view(txn), review=review_view(review)
    )
    return 202, answer.body()


@transfers.route("/v1/transfers", methods=["POST"])
@protected(transfers)
@replayed_with_money(transfers, "transfer", read_ahead=_recipient_ahead)
def create_transfer() -> Response:
    from chalicelib.services import transfers as service

    body = parse_body(transfers.current_request, schemas().Transfer)
    replay = current_money_replay()

    def with_answer(txn: Transaction, verdict: Verdict, review: Review | None) -> Any:
        return replay.writes_for(lambda t: _answer(t, review))(txn)

    guarded = service.transfer(
        get_ledger_service(),
        get_auth_service().repository,
        get_risk(),
        sender=current_principal().user,
        request=service.TransferRequest(
            amount=body.amount,
            currency=body.currency,
            to_email=body.to_email,
            to_facility_id=body.to_facility_id,
            memo=body.memo,
        ),
        idempotency_key=idempotency_key(transfers),
        extra_for=with_answer,
        events=get_webhook_events(),
    )
    replay.stored_with_money(guarded.recorded.created)
    status, answer = _answer(guarded.recorded.transaction, guarded.review)
    return Response(answer, status_code=status)


def facility_view(facility: Any) -> responses.Facility:
    return responses.Facility(id=facility.id, name=facility.name)


@transfers.route("/v1/admin/facilities", methods=["POST"])
@admin_only(transfers)
def create_facility() -> Response:
    from chalicelib.services import facilities

    body = parse_body(transfers.current_request, schemas().NewFacility)
    facility = facilities.create_facility(
        get_facility_repository(),
        body.name,
        admin_id=current_principal().user.id,
        ip=source_ip(transfers.current_request),
    )
    answer = responses.FacilityAnswer(facility=facility_view(facility))
    return Response(answer.body(), status_code=201)


@transfers.route("/v1/facilities", methods=["GET"])
@protected(transfers)
def list_facilities() -> dict[str, Any]:
    from chalicelib.api.accounts import parse_list_query
    from chalicelib.services import facilities

    query = parse_list_query(transfers.current_request.query_params)
    found = facilities.list_facilities(get_facility_repository())
    page, next_cursor = facilities.page_of(found, query.limit, query.cursor)
    return responses.FacilityPage(
        data=[facility_view(f) for f in page], next_cursor=next_cursor
    ).body()
