"""The payout retry on the running local stack (``make retry-payouts``), which ``chalice local``
does not schedule: what the deployed stage's ``retry_payouts`` function does every 5 minutes.

    python -m infra.local.retry_payouts

It reads the same variables as the stack (``LEDGER_*_PORT``, ``TABLE_NAME``, ...), so with the
same environment as ``make run`` it talks to that stack's DynamoDB and fake crypto gateway; it
hands every payout request still ``requested`` to the gateway (once: see
chalicelib/services/payouts.py), prints one line per outcome and the ids sent, and exits 0 (1 if
the stack cannot be reached).
"""

from __future__ import annotations

import sys


def main() -> int:
    from infra.local.stack import use_running_stack

    config = use_running_stack("retry-payouts")
    if config is None:
        return 1

    from chalicelib.api.dependencies import (
        get_bound_settings,
        get_crypto_gateway,
        get_payout_repository,
        get_withdrawal_repository,
    )
    from chalicelib.services import payouts

    get_bound_settings()
    try:
        report = payouts.retry_requested(
            get_crypto_gateway(), get_payout_repository(), get_withdrawal_repository()
        )
    except Exception as exc:  # DynamoDB unreachable: the stack is not running
        print(
            f"retry-payouts: cannot reach the local stack ({config.dynamodb_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    if not report.outcomes:
        print("no payout left requested")
    for outcome, count in sorted(report.outcomes.items()):
        print(f"{outcome}: {count}")
    for withdrawal_id in report.sent:
        print(f"sent {withdrawal_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
