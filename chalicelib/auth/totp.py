"""TOTP (RFC 6238, SHA-1, 6 digits, 30 s) with replay protection, and MFA recovery codes.

Guarantees:
- a code is accepted for at most one time step, and only if that step is later than the last
  step the user already used (``after_step``): a code cannot be replayed, not even within its
  30 seconds, and neither can an older one from the window;
- a recovery code is 10 characters from an alphabet without look-alikes (no 0/o, 1/l/i), about
  49 bits each, stored only as ``tokens.hash_secret(normalize_recovery_code(code))``.
"""

from __future__ import annotations

import hmac
import re
import secrets

import pyotp

TOTP_PERIOD = 30
TOTP_DIGITS = 6
RECOVERY_CODE_COUNT = 10

RECOVERY_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_RECOVERY_CODE_LENGTH = 10
_RECOVERY_CODE_HALF = _RECOVERY_CODE_LENGTH // 2
_MAX_RECOVERY_INPUT = 64  # what a person may type, separators included
_CODE = re.compile(rf"[0-9]{{{TOTP_DIGITS}}}")
_SEPARATORS = re.compile(r"[\s-]+")


def new_totp_secret() -> str:
    """A new base32 TOTP secret of 160 bits (32 characters)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, email: str, issuer: str = "Ledger") -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from a QR code.

    Raises:
        ValueError: ``secret`` is not valid base32 of at least 112 bits.
    """
    return _totp(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(
    secret: str,
    code: str,
    *,
    now: int,
    after_step: int | None,
    valid_window: int = 1,
) -> int | None:
    """The time step within ``valid_window`` steps of ``now`` whose code is ``code``, or None.

    Only steps later than ``after_step`` (the last step this user used) are tried; store the
    returned step as the new ``after_step``. Every candidate is compared in constant time and
    the latest matching step wins, so a rare collision never lowers ``after_step``.

    Raises:
        ValueError: ``valid_window`` is negative, or ``secret`` is not valid base32 of at least
            112 bits.
    """
    if valid_window < 0:
        raise ValueError("valid_window must not be negative")
    totp = _totp(secret)
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        return None
    current = int(now // TOTP_PERIOD)
    found: int | None = None
    for step in range(current - valid_window, current + valid_window + 1):
        if step < 0 or (after_step is not None and step <= after_step):
            continue
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """``RECOVERY_CODE_COUNT`` distinct recovery codes shaped ``xxxxx-xxxxx``."""
    codes: list[str] = []
    while len(codes) < RECOVERY_CODE_COUNT:
        raw = "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(_RECOVERY_CODE_LENGTH))
        code = f"{raw[:_RECOVERY_CODE_HALF]}-{raw[_RECOVERY_CODE_HALF:]}"
        if code not in codes:
            codes.append(code)
    return codes


def normalize_recovery_code(code: str) -> str | None:
    """The canonical ``xxxxx-xxxxx`` form of a typed recovery code, or None if it cannot be one.

    Case, spaces and dashes are ignored, so ``"ABCDE FGHJK"`` and ``"abcde-fghjk"`` are the same.
    """
    if not isinstance(code, str) or len(code) > _MAX_RECOVERY_INPUT:
        return None
    raw = _SEPARATORS.sub("", code).lower()
    if len(raw) != _RECOVERY_CODE_LENGTH or any(c not in RECOVERY_CODE_ALPHABET for c in raw):
        return None
    return f"{raw[:_RECOVERY_CODE_HALF]}-{raw[_RECOVERY_CODE_HALF:]}"


def is_recovery_code_shape(code: str) -> bool:
    """Whether ``code`` could be a recovery code (it normalizes), without looking anything up."""
    return normalize_recovery_code(code) is not None


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
