"""Nightly reconciliation (``chalicelib/services/reconciliation/``): the 02:00 UTC schedule for
the previous UTC day, and ``/v1/admin/reconciliations`` to run one now or read a report.

``date`` may be today at the latest: today runs as a partial, provisional day (the nightly run
replaces it once the day has ended); a future or malformed date is ``400 invalid_request`` (see
``reconciliation.parse_day``). Starting a run is an admin action: it leaves an audit event.
Running a day that has ended again overwrites its report with the same report.

The run never happens in the request: ``POST`` marks the day running and hands the run to another
invocation (``reconciliation_run``, asynchronously; a thread locally), then waits up to
``RECONCILIATION_WAIT_SECONDS`` for it: ``201`` with the report if it ended by then, else ``202``
with ``status: running``, and ``GET`` polls. A second ``POST`` while the day runs starts nothing.
"""

from __future__ import annotations

import time
from typing import Any

from chalice import Blueprint, Cron, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_principal
from chalicelib.api.dependencies import (
    get_alerts,
    get_bound_settings,
    get_payment_gateway,
    get_reconciliation_store,
)
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


def run_for(day: str) -> Any:
    """Reconcile ``day`` on the configured table against the configured Stripe account."""
    return service().run(
        day,
        store=get_reconciliation_store(),
        gateway=get_payment_gateway(),
        alerts=get_alerts(get_bound_settings()),
    )


@reconciliations.schedule(
    Cron(0, 2, "*", "*", "?", "*"),
    name="nightly_reconciliation",
    description="Reconcile the previous UTC day: balances, entries, trial balance, Stripe",
)
def nightly_reconciliation(event: Any) -> dict[str, Any]:
    report = run_for(service().yesterday_utc())
    service().emit_reported(report)
    logger.info(
        "reconciliation finished",
        date=report.date,
        status=report.status,
        mismatches=len(report.mismatches),
    )
    return report.as_dict()


def run_started(day: str, run_id: str) -> Any:
    """The separate invocation's work: reconcile ``day`` and close the run's marker."""
    return service().run_started(
        day,
        run_id,
        store=get_reconciliation_store(),
        gateway=get_payment_gateway(),
        alerts=get_alerts(get_bound_settings()),
    )


@reconciliations.lambda_function(name="reconciliation_run")
def reconciliation_run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A run an admin started (``POST /v1/admin/reconciliations``), invoked asynchronously."""
    report = run_started(str(event["date"]), str(event["run_id"]))
    logger.info("reconciliation finished", date=report.date, status=report.status)
    return {"date": report.date, "status": report.status}


def _starter():  # type: ignore[no-untyped-def]
    from chalicelib.adapters.run_starters import LambdaRunStarter, ThreadRunStarter

    settings = get_bound_settings()
    if settings.reconciliation_function:
        return LambdaRunStarter(settings.reconciliation_function, settings.region)
    return ThreadRunStarter(run_started)


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
    store = get_reconciliation_store()
    started = module.start(store, day, _starter(), by=current_principal().user.id)
    _audit(day, "started" if started else "already_running")
    deadline = time.monotonic() + get_bound_settings().reconciliation_wait_seconds
    while module.is_running(store, day):
        if time.monotonic() >= deadline:
            return Response(_running(day), status_code=202)
        time.sleep(0.1)
    module.raise_if_failed(store, day)
    return Response(_report(module.get_report(store, day)), status_code=201)


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
    store = get_reconciliation_store()
    if module.is_running(store, day):
        return _running(day)
    return _report(module.get_report(store, day))


def _running(day: str) -> dict[str, Any]:
    report = responses.RunningReport(**service().running_report(day))
    return responses.RunningReportAnswer(report=report).body()


def _report(report: Any) -> dict[str, Any]:
    return responses.ReportAnswer(report=responses.Report(**report.as_dict())).body()


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
