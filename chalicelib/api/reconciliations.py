"""Nightly reconciliation (``chalicelib/services/reconciliation.py``): the 02:00 UTC schedule for
the previous UTC day, and ``/v1/admin/reconciliations`` to run one now or read a report.

``date`` may be today at the latest: today runs as a partial, provisional day (the nightly run
replaces it once the day has ended); a future or malformed date is ``400 invalid_request`` (see
``reconciliation.parse_day``). A run is an admin action: it leaves an audit event. Running a day
that has ended again overwrites its report with the same report.
"""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Cron, Response

from chalicelib.api.access import admin_only, current_principal
from chalicelib.api.dependencies import get_bound_settings, get_payment_gateway
from chalicelib.api.log import logger
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.domain.errors import InvalidRequest

reconciliations = Blueprint(__name__)


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import reconciliation as module

    return module


def _body_schema():  # type: ignore[no-untyped-def]
    from chalicelib.api.reconciliation_schemas import RunReconciliation

    return RunReconciliation


def _store():  # type: ignore[no-untyped-def]
    from chalicelib.adapters.dynamo.reconciliation_store import ReconciliationStore

    return ReconciliationStore(get_bound_settings().table_name)


def run_for(day: str) -> Any:
    """Reconcile ``day`` on the configured table against the configured Stripe account."""
    settings = get_bound_settings()
    return service().run(
        day,
        store=_store(),
        gateway=get_payment_gateway(),
        alert_topic_arn=settings.alert_topic_arn,
        region=settings.region,
    )


@reconciliations.schedule(
    Cron(0, 2, "*", "*", "?", "*"),
    name="nightly_reconciliation",
    description="Reconcile the previous UTC day: balances, entries, trial balance, Stripe",
)
def nightly_reconciliation(event: Any) -> dict[str, Any]:
    report = run_for(service().yesterday_utc())
    logger.info(
        "reconciliation finished",
        date=report.date,
        status=report.status,
        mismatches=len(report.mismatches),
    )
    return report.as_dict()


@reconciliations.route("/v1/admin/reconciliations", methods=["POST"])
@admin_only(reconciliations)
def run_reconciliation() -> Response:
    body = parse_body(reconciliations.current_request, _body_schema())
    module = service()
    day = (
        module.yesterday_utc()
        if body.date is None
        else module.parse_day(body.date, module.today_utc())
    )
    report = run_for(day)
    _audit(day, report.status)
    return Response({"report": report.as_dict()}, status_code=201)


@reconciliations.route("/v1/admin/reconciliations/{date}", methods=["GET"])
@admin_only(reconciliations)
def get_reconciliation(date: str) -> dict[str, Any]:
    module = service()
    try:
        day = module.parse_day(date, module.today_utc())
    except InvalidRequest:
        if not _is_date(date):
            raise
        day = date  # a well-formed future date: no run exists for it (404)
    return {"report": module.get_report(_store(), day).as_dict()}


def _is_date(text: str) -> bool:
    from datetime import date as calendar_date

    try:
        calendar_date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _audit(day: str, status: str) -> None:
    from chalicelib.adapters.clock import now_iso
    from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
    from chalicelib.domain.users import AuditEvent

    DynamoAuthRepository().append_audit(
        AuditEvent.new(
            "reconciliation.run",
            at=now_iso(),
            actor_id=current_principal().user.id,
            target=day,
            ip=source_ip(reconciliations.current_request),
            status=status,
        )
    )
