"""The audit trail for operators: ``GET /v1/admin/audit`` (events by time, actor, action),
``GET /v1/admin/audit/chain`` (recompute the daily digest chain, name the first broken day), and
the scheduled function that seals each past UTC day into the chain (``seal_audit_days``, 00:15
UTC daily; the local stack runs it by command: ``make seal-audit``). Thin: each calls one service
function (``chalicelib/services/audit_log.py``, ``chalicelib/services/audit_chain.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalice import Blueprint, Cron

from chalicelib.api import responses
from chalicelib.api.access import admin_only
from chalicelib.api.accounts import parse_list_query, query_param
from chalicelib.api.dependencies import get_bound_settings
from chalicelib.api.log import logger
from chalicelib.domain.users import AuditEvent

audit = Blueprint(__name__)

# A verification without ``from`` covers this many days up to ``to``.
DEFAULT_VERIFY_DAYS = 31
# Over HTTP the verification must finish inside API Gateway's 29 s: each day costs about five
# sequential DynamoDB round trips, so a year (~1,830 trips) is the most one request may ask for;
# longer ranges are for `make verify-audit` (no such limit).
HTTP_MAX_VERIFY_DAYS = 366


def repository():  # type: ignore[no-untyped-def]
    from chalicelib.adapters.dynamo.audit_repository import DynamoAuditRepository

    get_bound_settings()
    return DynamoAuditRepository()


def event_view(event: AuditEvent) -> responses.AuditEvent:
    return responses.AuditEvent(
        id=event.id,
        at=event.at,
        actor_id=event.actor_id,
        action=event.action,
        target=event.target,
        ip=event.ip,
        details=dict(event.details),
    )


@audit.route("/v1/admin/audit", methods=["GET"])
@admin_only(audit)
def list_audit_events() -> dict[str, Any]:
    from chalicelib.services import audit_log

    query = parse_list_query(audit.current_request.query_params)
    page = audit_log.query(
        repository(),
        since=query.since,
        until=query.until,
        actor_id=query_param(audit.current_request.query_params, "actor_id"),
        action=query_param(audit.current_request.query_params, "action"),
        limit=query.limit,
        cursor=query.cursor,
    )
    return responses.AuditEventPage(
        data=[event_view(e) for e in page.events], next_cursor=page.next_cursor
    ).body()


@audit.route("/v1/admin/audit/chain", methods=["GET"])
@admin_only(audit)
def verify_audit_chain() -> dict[str, Any]:
    from chalicelib.services import audit_chain

    params = audit.current_request.query_params
    to, since = query_param(params, "to"), query_param(params, "from")  # "" is not a day
    last_day = audit_chain.as_day("to", audit_chain.yesterday() if to is None else to)
    first_day = (
        (date.fromisoformat(last_day) - timedelta(days=DEFAULT_VERIFY_DAYS - 1)).isoformat()
        if since is None
        else since
    )
    result = audit_chain.verify(repository(), first_day, last_day, max_days=HTTP_MAX_VERIFY_DAYS)
    verification = responses.Verification(**result.as_dict())
    return responses.VerificationAnswer(verification=verification).body()


@audit.schedule(Cron(15, 0, "*", "*", "?", "*"), name="seal_audit_days")
def seal_audit_days(event: Any) -> dict[str, Any]:
    """Seal every unsealed UTC day up to yesterday into the audit digest chain."""
    from chalicelib.services import audit_chain

    sealed = audit_chain.seal_through(repository(), now=lambda: datetime.now(UTC))
    logger.info("audit days sealed", days=[d.day for d in sealed])
    return {"sealed": [d.day for d in sealed]}
