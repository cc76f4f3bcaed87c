"""Migrate the users of a deployed stage who signed up before email verification existed
(``make verify-existing-emails MODE=mail|mark``):

    STAGE=prod TABLE_NAME=ledger-prod AWS_REGION=eu-west-1 \\
        python -m infra.verify_existing_emails --mail     # mail each of them a verification link
    ... python -m infra.verify_existing_emails --mark     # or mark them verified (audited)

Until verified, a user cannot receive transfers by email nor withdraw (API.md, "Email
verification"). ``--mail`` queues one mail per unverified user in the mail outbox (the stage's
``deliver_mail`` function sends them, within the hourly limit per address); ``--mark`` marks
them verified at once, each with an ``auth.email_verified`` audit event (``by: migration``), for
an operator who knows the addresses were checked before. Run again, it acts only on the users
still unverified. Exit codes: 0 done; 1 AWS failed; 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.verify_existing_emails")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--mail", action="store_true", help="mail each a verification link")
    mode.add_argument("--mark", action="store_true", help="mark each verified (audited)")
    args = parser.parse_args(argv)
    if not os.environ.get("TABLE_NAME"):
        print("verify-existing-emails: TABLE_NAME is not set", file=sys.stderr)
        return 2

    from botocore.exceptions import BotoCoreError
    from pynamodb.exceptions import PynamoDBException

    from chalicelib.api.dependencies import get_auth_service, get_bound_settings

    get_bound_settings()
    try:
        count = get_auth_service().verify_existing_emails(mail=args.mail)
    except (BotoCoreError, PynamoDBException) as exc:
        print(f"verify-existing-emails: {exc}", file=sys.stderr)
        return 1
    what = "mailed a verification link" if args.mail else "marked verified"
    print(f"{count} users {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
