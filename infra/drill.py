"""Run the restore drill now and print PASSED or FAILED (``make drill``).

    python -m infra.drill                 # the running local stack (make run): moto on :8001
    python -m infra.drill --deployed      # a deployed stage: STAGE, TABLE_NAME, AWS_REGION and
                                          # AWS credentials from the environment
    python -m infra.drill --deployed --method backup
                                          # this restore path whatever the week: "pitr" (point
                                          # in time) or "backup" (the newest recovery point)
    python -m infra.drill --deployed --counts TABLE [TABLE ...]
                                          # only count items per item_type, side by side (to
                                          # compare a restored table with the live one)

Exit status 0 when the drill passed, 1 when it failed (the summary says why; the result is also
recorded in the table as ``DRILL#<drill id>``), 2 when it could not start (nothing answering on
the local port). For a deployed stage, ``ALERT_TOPIC_ARN`` (if set) also gets the failure, and
``TABLE_KMS_KEY_ARN`` (the stack's ``KeyArn`` output) keeps the scratch table on the table's key,
and ``BACKUP_VAULT_NAME`` with ``BACKUP_RESTORE_ROLE_ARN`` (the stack's vault and ``BackupRole``)
let odd ISO weeks, or ``--method backup``, restore AWS Backup's newest recovery point; without a
vault (always, on the local stack) the drill restores to a point in time.
A run from a machine has no 15-minute limit: ``--wait-minutes`` bounds the restore instead.
See chalicelib/services/restore_drill.py for what is compared and why.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from chalicelib.services.restore_drill import DrillTables

LOCAL_PORT_VARIABLE = "LEDGER_DYNAMODB_PORT"
LOCAL_TABLE = "ledger-local"


def local_environment() -> None:
    """Point settings at the local stack's moto server, with the fake credentials it takes."""
    port = os.environ.get(LOCAL_PORT_VARIABLE, "8001")
    os.environ.update(
        {
            "STAGE": "local",
            "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    os.environ.setdefault("TABLE_NAME", LOCAL_TABLE)
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "ALERT_TOPIC_ARN",
        "BACKUP_VAULT_NAME",  # moto has no AWS Backup restore jobs
        "BACKUP_RESTORE_ROLE_ARN",
    ):
        os.environ.pop(name, None)


def answers(endpoint: str) -> bool:
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2):
            return True
    except OSError:
        return False


def print_counts(drill_tables: DrillTables, tables: list[str]) -> None:
    """Items per item type (those carrying ``expires_at`` apart), one column per table."""
    counts = [drill_tables.count_items(table) for table in tables]
    rows = sorted({key for table_counts in counts for key in table_counts})
    print(f"{'item_type':<24}" + "".join(f"{table:>28}" for table in tables))
    for item_type, expiring in rows:
        label = f"{item_type} (expiring)" if expiring else item_type
        print(f"{label:<24}" + "".join(f"{c.get((item_type, expiring), 0):>28}" for c in counts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deployed", action="store_true", help="drill the stage named by the environment"
    )
    parser.add_argument("--wait-minutes", type=float, default=60.0, help="restore deadline")
    parser.add_argument(
        "--method",
        choices=("pitr", "backup"),
        help="restore path (default: even ISO weeks pitr, odd ones backup; pitr without a vault)",
    )
    parser.add_argument("--counts", nargs="+", metavar="TABLE", help="count items, no drill")
    args = parser.parse_args(argv)
    if not args.deployed:
        local_environment()

    from chalicelib.adapters.dynamo import models
    from chalicelib.api.dependencies import get_alerts, get_backup_vault, get_drill_tables
    from chalicelib.config import get_settings
    from chalicelib.services import restore_drill as drill

    get_settings.cache_clear()
    settings = get_settings()
    if settings.dynamodb_endpoint and not answers(settings.dynamodb_endpoint):
        print(
            f"nothing answers at {settings.dynamodb_endpoint}: start the local stack first "
            "(make run)",
            file=sys.stderr,
        )
        return 2
    models.bind(settings)
    tables = get_drill_tables(settings)
    if args.counts:
        print_counts(tables, args.counts)
        return 0
    print(f"restore drill of {settings.table_name} ({settings.stage}) ...", flush=True)
    try:
        result = drill.run_drill(
            tables,
            settings.table_name,
            method=args.method,
            vault=get_backup_vault(settings),
            deadline_seconds=args.wait_minutes * 60,
            kms_key_arn=os.environ.get("TABLE_KMS_KEY_ARN") or None,
        )
    except drill.RestoreDrillFailed as failed:
        print(failed.result.summary())
        if drill.alert(get_alerts(settings), settings.stage, failed.result):
            print("alert published", file=sys.stderr)
        print(f"FAILED (recorded as DRILL#{failed.result.drill_id})")
        return 1
    print(result.summary())
    print(f"PASSED (recorded as DRILL#{result.drill_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
