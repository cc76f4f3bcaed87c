"""Settings, read once from the environment.

Every tunable the code reads lives here, so a deployed stage and the local stack differ only by
environment variables (see README.md for the names).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache

# Public on purpose: the local stack and the tests sign with it; deployed stages must set their own.
LOCAL_JWT_KID = "local-1"
LOCAL_JWT_SECRET = "local-development-signing-key-not-a-secret"  # noqa: S105


@dataclass(frozen=True)
class Settings:
    stage: str
    table_name: str
    region: str
    dynamodb_endpoint: str | None
    platform_shards: int
    max_write_attempts: int
    jwt_signing_keys: str | None  # JSON object kid -> secret (HS256)
    jwt_active_kid: str
    login_email_limit: int
    login_ip_limit: int
    login_window_seconds: int
    refresh_ttl_seconds: int
    reset_ttl_seconds: int
    mail_from: str
    mail_dir: str | None
    ses_endpoint: str | None
    public_base_url: str
    withdrawal_minimums: str  # JSON {currency: decimal string}
    withdrawal_daily_limits: str  # JSON {currency: decimal string}
    fx_rate_source: str  # which RateSource serves fx quotes (chalicelib/adapters/rates.py)
    fx_rates: str | None  # JSON {"FROM/TO": "decimal"}; unset: built-in table (local, test only)
    fx_quote_ttl_seconds: int

    @property
    def is_local(self) -> bool:
        return self.stage == "local"

    def signing_keys_json(self) -> str:
        """The JWT signing keys; only the local and test stages may fall back to a public one.

        Raises:
            RuntimeError: a deployed stage has no JWT_SIGNING_KEYS.
        """
        if self.jwt_signing_keys:
            return self.jwt_signing_keys
        if self.stage in ("local", "test"):
            return json.dumps({LOCAL_JWT_KID: LOCAL_JWT_SECRET})
        raise RuntimeError("JWT_SIGNING_KEYS is not set for this stage")


def _int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    value = default if raw in (None, "") else int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


@cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings(
        stage=os.environ.get("STAGE", "local"),
        table_name=os.environ.get("TABLE_NAME", "ledger-local"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        dynamodb_endpoint=os.environ.get("DYNAMODB_ENDPOINT") or None,
        platform_shards=_int("PLATFORM_SHARDS", 8, 1),
        max_write_attempts=_int("LEDGER_MAX_WRITE_ATTEMPTS", 8, 1),
        jwt_signing_keys=os.environ.get("JWT_SIGNING_KEYS") or None,
        jwt_active_kid=os.environ.get("JWT_ACTIVE_KID", LOCAL_JWT_KID),
        login_email_limit=_int("LOGIN_EMAIL_LIMIT", 5, 1),
        login_ip_limit=_int("LOGIN_IP_LIMIT", 100, 1),
        login_window_seconds=_int("LOGIN_WINDOW_SECONDS", 900, 1),
        refresh_ttl_seconds=_int("REFRESH_TTL_SECONDS", 30 * 24 * 3600, 60),
        reset_ttl_seconds=_int("RESET_TTL_SECONDS", 1800, 60),
        mail_from=os.environ.get("MAIL_FROM", "no-reply@ledger.local"),
        mail_dir=os.environ.get("MAIL_DIR") or None,
        ses_endpoint=os.environ.get("SES_ENDPOINT") or None,
        public_base_url=os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
        withdrawal_minimums=os.environ.get("WITHDRAWAL_MINIMUMS")
        or json.dumps({"USD": "10.00", "BTC": "0.0001", "ETH": "0.001", "USDT": "10"}),
        withdrawal_daily_limits=os.environ.get("WITHDRAWAL_DAILY_LIMITS")
        or json.dumps({"USD": "10000.00", "BTC": "1", "ETH": "20", "USDT": "10000"}),
        fx_rate_source=os.environ.get("FX_RATE_SOURCE") or "static",
        fx_rates=os.environ.get("FX_RATES") or None,
        fx_quote_ttl_seconds=_int("FX_QUOTE_TTL_SECONDS", 60, 1),
    )
