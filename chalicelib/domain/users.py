"""Users, logins (sessions) and audit events: the identity side of the ledger. No I/O."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


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
    # Logins opened before this instant (epoch milliseconds) are void: a password reset sets it.
    sessions_valid_after: int = 0
    version: int = 1
    # Set while suspended (by an admin, with a reason); cleared when unsuspended.
    suspended_at: str | None = None
    suspended_by: str | None = None
    suspension_reason: str | None = None


@dataclass(frozen=True)
class Session:
    """One login: the family of refresh tokens it rotates through."""

    user_id: str
    id: str
    token_hash: str
    used_token_hashes: frozenset[str]
    mfa: bool
    created_at: int
    expires_at: int
    revoked: bool = False


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
