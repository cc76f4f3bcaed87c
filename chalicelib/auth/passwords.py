"""Password hashing with Argon2id: hash, verify, rehash check, and a dummy verify for timing.

Guarantees:
- a stored hash is an Argon2id PHC string; the password never leaves this module in any form;
- ``verify_password`` answers ``False`` for a wrong password *and* for a malformed hash, and
  compares in constant time (argon2 does the comparison);
- ``dummy_verify`` costs what a real verify costs, so an unknown email is answered as slowly as
  a known one (no account enumeration by timing).
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from chalicelib.auth import AuthError

MIN_PASSWORD_LENGTH = 12
# Argon2 accepts any length; the cap keeps one request from buying a lot of hashing work.
MAX_PASSWORD_LENGTH = 1024

# argon2-cffi's defaults (RFC 9106 "low memory": t=3, m=64 MiB, p=4), Argon2id.
_hasher = PasswordHasher()
_dummy_hash: str | None = None


class PasswordTooShort(AuthError):
    """A new password must have at least MIN_PASSWORD_LENGTH characters."""


class PasswordTooLong(AuthError):
    """A password must have at most MAX_PASSWORD_LENGTH characters."""


def configure_for_tests() -> None:
    """Swap in the cheapest Argon2id parameters so tests hash in microseconds, not 50 ms."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    _dummy_hash = None


def hash_password(password: str) -> str:
    """Hash a new password with Argon2id and a fresh random salt.

    Raises:
        PasswordTooShort: under ``MIN_PASSWORD_LENGTH`` characters.
        PasswordTooLong: over ``MAX_PASSWORD_LENGTH`` characters.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooShort(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordTooLong(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``.

    The minimum length is deliberately not checked here: raising it must not lock anyone out.

    Raises:
        Nothing for a mismatch, a malformed hash or an over-long password: all answer ``False``.
    """
    if not isinstance(stored_hash, str) or not isinstance(password, str):
        return False
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than the current ones.

    Call it after a successful verify and store ``hash_password(password)`` if it answers True.
    A hash whose parameters cannot be read also answers True.
    """
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def dummy_verify(password: str) -> bool:
    """Spend the time of one real verify, for a login whose email matches no user.

    Always answers ``False``: the dummy hash is of a random value nobody knows.
    """
    verify_password(_get_dummy_hash(), password)
    return False


def _get_dummy_hash() -> str:
    # Computed on first use, not at import: hashing costs ~50 ms of cold start.
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(32))
    return _dummy_hash


def __getattr__(name: str) -> str:
    # ``passwords.DUMMY_HASH`` is the lazily computed hash, made with the current parameters.
    if name == "DUMMY_HASH":
        return _get_dummy_hash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
