"""The reconciliation from a shell (``make reconcile``, ``make reconcile-full``):

    python -m infra.reconcile [--date 2026-11-22] [--no-stripe]   # the nightly run of a day
    python -m infra.reconcile --full [--table NAME]              # every account, read only

``--date`` (default yesterday, UTC; today runs as a partial day) does what the deployed stage's
``nightly_reconciliation`` function does at 02:00 UTC (``chalice local`` runs no schedules):
checks, checkpoints, writes the report, Stripe included (localstripe on the local stack) unless
``--no-stripe``. ``--full`` re-verifies every account from its first entry, every transaction and
the trial balance, and writes nothing (``--table`` checks another table, e.g. a restored copy).

Which table: with ``TABLE_NAME`` set, the stage it names (``AWS_REGION`` and AWS credentials from
the environment, as ``make create-admin``); without it, the running local stack.

Prints the report as JSON. Exit codes: 0 ok; 1 a mismatch, or the table cannot be reached;
2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from infra.audit_chain import _point_at_table

OK, MISMATCH, USAGE_ERROR = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.reconcile")
    parser.add_argument("--full", action="store_true", help="every account, read only")
    parser.add_argument("--date", help="the day to reconcile (YYYY-MM-DD; default yesterday)")
    parser.add_argument("--table", help="the table for --full (default: the stage's)")
    parser.add_argument("--no-stripe", action="store_true", help="skip the Stripe matching")
    args = parser.parse_args(argv)
    if args.full and args.date:
        parser.error("--full takes no --date")
    if args.table and not args.full:
        parser.error("--table goes with --full")
    problem = _point_at_table()
    if problem:
        print(problem, file=sys.stderr)
        return MISMATCH

    from chalicelib.api.dependencies import (
        get_alerts,
        get_bound_settings,
        get_payment_gateway,
        get_reconciliation_store,
    )
    from chalicelib.domain.errors import InvalidRequest
    from chalicelib.services import reconciliation

    if args.full:
        report = reconciliation.full_report(get_reconciliation_store(args.table))
    else:
        try:
            day = (
                reconciliation.parse_day(args.date, reconciliation.today_utc())
                if args.date
                else reconciliation.yesterday_utc()
            )
        except InvalidRequest as exc:
            print(str(exc), file=sys.stderr)
            return USAGE_ERROR
        settings = get_bound_settings()
        with contextlib.redirect_stdout(sys.stderr):  # the EMF metric line: stdout is the report
            report = reconciliation.run(
                day,
                store=get_reconciliation_store(settings.table_name),
                gateway=None if args.no_stripe else get_payment_gateway(),
                alerts=get_alerts(settings),
            )
    print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    return OK if report.status == "ok" else MISMATCH


if __name__ == "__main__":
    raise SystemExit(main())
