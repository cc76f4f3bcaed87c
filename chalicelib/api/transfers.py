"""``POST /v1/transfers`` and facilities (``POST /v1/admin/facilities``, ``GET /v1/facilities``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.access import admin_only, current_principal, protected
from chalicelib.api.dependencies import get_auth_service, get_ledger_service
from chalicelib.api.idempotency import idempotency_key, replayable
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.api.views import transaction_view

transfers = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import money_schemas

    return money_schemas


@transfers.route("/v1/transfers", methods=["POST"])
@protected(transfers)
@replayable(transfers, "transfer")
def create_transfer() -> Response:
    from chalicelib.services import transfers as service

    body = parse_body(transfers.current_request, schemas().Transfer)
    ledger = get_ledger_service()
    txn = service.transfer(
        ledger,
        get_auth_service().repository,
        sender=current_principal().user,
        request=service.TransferRequest(
            amount=body.amount,
            currency=body.currency,
            to_email=body.to_email,
            to_facility_id=body.to_facility_id,
            memo=body.memo,
        ),
        idempotency_key=idempotency_key(transfers),
    )
    return Response({"transaction": transaction_view(txn)}, status_code=201)


@transfers.route("/v1/admin/facilities", methods=["POST"])
@admin_only(transfers)
def create_facility() -> Response:
    from chalicelib.services import facilities

    body = parse_body(transfers.current_request, schemas().NewFacility)
    facility = facilities.create_facility(
        body.name, admin_id=current_principal().user.id, ip=source_ip(transfers.current_request)
    )
    return Response({"facility": {"id": facility.id, "name": facility.name}}, status_code=201)


@transfers.route("/v1/facilities", methods=["GET"])
@protected(transfers)
def list_facilities() -> dict[str, Any]:
    from chalicelib.services import facilities

    found = facilities.list_facilities()
    return {"data": [{"id": f.id, "name": f.name} for f in found], "next_cursor": None}
