"""Create an admin in a deployed stage (``make create-admin EMAIL=...``):

    STAGE=prod TABLE_NAME=ledger-prod AWS_REGION=eu-west-1 \\
        python -m infra.create_admin --email ops@example.com [--password-stdin]

The password is read from a prompt that does not echo it (asked twice), or with
``--password-stdin`` from the first line of standard input. The admin is written to the table
``TABLE_NAME`` in ``AWS_REGION`` with the AWS credentials of the environment, with MFA already on;
the TOTP secret and its ``otpauth://`` URI are printed once, and only here.

Exit codes: 0 created; 1 refused (email taken, weak password, invalid email) or AWS failed;
2 usage (no ``TABLE_NAME``, passwords that differ).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TextIO

USAGE_ERROR = 2
REFUSED = 1


def _read_password(from_stdin: bool, stdin: TextIO) -> str | None:
    """The password, or None when the two prompted entries differ."""
    if from_stdin:
        return stdin.readline().removesuffix("\n").removesuffix("\r")
    password = getpass.getpass("Password for the new admin: ")
    if getpass.getpass("Repeat the password: ") != password:
        return None
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.create_admin",
        description="Create an admin (MFA on) in the stage that TABLE_NAME and AWS_REGION name.",
    )
    parser.add_argument("--email", required=True, help="the admin's email address")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    args = parser.parse_args(argv)

    if not os.environ.get("TABLE_NAME"):
        print(
            "create-admin: TABLE_NAME is not set; set it (and AWS_REGION, STAGE) to the stage's "
            "table, e.g. TABLE_NAME=ledger-prod",
            file=sys.stderr,
        )
        return USAGE_ERROR

    from botocore.exceptions import BotoCoreError
    from pynamodb.exceptions import PynamoDBException

    from chalicelib.api.dependencies import get_auth_service
    from chalicelib.auth.totp import provisioning_uri
    from chalicelib.config import get_settings
    from chalicelib.domain.errors import EmailTaken, InvalidRequest, WeakPassword

    settings = get_settings()
    password = _read_password(args.password_stdin, sys.stdin)
    if password is None:
        print("create-admin: the two passwords differ; nothing was created", file=sys.stderr)
        return USAGE_ERROR

    print(
        f"Creating admin {args.email} in table {settings.table_name} "
        f"(region {settings.region}, stage {settings.stage})...",
        file=sys.stderr,
    )
    try:
        user, secret = get_auth_service().create_admin(args.email, password)
    except EmailTaken:
        print(
            f"create-admin: an account with the email {args.email} exists already", file=sys.stderr
        )
        return REFUSED
    except WeakPassword as exc:
        print(f"create-admin: weak password: {exc}", file=sys.stderr)
        return REFUSED
    except InvalidRequest as exc:
        print(f"create-admin: {exc}", file=sys.stderr)
        return REFUSED
    except (PynamoDBException, BotoCoreError) as exc:
        print(
            f"create-admin: could not write to table {settings.table_name} in "
            f"{settings.region}: {exc}",
            file=sys.stderr,
        )
        return REFUSED

    print(f"Admin created: {user.email} (id {user.id}), MFA on.")
    print(f"TOTP secret: {secret}")
    print(f"otpauth URI: {provisioning_uri(secret, user.email)}")
    print(
        "WARNING: store the secret now (scan the URI as a QR code into an authenticator app, or "
        "keep it in a password manager). It is shown only this once and cannot be read back; "
        "admin routes need a TOTP code from it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
