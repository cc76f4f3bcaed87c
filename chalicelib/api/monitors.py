"""Balance monitors (docs/risk.md, "Balance monitors"): ``/v1/admin/monitors``. Admin only;
parse, call ``chalicelib.services.monitors``, answer."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal
from chalicelib.api.accounts import parse_list_query
from chalicelib.api.dependencies import get_ledger_service, get_monitor_repository
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.domain.money import format_amount
from chalicelib.domain.monitors import BalanceMonitor

monitors = Blueprint(__name__)


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import monitors as monitor_service

    return monitor_service


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import admin_schemas

    return admin_schemas


def monitor_view(monitor: BalanceMonitor) -> responses.Monitor:
    return responses.Monitor(
        id=monitor.id,
        name=monitor.name,
        account_id=monitor.account_id,
        platform=monitor.platform.value if monitor.platform else None,
        currency=monitor.currency,
        condition=monitor.condition.value,
        amount=format_amount(monitor.threshold, monitor.currency),
        state=monitor.state.value,
        enabled=monitor.enabled,
        created_at=monitor.created_at,
        created_by=monitor.created_by,
        state_changed_at=monitor.state_changed_at,
        disabled_at=monitor.disabled_at,
    )


@monitors.route("/v1/admin/monitors", methods=["POST"])
@admin_only(monitors)
def create_monitor() -> Response:
    body = parse_body(monitors.current_request, schemas().NewMonitor)
    monitor = service().create_monitor(
        get_monitor_repository(),
        service().LedgerBalances(get_ledger_service()),
        account_id=body.account_id,
        platform=body.platform,
        currency=body.currency,
        condition=body.condition,
        amount=body.amount,
        name=body.name,
        admin_id=current_principal().user.id,
        ip=source_ip(monitors.current_request),
    )
    answer = responses.MonitorAnswer(monitor=monitor_view(monitor))
    return Response(answer.body(), status_code=201)


@monitors.route("/v1/admin/monitors", methods=["GET"])
@admin_only(monitors)
def list_monitors() -> dict[str, Any]:
    query = parse_list_query(monitors.current_request.query_params)
    page = service().list_monitors(get_monitor_repository(), query.limit, query.cursor)
    return responses.MonitorPage(
        data=[monitor_view(m) for m in page.monitors], next_cursor=page.next_cursor
    ).body()


@monitors.route("/v1/admin/monitors/{monitor_id}/disable", methods=["POST"])
@admin_only(monitors)
def disable_monitor(monitor_id: str) -> dict[str, Any]:
    parse_body(monitors.current_request, schemas().RequestBody)
    monitor = service().disable_monitor(
        get_monitor_repository(),
        monitor_id,
        admin_id=current_principal().user.id,
        ip=source_ip(monitors.current_request),
    )
    return responses.MonitorAnswer(monitor=monitor_view(monitor)).body()
