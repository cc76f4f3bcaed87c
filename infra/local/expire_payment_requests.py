"""The payment request expiry on the running local stack (``make expire-payment-requests``),
which ``chalice local`` does not schedule: what the deployed stage's ``expire_payment_requests``
function does every 15 minutes (``chalicelib/api/jobs.py``, ``run_payment_request_expiry``).

    python -m infra.local.expire_payment_requests

It reads the same variables as the stack (``LEDGER_*_PORT``, ``TABLE_NAME``, ...), so with the
same environment as ``make run`` it talks to that stack's DynamoDB; it stores ``expired`` on every
open request past its ``expires_at`` (each once: running it twice expires nothing more), prints
the ids it expired, and exits 0 (1 if the stack cannot be reached).
"""

from __future__ import annotations

import sys


def main() -> int:
    from infra.local.stack import use_running_stack

    config = use_running_stack("expire-payment-requests")
    if config is None:
        return 1

    from chalicelib.api.jobs import run_payment_request_expiry

    try:
        expired = run_payment_request_expiry()
    except Exception as exc:  # DynamoDB unreachable: the stack is not running
        print(
            f"expire-payment-requests: cannot reach the local stack ({config.dynamodb_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    if not expired:
        print("no open payment request past its expiry")
    for request_id in expired:
        print(f"expired {request_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
