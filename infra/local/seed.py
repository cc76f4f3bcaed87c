"""The local stage's data beyond the table, run once by the local stack before the API starts:

    python -m infra.local.seed

with the API's environment (``STAGE=local``, ``DYNAMODB_ENDPOINT`` and ``SES_ENDPOINT`` on the
stack's moto server, ``MAIL_FROM``...), so it sees exactly what the API will see. It

1. verifies the sender ``MAIL_FROM`` in SES (moto refuses to send from an unverified identity);
2. creates the admin ``ADMIN_EMAIL`` with MFA on and the fixed TOTP secret (API.md, "The local
   stack"), unless that email is taken already.

It prints ``created`` or ``exists`` and exits 0. It refuses (exit 2) any stage but ``local`` and
any DynamoDB or SES endpoint that is not on this machine: the admin's password is public.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

# Local-only, public by design (API.md, "The local stack").
ADMIN_EMAIL = "admin@local.test"
ADMIN_PASSWORD = "local-admin-password"  # noqa: S105
ADMIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _is_local(endpoint: str | None) -> bool:
    return endpoint is not None and urlsplit(endpoint).hostname in LOCAL_HOSTS


def main() -> int:
    from infra.local.child import exit_with_supervisor

    exit_with_supervisor()  # a supervisor killed meanwhile takes this with it

    import boto3

    from chalicelib.api.dependencies import get_auth_service
    from chalicelib.config import get_settings
    from chalicelib.domain.errors import EmailTaken

    settings = get_settings()
    if not (
        settings.is_local
        and _is_local(settings.dynamodb_endpoint)
        and _is_local(settings.ses_endpoint)
    ):
        print(
            "seed: refusing to seed the public local admin outside the local stack (needs "
            "STAGE=local and DYNAMODB_ENDPOINT / SES_ENDPOINT on 127.0.0.1)",
            file=sys.stderr,
        )
        return 2

    ses = boto3.client("ses", region_name=settings.region, endpoint_url=settings.ses_endpoint)
    ses.verify_email_identity(EmailAddress=settings.mail_from)

    try:
        get_auth_service().create_admin(ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_TOTP_SECRET)
    except EmailTaken:
        print("exists", flush=True)
    else:
        print("created", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
