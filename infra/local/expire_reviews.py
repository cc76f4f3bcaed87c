"""The risk review expiry on the running local stack, which ``chalice local`` does not schedule:
what the deployed stage's hourly ``expire_reviews`` function does.

    python -m infra.local.expire_reviews

It reads the same variables as the stack (``LEDGER_*_PORT``, ``TABLE_NAME``, ...), so with the
same environment as ``make run`` it talks to that stack's DynamoDB; it expires every review still
open ``RISK_REVIEW_HOURS`` after it was opened (voiding its hold), prints the ids expired, and
exits 0 (1 if the stack cannot be reached).
"""

from __future__ import annotations

import sys


def main() -> int:
    from infra.local.stack import use_running_stack

    config = use_running_stack("expire-reviews")
    if config is None:
        return 1

    from chalicelib.api.jobs import run_review_expiry

    try:
        expired = run_review_expiry()
    except Exception as exc:  # DynamoDB unreachable: the stack is not running
        print(
            f"expire-reviews: cannot reach the local stack ({config.dynamodb_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    if not expired:
        print("no review left open past its window")
    for review_id in expired:
        print(f"expired {review_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
