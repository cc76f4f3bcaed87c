"""The audit digest chain from a shell (``make verify-audit``, ``make seal-audit``):

    python -m infra.audit_chain verify [--from 2026-11-01] [--to 2026-11-22]
    python -m infra.audit_chain seal [--through 2026-11-22] [--start 2026-11-01]

``verify`` recomputes the chain over the days [from, to] (default: the 31 days up to yesterday,
UTC) and prints the result as JSON; it names the first day where the chain breaks. ``seal`` does
what the deployed stage's ``seal_audit_days`` function does early each UTC day (``chalice local``
runs no schedules): it seals every unsealed day up to ``--through`` (default yesterday); an empty
chain starts at ``--start`` (default: ``--through``).

Which table: with ``TABLE_NAME`` set, the stage it names (``AWS_REGION`` and AWS credentials from
the environment, as ``make create-admin``); without it, the running local stack (the same
``LEDGER_*`` variables as ``make run``).

Exit codes: 0 the chain holds (or the days were sealed); 1 it is broken, or the table cannot be
reached; 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, timedelta

OK, BROKEN, USAGE_ERROR = 0, 1, 2
DEFAULT_DAYS = 31


def _point_at_table() -> str | None:
    """Bind the models to the stage's table or the local stack's; None, or why it cannot."""
    if not os.environ.get("TABLE_NAME"):
        from infra.local.stack import StackError, api_environment, read_config

        try:
            config = read_config(os.environ)
        except StackError as exc:
            return str(exc)
        os.environ.update(api_environment(config))
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(name, None)
    from chalicelib.api.dependencies import get_bound_settings
    from chalicelib.config import get_settings

    get_settings.cache_clear()
    get_bound_settings()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.audit_chain", description="Seal or verify the audit digest chain."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="recompute the chain; name the first broken day")
    check.add_argument("--from", dest="first", help="first day, YYYY-MM-DD")
    check.add_argument("--to", dest="last", help="last day, YYYY-MM-DD (default: yesterday)")
    seal = commands.add_parser("seal", help="seal every unsealed past day")
    seal.add_argument("--through", help="last day to seal (default: yesterday, UTC)")
    seal.add_argument("--start", help="first day of an empty chain (default: --through)")
    args = parser.parse_args(argv)

    problem = _point_at_table()
    if problem is not None:
        print(f"audit-chain: {problem}", file=sys.stderr)
        return BROKEN

    from chalicelib.adapters.dynamo.audit_repository import DynamoAuditRepository
    from chalicelib.domain.errors import InvalidRequest, InvalidState
    from chalicelib.services import audit_chain

    repository = DynamoAuditRepository()
    try:
        if args.command == "seal":
            sealed = audit_chain.seal_through(repository, args.through, first_day=args.start)
            for digest in sealed:
                print(f"sealed {digest.day}: {digest.event_count} events, {digest.digest}")
            if not sealed:
                print("nothing to seal: the chain is up to date")
            return OK
        last = audit_chain.as_day("to", args.last or audit_chain.yesterday())
        first = args.first or (date.fromisoformat(last) - timedelta(days=DEFAULT_DAYS - 1))
        result = audit_chain.verify(repository, str(first), last)
    except InvalidRequest as exc:
        print(f"audit-chain: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except InvalidState as exc:
        print(f"audit-chain: {exc}; run it again", file=sys.stderr)
        return BROKEN
    except Exception as exc:  # the table cannot be reached: say so, not a stack trace
        print(f"audit-chain: cannot read the table: {exc}", file=sys.stderr)
        return BROKEN
    print(json.dumps(result.as_dict(), indent=2))
    if not result.ok:
        print(f"audit chain BROKEN at {result.broken_day}: {result.problem}", file=sys.stderr)
    return OK if result.ok else BROKEN


if __name__ == "__main__":
    sys.exit(main())
