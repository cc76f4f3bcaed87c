"""The payroll finisher on the running local stack (``make finish-payrolls``), which ``chalice
local`` does not schedule: what the deployed stage's ``finish_payrolls`` function does every 5
minutes.

    python -m infra.local.finish_payrolls [--older-than SECONDS]

It reads the same variables as the stack (``LEDGER_*_PORT``, ``TABLE_NAME``, ...), so with the
same environment as ``make run`` it talks to that stack's DynamoDB; it finishes every payout
batch still processing that was created at least ``--older-than`` seconds ago (default 300, as
deployed; 0 takes every one), paying no item twice (chalicelib/services/payroll.py), prints one
line per batch and exits 0 (1 if the stack cannot be reached).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Finish the local stack's stuck payout batches")
    parser.add_argument("--older-than", type=int, default=300, metavar="SECONDS")
    args = parser.parse_args(argv)
    from infra.local.stack import use_running_stack

    config = use_running_stack("finish-payrolls")
    if config is None:
        return 1

    from chalicelib.api.dependencies import (
        get_bound_settings,
        get_ledger_service,
        get_payroll_repository,
        get_webhook_events,
    )
    from chalicelib.services import payroll

    get_bound_settings()
    payer = payroll.Payer(get_ledger_service(), get_payroll_repository(), get_webhook_events())
    try:
        report = payroll.finish_stuck(
            payer, now=datetime.now(UTC), older_than_seconds=args.older_than
        )
    except Exception as exc:  # DynamoDB unreachable: the stack is not running
        print(
            f"finish-payrolls: cannot reach the local stack ({config.dynamodb_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    if not report:
        print("no payout batch left processing")
    for payroll_id, outcome in sorted(report.items()):
        print(f"{payroll_id}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
