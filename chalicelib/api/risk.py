"""Risk administration (API.md, "Risk"): the rule set (``/v1/admin/risk/rules``) and the review
queue (``/v1/admin/reviews``). Every route needs an admin signed in with MFA; parse, call
``chalicelib.services.risk``, answer."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal
from chalicelib.api.accounts import parse_list_query, query_param
from chalicelib.api.dependencies import get_ledger_service, get_risk
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.api.views import transaction_view
from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.money import format_amount

risk = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import risk_schemas

    return risk_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import risk as module

    return module


def rules_view(rule_set: Any) -> responses.RiskRules:
    return responses.RiskRules(
        version=rule_set.version,
        rules=[responses.RiskRule(**rule) for rule in rule_set.to_json()],
        updated_at=rule_set.updated_at,
        updated_by=rule_set.updated_by,
    )


def review_view(r: Any) -> responses.Review:
    return responses.Review(
        id=r.id,
        status=r.status.value,
        user_id=r.user_id,
        operation=r.operation.value,
        amount=format_amount(r.amount, r.currency),
        currency=r.currency,
        rule=r.rule,
        created_at=r.created_at,
        transaction_id=r.transaction_id,
        expires_at=r.expires_at,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        reason=r.reason,
    )


def decided_answer(decided: Any) -> dict[str, Any]:
    return responses.ReviewedTransactionAnswer(
        transaction=transaction_view(decided.transaction), review=review_view(decided.review)
    ).body()


@risk.route("/v1/admin/risk/rules", methods=["GET"])
@admin_only(risk)
def get_rules() -> dict[str, Any]:
    return rules_view(service().current_rules(get_risk())).body()


@risk.route("/v1/admin/risk/rules", methods=["PUT"])
@admin_only(risk)
def put_rules() -> dict[str, Any]:
    body = parse_body(risk.current_request, schemas().RulesChange)
    changed = service().replace_rules(
        get_risk(),
        current_principal().user,
        body.rules,
        body.version,
        source_ip(risk.current_request),
    )
    return rules_view(changed).body()


@risk.route("/v1/admin/reviews", methods=["GET"])
@admin_only(risk)
def list_reviews() -> dict[str, Any]:
    params = risk.current_request.query_params
    query = parse_list_query(params)
    try:
        page = service().review_queue(
            get_risk(), query_param(params, "status"), query.limit, query.cursor
        )
    except ValueError as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest("cursor is not valid") from exc
    return responses.ReviewPage(
        data=[review_view(r) for r in page.reviews], next_cursor=page.next_cursor
    ).body()


@risk.route("/v1/admin/reviews/{review_id}/approve", methods=["POST"])
@admin_only(risk)
def approve_review(review_id: str) -> dict[str, Any]:
    parse_body(risk.current_request, schemas().RequestBody)
    decided = service().approve(
        get_ledger_service(),
        get_risk(),
        current_principal().user,
        review_id,
        source_ip(risk.current_request),
    )
    return decided_answer(decided)


@risk.route("/v1/admin/reviews/{review_id}/reject", methods=["POST"])
@admin_only(risk)
def reject_review(review_id: str) -> dict[str, Any]:
    body = parse_body(risk.current_request, schemas().ReviewRejection)
    decided = service().reject(
        get_ledger_service(),
        get_risk(),
        current_principal().user,
        review_id,
        body.reason,
        source_ip(risk.current_request),
    )
    return decided_answer(decided)
