"""Access tokens (HS256 JWTs, 15 minutes), opaque refresh and reset tokens, and their hashes.

Guarantees:
- an access token is accepted only if its header says ``alg: HS256`` and names a listed ``kid``,
  its signature verifies with that kid's secret, ``iss`` and ``aud`` are ours, every claim is
  present with its type, and ``nbf - leeway <= now < exp + leeway`` and ``iat <= now + leeway``;
- a refresh or reset token is stored only as ``hash_secret(token)`` (SHA-256: the tokens are
  random and high-entropy, so a slow hash adds nothing);
- a refresh token names its user and session, so its row can be found without a scan.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from chalicelib.auth import AuthError

ACCESS_TOKEN_TTL_SECONDS = 900
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash output
MAX_TOKEN_LENGTH = 512  # refresh tokens; a longer one is refused before any parsing

_MAX_ACCESS_TOKEN_LENGTH = 4096
_ID = re.compile(r"[A-Za-z0-9_]+")
_SECRET_BYTES = 32
_REFRESH = re.compile(r"rt_([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_-]{43})")  # 32 bytes
_REQUIRED_CLAIMS = ("sub", "role", "mfa", "sid", "iat", "nbf", "exp", "jti", "iss", "aud")


class InvalidAccessToken(AuthError):
    """An access token is refused; the message says which rule it broke."""


class InvalidRefreshToken(AuthError):
    """A refresh token is not of the shape ``rt_<user_id>.<session_id>.<secret>``."""


@dataclass(frozen=True)
class SigningKeys:
    """HS256 secrets by key id; new tokens are signed with ``active_kid``, any listed kid verifies.

    Rotation: add the new kid, make it active, and remove the old one only after
    ``ACCESS_TOKEN_TTL_SECONDS``, when no token signed with it can still be valid.
    """

    active_kid: str
    keys: Mapping[str, str]

    def __post_init__(self) -> None:
        if self.active_kid not in self.keys:
            raise ValueError("the active kid is not among the signing keys")
        for kid, secret in self.keys.items():
            if not isinstance(kid, str) or not kid:
                raise ValueError("a signing key id must be a non-empty string")
            if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"signing key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    @classmethod
    def from_json(cls, raw: str, active_kid: str) -> SigningKeys:
        """Read ``{"kid": "secret", ...}``, as kept in the secret store.

        Raises:
            ValueError: not a JSON object of strings, ``active_kid`` not listed, or a secret
                shorter than 32 bytes. The message never contains a secret.
        """
        try:
            keys = json.loads(raw)
        except (TypeError, ValueError):
            raise ValueError("signing keys are not valid JSON") from None
        if not isinstance(keys, dict):
            raise ValueError("signing keys must be a JSON object of kid -> secret")
        return cls(active_kid=active_kid, keys=keys)


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    user_id: str
    role: str
    mfa: bool
    session_id: str
    issued_at: int
    expires_at: int
    token_id: str


def issue_access_token(
    keys: SigningKeys,
    *,
    user_id: str,
    role: str,
    mfa: bool,
    session_id: str,
    now: int,
    issuer: str = "ledger",
    audience: str = "ledger-api",
) -> tuple[str, AccessClaims]:
    """Sign a 15-minute access token with the active key.

    Raises:
        ValueError: ``user_id`` or ``session_id`` is not ``[A-Za-z0-9_]+``.
    """
    _check_id(user_id, "user_id")
    _check_id(session_id, "session_id")
    claims = AccessClaims(
        user_id=user_id,
        role=role,
        mfa=bool(mfa),
        session_id=session_id,
        issued_at=now,
        expires_at=now + ACCESS_TOKEN_TTL_SECONDS,
        token_id=secrets.token_urlsafe(16),
    )
    payload = {
        "sub": claims.user_id,
        "role": claims.role,
        "mfa": claims.mfa,
        "sid": claims.session_id,
        "iat": claims.issued_at,
        "nbf": claims.issued_at,
        "exp": claims.expires_at,
        "jti": claims.token_id,
        "iss": issuer,
        "aud": audience,
    }
    token = jwt.encode(
        payload,
        keys.keys[keys.active_kid],
        algorithm=ALGORITHM,
        headers={"kid": keys.active_kid},
    )
    return token, claims


def verify_access_token(
    keys: SigningKeys,
    token: str,
    *,
    now: int,
    issuer: str = "ledger",
    audience: str = "ledger-api",
    leeway: int = 0,
) -> AccessClaims:
    """Check an access token completely and return its claims.

    Raises:
        InvalidAccessToken: not a JWT, an algorithm other than HS256, a missing or unknown kid,
            a bad signature, a wrong issuer or audience, a missing claim or one of the wrong
            type, expired, not yet valid, or issued in the future.
    """
    if not isinstance(token, str) or not token or len(token) > _MAX_ACCESS_TOKEN_LENGTH:
        raise InvalidAccessToken("not a JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidAccessToken("not a JWT") from None
    # Checked before PyJWT sees the token, so no key is ever tried with another algorithm.
    if header.get("alg") != ALGORITHM:
        raise InvalidAccessToken("algorithm not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidAccessToken("missing kid")
    secret = keys.keys.get(kid)
    if secret is None:
        raise InvalidAccessToken("unknown kid")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={
                # Time is checked below against the caller's ``now``, not the system clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_signature": True,
                "verify_iss": True,
                "verify_aud": True,
                "strict_aud": True,
                "require": list(_REQUIRED_CLAIMS),
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidAccessToken("bad signature") from None
    except jwt.InvalidIssuerError:
        raise InvalidAccessToken("wrong issuer") from None
    except jwt.InvalidAudienceError:
        raise InvalidAccessToken("wrong audience") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidAccessToken(f"missing claim {exc.claim}") from None
    except jwt.PyJWTError:
        raise InvalidAccessToken("malformed token") from None
    claims = _claims_from(payload)
    if now >= claims.expires_at + leeway:
        raise InvalidAccessToken("expired")
    if now + leeway < payload["nbf"]:
        raise InvalidAccessToken("not yet valid")
    if now + leeway < claims.issued_at:
        raise InvalidAccessToken("issued in the future")
    return claims


def _claims_from(payload: dict[str, Any]) -> AccessClaims:
    for name in ("sub", "sid"):
        if not isinstance(payload[name], str) or not _ID.fullmatch(payload[name]):
            raise InvalidAccessToken(f"claim {name} has the wrong type")
    for name in ("role", "jti"):
        if not isinstance(payload[name], str) or not payload[name]:
            raise InvalidAccessToken(f"claim {name} has the wrong type")
    if not isinstance(payload["mfa"], bool):
        raise InvalidAccessToken("claim mfa has the wrong type")
    for name in ("iat", "nbf", "exp"):
        # bool is an int in Python; a JSON true is not a time.
        if type(payload[name]) is not int:
            raise InvalidAccessToken(f"claim {name} has the wrong type")
    return AccessClaims(
        user_id=payload["sub"],
        role=payload["role"],
        mfa=payload["mfa"],
        session_id=payload["sid"],
        issued_at=payload["iat"],
        expires_at=payload["exp"],
        token_id=payload["jti"],
    )


def new_refresh_token(user_id: str, session_id: str) -> tuple[str, str]:
    """A new refresh token ``rt_<user_id>.<session_id>.<secret>`` and the hash to store.

    Raises:
        ValueError: ``user_id`` or ``session_id`` is not ``[A-Za-z0-9_]+``, or the token would
            be longer than ``MAX_TOKEN_LENGTH``.
    """
    _check_id(user_id, "user_id")
    _check_id(session_id, "session_id")
    token = f"rt_{user_id}.{session_id}.{secrets.token_urlsafe(_SECRET_BYTES)}"
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("user_id and session_id are too long for a refresh token")
    return token, hash_secret(token)


def parse_refresh_token(token: str) -> tuple[str, str, str]:
    """Split a presented refresh token into ``(user_id, session_id, token_hash)``.

    The hash covers the whole token, so it also binds the user and the session.

    Raises:
        InvalidRefreshToken: not a string of the refresh token shape, or over 512 characters.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidRefreshToken("not a refresh token")
    match = _REFRESH.fullmatch(token)
    if match is None:
        raise InvalidRefreshToken("not a refresh token")
    return match.group(1), match.group(2), hash_secret(token)


def new_reset_token() -> tuple[str, str]:
    """A new password reset token and the hash to store."""
    token = secrets.token_urlsafe(_SECRET_BYTES)
    return token, hash_secret(token)


def hash_secret(value: str) -> str:
    """SHA-256 hex of a high-entropy random value (refresh token, reset token, recovery code)."""
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two strings without leaking, by timing, where they first differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def _check_id(value: str, name: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{name} must match [A-Za-z0-9_]+")
