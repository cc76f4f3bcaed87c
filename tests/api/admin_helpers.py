"""People for the operator API tests: users, an admin signed in with TOTP, and admins who are
not allowed in (an admin without MFA in the token, a plain user)."""

from __future__ import annotations

import pyotp

from chalicelib.api.dependencies import get_auth_service
from chalicelib.auth import passwords
from chalicelib.domain.users import Role
from tests.support import verified

PASSWORD = "correct horse battery"


def sign_in(email: str, totp_secret: str | None = None) -> str:
    code = pyotp.TOTP(totp_secret).now() if totp_secret else None
    return get_auth_service().login(email, PASSWORD, code, None).access_token


def operators() -> dict:
    """alice and bob (users), an admin with MFA, an admin without MFA in the token; tokens."""
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    bob = verified(auth.sign_up("bob@example.com", PASSWORD, True, None))
    admin, secret = auth.create_admin("admin@example.com", PASSWORD)
    weak = auth.sign_up("weak-admin@example.com", PASSWORD, True, None, role=Role.ADMIN)
    return {
        "alice": alice,
        "bob": bob,
        "admin": admin,
        "admin_secret": secret,
        "weak_admin": weak,
        "tokens": {
            "alice": sign_in("alice@example.com"),
            "bob": sign_in("bob@example.com"),
            "admin": sign_in("admin@example.com", secret),
            "weak_admin": sign_in("weak-admin@example.com"),
        },
    }
