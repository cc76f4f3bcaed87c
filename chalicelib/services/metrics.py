"""Counts the services report to CloudWatch: one EMF line on stdout per count (Lambda ships it),
in the ``Ledger`` namespace, like the reconciliation's metrics (``reconciliation/alerting.py``).
Powertools' metrics load on the first count only: the usual request emits none."""

from __future__ import annotations

METRIC_NAMESPACE = "Ledger"
SIGN_IN_ALERTS_SENT = "SignInAlertsSent"  # a "new sign-in" mail went out
BALANCE_MONITOR_CROSSED = "BalanceMonitorCrossed"  # a monitor's balance crossed its threshold
BALANCE_MONITOR_RECOVERED = "BalanceMonitorRecovered"  # and came back


def count(name: str, value: int = 1, **metadata: str) -> None:
    """Emit ``value`` of the count ``name`` (metadata goes into the line, not the dimensions)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=name, unit=MetricUnit.Count, value=value, namespace=METRIC_NAMESPACE
    ) as metric:
        for key, text in metadata.items():
            metric.add_metadata(key, text)
