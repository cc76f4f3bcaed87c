"""The weekly restore drill of a deployed stage (``chalicelib/services/restore_drill.py``).

Sundays at 03:00 UTC: after the nightly reconciliation (02:00) and before the daily AWS Backup
window (04:00), when the table is quiet. Even ISO weeks restore the table to a point in time, odd
ones the newest recovery point of the vault ``BACKUP_VAULT_NAME`` with an AWS Backup restore job
(role ``BACKUP_RESTORE_ROLE_ARN``). The function has its own role (``infra/iam.json``, profile
``restore_drill``: restores of the table, and only ``<table>-drill-*`` tables to restore into,
read and delete) and a 900 s timeout; the drill stops waiting two minutes before it, so the
scratch table's deletion and the report still happen in time.

A failed drill is loud three ways: the alert topic gets its summary, the ``RestoreDrillFailed``
metric is 1 (an alarm watches it), and the invocation raises (the function's errors alarm).
"""

from __future__ import annotations

import os
from typing import Any

from chalice import Blueprint, Cron

from chalicelib.api.log import logger

restore_drill_jobs = Blueprint(__name__)

CLEANUP_MARGIN_SECONDS = 120.0
METRIC_NAMESPACE = "Ledger"


@restore_drill_jobs.schedule(
    Cron(0, 3, "?", "*", "SUN", "*"),
    name="restore_drill",
    description="Weekly restore drill: restore (PITR or AWS Backup) to a scratch table, verify",
)
def restore_drill(event: Any) -> dict[str, Any]:
    context = getattr(event, "context", None)
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 900.0
    return run_scheduled_drill(deadline_seconds=max(remaining - CLEANUP_MARGIN_SECONDS, 60.0))


def run_scheduled_drill(deadline_seconds: float) -> dict[str, Any]:
    """Run the drill for this stage; the result as a dict, or raise after alerting.

    Raises:
        RestoreDrillFailed: the drill failed (after the alert and the metric).
    """
    from chalicelib.api.dependencies import get_alerts, get_backup_vault, get_drill_tables
    from chalicelib.config import get_settings
    from chalicelib.services import restore_drill as drill

    settings = get_settings()
    try:
        result = drill.run_drill(
            get_drill_tables(settings),
            settings.table_name,
            vault=get_backup_vault(settings),
            deadline_seconds=deadline_seconds,
            kms_key_arn=os.environ.get("TABLE_KMS_KEY_ARN") or None,
        )
    except drill.RestoreDrillFailed as failed:
        _metric(failed=True)
        logger.error(
            "restore drill failed",
            drill_id=failed.result.drill_id,
            method=failed.result.method,
            result=failed.result.as_dict(),
        )
        drill.alert(get_alerts(settings), settings.stage, failed.result)
        raise
    _metric(failed=False)
    logger.info(
        "restore drill passed",
        drill_id=result.drill_id,
        method=result.method,
        counts=result.as_dict()["counts"],
    )
    return result.as_dict()


def _metric(*, failed: bool) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name="RestoreDrillFailed",
        unit=MetricUnit.Count,
        value=1 if failed else 0,
        namespace=METRIC_NAMESPACE,
    ):
        pass
