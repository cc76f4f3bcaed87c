"""Users, logins (sessions) and audit events: the identity side of the ledger. No I/O."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# What an email address is here: something@something.something, no spaces. "Space" is spelled
# out as exactly what Python's str.isspace() (and so str.strip()) means, so that the same pattern
# reads the same in Python's re and in a JSON Schema (ECMA) regex: the OpenAPI document states
# the rule the service applies (api.openapi_spec, api.auth_schemas).
EMAIL_SPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
EMAIL_ADDRESS = rf"[^@{EMAIL_SPACE}]+@[^@{EMAIL_SPACE}]+\.[^@{EMAIL_SPACE}]+"
# As a request may send it: spaces around it are trimmed.
EMAIL_AS_SENT = rf"^[{EMAIL_SPACE}]*{EMAIL_ADDRESS}[{EMAIL_SPACE}]*$"


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class UserStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    password_hash: str
    role: Role
    status: UserStatus
    terms_accepted_at: str
    created_at: str
    mfa_enabled: bool = False
    totp_secret: str | None = None
    totp_pending_secret: str | None = None
    totp_last_step: int = 0
    recovery_code_hashes: frozenset[str] = frozenset()
    # Logins counting from before this instant (epoch ms) are void: a password reset, an
    # unsuspension and an MFA change (which keeps the login that made it) set it.
    sessions_valid_after: int = 0
    version: int = 1
    # Set while suspended (by an admin, with a reason); cleared when unsuspended.
    suspended_at: str | None = None
    suspended_by: str | None = None
    suspension_reason: str | None = None
    email_verified: bool = False
    # What the user signed in from lately (``domain/sign_ins.py``); None before the first
    # sign-in that recorded it.
    known_devices: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Session:
    """One login: the family of refresh tokens it rotates through."""

    user_id: str
    id: str
    token_hash: str
    used_token_hashes: frozenset[str]
    mfa: bool
    created_at: int  # epoch milliseconds
    expires_at: int  # epoch seconds (the refresh token family's end; the table's TTL)
    revoked: bool = False
    # The login counts from this instant (ms) against the user's ``sessions_valid_after``: a
    # change that keeps only the current login (MFA on or off) moves both to now.
    valid_from: int = 0
    mfa_at: int | None = None  # epoch seconds of the TOTP (or recovery) code the login passed
    ip: str | None = None
    user_agent: str | None = None
    last_used_at: int = 0  # epoch milliseconds: opened or last refreshed

    def is_live(self, user: User, now: int) -> bool:
        """Its tokens work: not revoked, not expired, not voided by a reset, an MFA change or an
        unsuspension (``User.sessions_valid_after``)."""
        counts_from = max(self.valid_from, self.created_at)
        return (
            not self.revoked
            and self.expires_at > now
            and self.user_id == user.id
            and counts_from >= user.sessions_valid_after
        )


@dataclass(frozen=True)
class AuditEvent:
    """An append-only record of who did what, when, from where. Never holds a secret."""

    id: str
    at: str
    actor_id: str | None
    action: str
    target: str | None
    ip: str | None
    details: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        action: str,
        *,
        at: str,
        actor_id: str | None,
        target: str | None,
        ip: str | None,
        **details: str,
    ) -> AuditEvent:
        """An event with a fresh random id (``aud_<24 hex>``)."""
        return cls(
            id=f"aud_{secrets.token_hex(12)}",
            at=at,
            actor_id=actor_id,
            action=action,
            target=target,
            ip=ip,
            details=details,
        )


class MailKind(StrEnum):
    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a kind of mail, not a secret
    NEW_SIGN_IN = "new_sign_in"  # a sign-in from an IP or device not used lately


@dataclass(frozen=True)
class OutboxMail:
    """A mail a request asked for, sent later outside the request (the mail outbox). It names
    its recipient only; tokens are made when it is sent, so none is ever stored in clear."""

    id: str
    kind: MailKind
    created_at: str
    email: str | None = None  # a password reset names the address as it was typed
    user_id: str | None = None  # a verification names the user
    ip: str | None = None
    attempts: int = 0
    user_agent: str | None = None  # a sign-in alert names the device it was from


@dataclass(frozen=True)
class UserPage:
    """One page of users, and the cursor of the next (None on the last page)."""

    users: list[User]
    next_cursor: str | None


@dataclass(frozen=True)
class ResetToken:
    """A password reset token as stored: only its hash names it, never the token itself."""

    user_id: str
    expires_at: int  # epoch seconds
    used: bool


@dataclass(frozen=True)
class VerificationToken:
    """An email verification token as stored (by its hash): the address it proves and whose it
    is; a changed address voids it."""

    user_id: str
    email: str
    expires_at: int  # epoch seconds
    used: bool
