"""Payment requests (API.md, "Facilities"): a facility creates, reads, lists and cancels them with
its API key (scope ``payment_requests``); the payer lists, reads, pays and declines them. Parse,
call ``chalicelib.services.payment_requests``, answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.adapters.clock import now_iso
from chalicelib.api import responses
from chalicelib.api.access import (
    current_facility,
    current_principal,
    current_user_id,
    facility_only,
    protected,
)
from chalicelib.api.accounts import parse_list_query, query_param
from chalicelib.api.dependencies import (
    get_auth_repository,
    get_ledger_service,
    get_payment_request_repository,
    get_risk,
    get_webhook_events,
)
from chalicelib.api.idempotency import (
    HEADER,
    current_money_replay,
    idempotency_key,
    optional_request_mark,
    replayed_with_money,
)
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.domain.errors import InvalidRequest

if TYPE_CHECKING:
    from chalicelib.domain.payment_requests import PaymentRequest
    from chalicelib.domain.risk import Review
    from chalicelib.domain.transactions import Transaction

payment_requests = Blueprint(__name__)
SCOPE = "payment_requests"


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import payment_request_schemas

    return payment_request_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import payment_requests as module

    return module


def payment_request_view(pr: PaymentRequest, now: str) -> responses.PaymentRequest:
    return responses.PaymentRequest(**pr.view(now))


def _answer(pr: PaymentRequest, now: str | None = None) -> dict[str, Any]:
    view = payment_request_view(pr, now or now_iso())
    return responses.PaymentRequestAnswer(payment_request=view).body()


def _page(page: Any) -> dict[str, Any]:
    return responses.PaymentRequestPage(
        data=[payment_request_view(pr, page.now) for pr in page.requests],
        next_cursor=page.next_cursor,
    ).body()


def _list_query(lister: Any, owner_id: str) -> dict[str, Any]:
    params = payment_requests.current_request.query_params
    query = parse_list_query(params)
    try:
        page = lister(
            get_payment_request_repository(),
            owner_id,
            query_param(params, "status"),
            query.limit,
            query.cursor,
            since=query.since,
            until=query.until,
        )
    except ValueError as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest("cursor is not valid") from exc
    return _page(page)


# -- the facility's side (API key) -----------------------------------------------------------------
@payment_requests.route("/v1/facility/payment-requests", methods=["POST"])
@facility_only(payment_requests, scope=SCOPE)
def create_payment_request() -> Response:
    request = payment_requests.current_request
    # Optional: creating a request reserves no money. With a key, its retry names the same
    # request (docs/facilities.md, "Payment requests").
    key = idempotency_key(payment_requests) if HEADER in request.headers else None
    body = parse_body(request, schemas().NewPaymentRequest)
    caller = current_facility()
    pr = service().create(
        get_payment_request_repository(),
        get_auth_repository(),
        facility_id=caller.facility_id,
        key_id=caller.key.id,
        request=service().NewPaymentRequest(
            amount=body.amount,
            currency=body.currency,
            payer_email=body.payer_email,
            memo=body.memo,
            expires_in=body.expires_in,
        ),
        idempotency_key=key,
        ip=source_ip(request),
    )
    return Response(_answer(pr), status_code=201)


@payment_requests.route("/v1/facility/payment-requests", methods=["GET"])
@facility_only(payment_requests, scope=SCOPE)
def list_facility_payment_requests() -> dict[str, Any]:
    return _list_query(service().list_of_facility, current_facility().facility_id)


@payment_requests.route("/v1/facility/payment-requests/{request_id}", methods=["GET"])
@facility_only(payment_requests, scope=SCOPE)
def get_facility_payment_request(request_id: str) -> dict[str, Any]:
    pr = service().of_facility(
        get_payment_request_repository(), current_facility().facility_id, request_id
    )
    return _answer(pr)


@payment_requests.route("/v1/facility/payment-requests/{request_id}/cancel", methods=["POST"])
@facility_only(payment_requests, scope=SCOPE)
def cancel_payment_request(request_id: str) -> dict[str, Any]:
    request = payment_requests.current_request
    parse_body(request, schemas().RequestBody)
    caller = current_facility()
    pr = service().cancel(
        get_payment_request_repository(),
        facility_id=caller.facility_id,
        key_id=caller.key.id,
        request_id=request_id,
        ip=source_ip(request),
        request=optional_request_mark(
            payment_requests, f"payment_request.cancel\x1f{request_id}", caller.facility_id
        ),
    )
    return _answer(pr)


# -- the payer's side (a user's token) -------------------------------------------------------------
@payment_requests.route("/v1/payment-requests", methods=["GET"])
@protected(payment_requests)
def list_my_payment_requests() -> dict[str, Any]:
    return _list_query(service().list_of_payer, current_principal().user.id)


@payment_requests.route("/v1/payment-requests/{request_id}", methods=["GET"])
@protected(payment_requests)
def get_my_payment_request(request_id: str) -> dict[str, Any]:
    pr = service().of_payer(
        get_payment_request_repository(), current_principal().user.id, request_id
    )
    return _answer(pr)


def _paid(
    pr: PaymentRequest, txn: Transaction, review: Review | None = None
) -> tuple[int, dict[str, Any]]:
    """201 and the paid request; 202 with the pending payment and its review when a risk rule
    held it (API.md, "Risk")."""
    if review is None:
        return 201, _answer(pr, pr.paid_at)
    from chalicelib.api.risk import review_view
    from chalicelib.api.views import transaction_view

    answer = responses.ReviewedPaymentRequestAnswer(
        payment_request=payment_request_view(pr, txn.created_at),
        transaction=transaction_view(txn),
        review=review_view(review),
    )
    return 202, answer.body()


def _payer_ahead(_request: Any) -> None:
    """The caller's risk counter (and the rules, when the cache is stale) is read in the same
    batch as the caller."""
    from chalicelib.services import risk as risk_service

    risk_service.read_ahead(get_risk(), current_user_id())


@payment_requests.route("/v1/payment-requests/{request_id}/pay", methods=["POST"])
@protected(payment_requests)
@replayed_with_money(payment_requests, "payment_request.pay", read_ahead=_payer_ahead)
def pay_payment_request(request_id: str) -> Response:
    parse_body(payment_requests.current_request, schemas().RequestBody)
    replay = current_money_replay()
    payment = service().pay(
        get_ledger_service(),
        get_payment_request_repository(),
        get_webhook_events(),
        get_risk(),
        payer=current_principal().user,
        request_id=request_id,
        # The answer is written with the money: a retry with the key replays it.
        answer_writes=lambda pr, review: replay.writes_for(lambda txn: _paid(pr, txn, review)),
    )
    replay.stored_with_money(True)
    status, body = _paid(payment.request, payment.transaction, payment.review)
    return Response(body, status_code=status)


@payment_requests.route("/v1/payment-requests/{request_id}/decline", methods=["POST"])
@protected(payment_requests)
def decline_payment_request(request_id: str) -> dict[str, Any]:
    parse_body(payment_requests.current_request, schemas().RequestBody)
    user = current_principal().user
    pr = service().decline(
        get_payment_request_repository(),
        get_webhook_events(),
        payer_id=user.id,
        request_id=request_id,
        request=optional_request_mark(
            payment_requests, f"payment_request.decline\x1f{request_id}", user.id
        ),
    )
    return _answer(pr)
