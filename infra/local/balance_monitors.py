"""The balance monitors' check on the running local stack, which ``chalice local`` does not
schedule: what the deployed stage's ``balance_monitors`` function does every 5 minutes.

    python -m infra.local.balance_monitors

It reads the same variables as the stack (``LEDGER_*_PORT``, ``TABLE_NAME``, ...). The local
stack has no alert topic: a crossing or a recovery is stored and audited as deployed, and its
alert is printed (and logged) instead of published. Exits 0 (1 if the stack cannot be reached).
"""

from __future__ import annotations

import sys


def main() -> int:
    from infra.local.stack import use_running_stack

    config = use_running_stack("balance-monitors")
    if config is None:
        return 1

    from chalicelib.api.dependencies import (
        get_bound_settings,
        get_ledger_service,
        get_monitor_repository,
    )
    from chalicelib.services import monitors

    class Printed:
        def publish(self, subject: str, message: str) -> bool:
            print(f"{subject}\n{message}")
            return True

    get_bound_settings()
    try:
        report = monitors.check_monitors(
            get_monitor_repository(), monitors.LedgerBalances(get_ledger_service()), Printed()
        )
    except Exception as exc:  # DynamoDB unreachable: the stack is not running
        print(
            f"balance-monitors: cannot reach the local stack ({config.dynamodb_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    for outcome, count in sorted(report.outcomes.items()):
        print(f"{outcome}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
