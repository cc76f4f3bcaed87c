"""What a run tells operators: the mismatch metric (CloudWatch EMF on stdout, which Lambda
ships), the "nightly run reported" heartbeat, and an alert on a mismatch (``Alerts``).
infra/operations.json alarms on both metrics."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

if TYPE_CHECKING:
    from chalicelib.services.alerts import Alerts
    from chalicelib.services.reconciliation.report import Report

logger = Logger(child=True)

METRIC_NAMESPACE = "Ledger"
METRIC_NAME = "ReconciliationMismatch"
# One per finished nightly run; infra/operations.json alarms when none came for 26 hours.
REPORTED_METRIC_NAME = "NightlyReconciliationReported"


def emit_metric(report: Report) -> None:
    """One CloudWatch EMF line (stdout; Lambda ships it): mismatches found, 0 on a clean run.
    infra/operations.json alarms on it."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=METRIC_NAME,
        unit=MetricUnit.Count,
        value=len(report.mismatches),
        namespace=METRIC_NAMESPACE,
    ) as metric:
        metric.add_metadata("date", report.date)


def emit_reported(report: Report) -> None:
    """One EMF line saying the nightly run of ``report.date`` finished and reported (whatever it
    found): the ``reconciliation-missing`` alarm fires when none came for 26 hours."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=REPORTED_METRIC_NAME, unit=MetricUnit.Count, value=1, namespace=METRIC_NAMESPACE
    ) as metric:
        metric.add_metadata("date", report.date)


def publish_alert(report: Report, alerts: Alerts | None) -> bool:
    """Publish a mismatch report to the operators; without a channel, log it only."""
    summary = {
        "date": report.date,
        "status": report.status,
        "mismatches": len(report.mismatches),
        "first": report.mismatches[:10],
    }
    subject = f"Ledger reconciliation mismatch {report.date}"
    sent = alerts is not None and alerts.publish(subject, json.dumps(summary, sort_keys=True))
    note = "" if sent else " (no ALERT_TOPIC_ARN)"
    logger.warning(f"reconciliation mismatch{note}", extra=summary)
    return sent
