"""Payroll payouts (API.md, "Facilities"): a facility pays its staff in one batch
(``POST /v1/facility/payouts``), and reads its batches back. Parse, call
``chalicelib.services.payroll``, answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import current_facility, facility_only
from chalicelib.api.accounts import parse_list_query
from chalicelib.api.dependencies import (
    get_ledger_service,
    get_payroll_repository,
    get_webhook_events,
)
from chalicelib.api.idempotency import idempotency_key, replayable
from chalicelib.api.requests import parse_body

if TYPE_CHECKING:
    from chalicelib.domain.payroll import Payroll

payroll = Blueprint(__name__)


def _facility_id() -> str:
    return current_facility().facility_id


def payroll_view(batch: Payroll) -> responses.Payroll:
    from chalicelib.services.payroll import payout_data

    return responses.Payroll.model_validate(payout_data(batch))


def summary_view(batch: Payroll) -> responses.PayrollSummary:
    data = payroll_view(batch).model_dump()
    data.pop("items")
    return responses.PayrollSummary.model_validate(data)


@payroll.route("/v1/facility/payouts", methods=["POST"])
@facility_only(payroll, scope="payouts")
@replayable(payroll, "payroll", caller_of=_facility_id)
def create_payroll() -> Response:
    from chalicelib.api import payroll_schemas
    from chalicelib.services import payroll as service

    body = parse_body(payroll.current_request, payroll_schemas.NewPayroll)
    payer = service.Payer(
        get_ledger_service(),
        get_payroll_repository(),
        get_webhook_events(),
        workers=service.WORKERS,
    )
    batch = service.pay(
        payer,
        facility_id=_facility_id(),
        request=service.PayrollRequest(
            currency=body.currency,
            items=[
                service.PayrollLine(to_email=i.to_email, amount=i.amount, memo=i.memo)
                for i in body.items
            ],
        ),
        idempotency_key=idempotency_key(payroll),
    )
    answer = responses.PayrollAnswer(payout=payroll_view(batch))
    return Response(answer.body(), status_code=201)


@payroll.route("/v1/facility/payouts/{payout_id}", methods=["GET"])
@facility_only(payroll, scope="payouts")
def get_payroll(payout_id: str) -> dict[str, Any]:
    from chalicelib.services import payroll as service

    batch = service.get_payroll(get_payroll_repository(), _facility_id(), payout_id)
    return responses.PayrollAnswer(payout=payroll_view(batch)).body()


@payroll.route("/v1/facility/payouts", methods=["GET"])
@facility_only(payroll, scope="payouts")
def list_payrolls() -> dict[str, Any]:
    from chalicelib.services import payroll as service

    query = parse_list_query(payroll.current_request.query_params)
    page, next_cursor = service.payrolls_of_facility(
        get_payroll_repository(), _facility_id(), **asdict(query)
    )
    return responses.PayrollPage(
        data=[summary_view(b) for b in page], next_cursor=next_cursor
    ).body()
