"""Facility API keys: how a facility (a clinic, a merchant) calls the API server to server.

A key's secret is ``fk_<prefix>_<random>``: ``prefix`` is a public random id (16 hex digits) by
which the key is found in one read, ``random`` 32 random bytes (URL-safe base64). Only a keyed
hash of the secret is kept: HMAC-SHA256 keyed with a random salt of the key's own, compared in
constant time. The secret carries 256 random bits, so a fast hash is enough: there is no
dictionary to try against it.

Invariants:

* a key has 1 to ``MAX_NAME_LENGTH`` characters of name (stripped) and at least one scope, each
  one of ``Scope``; no scope given means every scope;
* a key is ``active`` or ``revoked``; a revoked key never becomes active again, and a revoked key
  authenticates nothing;
* a per-key rate limit, when set, is a whole number from 1 to ``MAX_RATE_LIMIT_PER_MINUTE``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.errors import InvalidRequest

SECRET_PREFIX = "fk_"  # noqa: S105 - how every key secret starts, not a secret
PREFIX_HEX_DIGITS = 16
MAX_NAME_LENGTH = 100
MAX_RATE_LIMIT_PER_MINUTE = 100_000
MAX_SECRET_LENGTH = 200  # ours are 63 characters; anything much longer is not ours
WINDOW_SECONDS = 60  # a rate limit counts requests per minute


class Scope(StrEnum):
    READ = "read"
    PAYMENT_REQUESTS = "payment_requests"
    PAYOUTS = "payouts"
    WEBHOOKS = "webhooks"


ALL_SCOPES: tuple[Scope, ...] = tuple(Scope)


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


def key_id_for(prefix: str) -> str:
    """A key's id: its prefix, named as a key (``key_<prefix>``), so the id finds it too."""
    return f"key_{prefix}"


def prefix_of_key_id(key_id: str) -> str | None:
    """The prefix a key id names, or None if it is not the id of a key."""
    prefix = key_id.removeprefix("key_")
    return prefix if prefix != key_id and _is_prefix(prefix) else None


# What API Gateway's usage plan knows a key by (deployed stages, docs/deploy.md "Usage plan"):
# not a secret (the client never sends it; the gateway's authorizer derives it from the
# secret's public prefix), and at least the 20 characters API Gateway asks of a key's value.
USAGE_IDENTIFIER_PREFIX = "ledger-facility-key-"


def usage_identifier(prefix: str) -> str:
    """The value of the API Gateway key that stands for the facility key ``prefix``."""
    return USAGE_IDENTIFIER_PREFIX + prefix


def not_a_facility_key(stage: str) -> str:
    """The one usage identifier of a stage's requests that carry none of our secrets (a user's
    token on a facility route, garbage): the app answers those (401 or 403) as it does locally,
    and the plan throttles them together. Per stage: a key's value is unique in an account."""
    return f"ledger-{stage}-not-a-facility-key"


def _is_prefix(text: str) -> bool:
    return len(text) == PREFIX_HEX_DIGITS and all(c in "0123456789abcdef" for c in text)


def parse_secret(secret: str) -> str | None:
    """The prefix of a secret shaped like ours (``fk_<prefix>_<random>``), or None."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    prefix, sep, random_part = secret[len(SECRET_PREFIX) :].partition("_")
    if not sep or not random_part or not _is_prefix(prefix):
        return None
    return prefix


def hash_secret(salt: str, secret: str) -> str:
    """HMAC-SHA256 of the secret keyed with the key's salt (hex), as hex."""
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def parse_scopes(raw: Iterable[str] | None) -> tuple[Scope, ...]:
    """The scopes asked for, each once, in ``Scope`` order; None means all of them.

    Raises:
        InvalidRequest: an empty list, or a name that is not a scope.
    """
    if raw is None:
        return ALL_SCOPES
    names = list(raw)
    unknown = [name for name in names if name not in set(Scope)]
    if not names or unknown:
        raise InvalidRequest(
            "scopes must be a non-empty list of " + ", ".join(ALL_SCOPES),
            [{"field": "scopes", "message": f"unknown or empty: {unknown or names}"}],
        )
    return tuple(scope for scope in ALL_SCOPES if scope in names)


@dataclass(frozen=True)
class ApiKey:
    id: str
    facility_id: str
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    salt: str  # hex, random per key
    secret_hash: str  # hex HMAC-SHA256(salt, secret)
    status: ApiKeyStatus
    created_at: str
    created_by: str
    last_used_at: str | None = None
    revoked_at: str | None = None
    revoked_by: str | None = None
    rate_limit_per_minute: int | None = None  # None: the deployment's default

    @classmethod
    def issue(
        cls,
        facility_id: str,
        name: str,
        scopes: Iterable[str] | None,
        *,
        at: str,
        by: str,
        rate_limit_per_minute: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new active key and its secret (the only time the secret exists in clear).

        Raises:
            InvalidRequest: a blank or too long name, bad scopes, a rate limit out of range.
        """
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest(
                f"name must have 1 to {MAX_NAME_LENGTH} characters",
                [{"field": "name", "message": "blank or too long"}],
            )
        if rate_limit_per_minute is not None and not (
            1 <= rate_limit_per_minute <= MAX_RATE_LIMIT_PER_MINUTE
        ):
            raise InvalidRequest(
                f"rate_limit_per_minute must be from 1 to {MAX_RATE_LIMIT_PER_MINUTE}",
                [{"field": "rate_limit_per_minute", "message": "out of range"}],
            )
        prefix = secrets.token_hex(PREFIX_HEX_DIGITS // 2)
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_hex(16)
        key = cls(
            id=key_id_for(prefix),
            facility_id=facility_id,
            name=name,
            prefix=prefix,
            scopes=parse_scopes(scopes),
            salt=salt,
            secret_hash=hash_secret(salt, secret),
            status=ApiKeyStatus.ACTIVE,
            created_at=at,
            created_by=by,
            rate_limit_per_minute=rate_limit_per_minute,
        )
        return key, secret

    @property
    def active(self) -> bool:
        return self.status is ApiKeyStatus.ACTIVE

    def verifies(self, secret: str) -> bool:
        """The secret is this key's (constant-time comparison of the keyed hashes)."""
        return hmac.compare_digest(hash_secret(self.salt, secret), self.secret_hash)

    def authenticates(self, secret: str) -> bool:
        """The key is active and the secret is its own."""
        return self.verifies(secret) and self.active

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    def revoked(self, *, at: str, by: str) -> ApiKey:
        """The key, revoked now; a revoked key stays as it was revoked."""
        if not self.active:
            return self
        return replace(self, status=ApiKeyStatus.REVOKED, revoked_at=at, revoked_by=by)

    def limit(self, default: int) -> int:
        """Requests per minute this key may make."""
        return self.rate_limit_per_minute or default


@dataclass(frozen=True)
class Window:
    """The rate-limit window (a UTC minute) an instant falls in."""

    start: int  # epoch seconds
    now: int

    @classmethod
    def at(cls, now: int) -> Window:
        return cls(start=now - now % WINDOW_SECONDS, now=now)

    @property
    def retry_after(self) -> int:
        """Seconds to the next window (1 to 60)."""
        return max(1, self.start + WINDOW_SECONDS - self.now)
