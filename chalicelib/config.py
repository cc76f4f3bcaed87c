"""Settings, read once from the environment and checked as they are read.

Every tunable the code reads lives here, so a deployed stage and the local stack differ only by
environment variables (see README.md for the names). A value that cannot be right (a limit that
is not a number, a currency the ledger does not have, an amount with too many decimals) stops
the process with a ``ValueError`` naming the variable: ``app.py`` reads the settings once at
import, so a bad deployment fails its cold start, not each request that needs the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType

# Public on purpose: the local stack and the tests sign with it; deployed stages must set their own.
LOCAL_JWT_KID = "local-1"
LOCAL_JWT_SECRET = "local-development-signing-key-not-a-secret"  # noqa: S105
LOCAL_STRIPE_API_KEY = "sk_test_local"
LOCAL_STRIPE_WEBHOOK_SECRET = "whsec_local"  # noqa: S105
LOCAL_CRYPTO_WEBHOOK_SECRET = "crypto_local"  # noqa: S105
LOCAL_CRYPTO_ADDRESS_SECRET = "crypto-address-local"  # noqa: S105
LOCAL_WEBHOOK_SECRET_KEY = "webhook-secret-key-local"  # noqa: S105


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
    # WITHDRAWAL_MINIMUMS / WITHDRAWAL_DAILY_LIMITS: JSON {currency: decimal string}, kept here in
    # minor units; a currency left out has no minimum / no daily limit.
    # Not hashed (a mapping is not hashable; equal settings still compare equal).
    withdrawal_minimums: Mapping[str, int] = field(hash=False)
    withdrawal_daily_limits: Mapping[str, int] = field(hash=False)
    fx_rate_source: str  # which RateSource serves fx quotes (chalicelib/adapters/rates.py)
    fx_rates: str | None  # JSON {"FROM/TO": "decimal"}; unset: built-in table (local, test only)
    fx_quote_ttl_seconds: int
    stripe_api_key: str | None
    stripe_api_base: str | None  # e.g. localstripe's URL; unset: Stripe's own API
    stripe_webhook_secret: str | None
    crypto_webhook_secret: str | None  # CRYPTO_WEBHOOK_SECRET: signs the gateway's webhooks
    crypto_address_secret: str | None  # CRYPTO_ADDRESS_SECRET: derives deposit addresses
    # SECRETS_ID: name or ARN of a deployed stage's Secrets Manager secret holding the five
    # secrets above by their variable names, read at first use (chalicelib/adapters/secrets.py);
    # the environment wins over it.
    secrets_id: str | None = None
    # ALERT_TOPIC_ARN: the SNS topic a reconciliation mismatch is published to; unset: logged only.
    alert_topic_arn: str | None = None
    # CRYPTO_GATEWAY_URL: the crypto gateway's HTTP API (HttpCryptoGateway); unset: the offline
    # LocalCryptoGateway (tests). The local stack points it at its fake gateway process.
    crypto_gateway_url: str | None = None
    # ADMIN_MFA_MAX_AGE_SECONDS: an admin route needs a login whose TOTP is at most this old.
    admin_mfa_max_age_seconds: int = 12 * 3600
    # RESET_MAILS_PER_HOUR / VERIFY_MAILS_PER_HOUR: mails with a token per email per hour.
    reset_mails_per_hour: int = 3
    verify_mails_per_hour: int = 3
    # EMAIL_VERIFY_TTL_SECONDS: how long a verification link works.
    email_verify_ttl_seconds: int = 24 * 3600
    # PAYOUT_MAX_ATTEMPTS: a payout the gateway refuses this many times fails (hold released).
    payout_max_attempts: int = 10
    # ADJUSTMENT_APPROVAL_THRESHOLD: an adjustment worth this much (USD-equivalent) or more
    # waits for a second admin's approval.
    adjustment_approval_threshold: str = "1000.00"
    # RECONCILIATION_FUNCTION: the function an admin's reconciliation runs in (asynchronously);
    # unset (local stack, tests): a thread of the API process.
    reconciliation_function: str | None = None
    # RECONCILIATION_WAIT_SECONDS: how long POST /v1/admin/reconciliations waits for the run to
    # finish before it answers 202 (running).
    reconciliation_wait_seconds: int = 10
    # WITHDRAWAL_REVIEW_DAYS: a withdrawal still pending review this many days after it was made
    # expires (its hold is released) by the hourly expire_withdrawals job.
    withdrawal_review_days: int = 7
    # BACKUP_VAULT_NAME: the AWS Backup vault of the table's daily plan; the restore drill restores
    # its newest recovery point in odd ISO weeks. Unset (the local stack, the tests): the drill
    # always restores to a point in time.
    backup_vault_name: str | None = None
    # BACKUP_RESTORE_ROLE_ARN: the role AWS Backup assumes to restore a recovery point (the stack's
    # BackupRole); the drill passes it to StartRestoreJob.
    backup_restore_role_arn: str | None = None
    # FACILITY_RATE_LIMIT_PER_MINUTE: requests a facility API key may make per minute, unless the
    # key has its own limit (rate_limit_per_minute, set when it is issued).
    facility_rate_limit_per_minute: int = 100
    # USAGE_PLAN_ID: the API Gateway usage plan that holds one API Gateway key per facility key
    # (a deployed stage's outer rate guard); unset (the local stack, the tests): no gateway keys.
    usage_plan_id: str | None = None
    # RISK_REVIEW_HOURS: a risk review still open this many hours after it was opened expires
    # (its hold is voided) by the hourly expire_reviews job.
    risk_review_hours: int = 72
    # RISK_RULES_TTL_SECONDS: how long a process keeps the risk rules it read before reading them
    # again (0: on every assessment); an admin's change reaches every process within it.
    risk_rules_ttl_seconds: int = 10
    # WEBHOOK_SECRET_KEY: the master key every webhook endpoint's signing secret is derived from
    # (domain/webhooks.py); a secret like the five above (environment, else SECRETS_ID).
    webhook_secret_key: str | None = None

    @property
    def is_local(self) -> bool:
        return self.stage == "local"

    def secret(self, name: str, from_env: str | None) -> str | None:
        """A secret by its variable name: the environment's value, else the stage's secret store
        (``SECRETS_ID``, fetched once per container on first use), else None.

        Raises:
            chalicelib.adapters.secrets.SecretStoreError: the store cannot be read.
        """
        if from_env or not self.secrets_id:
            return from_env
        from chalicelib.adapters.secrets import secret_values  # botocore only when needed

        return secret_values(self.secrets_id, self.region).get(name) or None

    def signing_keys_json(self) -> str:
        """The JWT signing keys; only the local and test stages may fall back to a public one.

        Raises:
            RuntimeError: a deployed stage has no JWT_SIGNING_KEYS.
        """
        keys = self.secret("JWT_SIGNING_KEYS", self.jwt_signing_keys)
        if keys:
            return keys
        if self.stage in ("local", "test"):
            return json.dumps({LOCAL_JWT_KID: LOCAL_JWT_SECRET})
        raise RuntimeError("JWT_SIGNING_KEYS is not set for this stage")

    def stripe_credentials(self) -> tuple[str, str]:
        """The Stripe API key and webhook endpoint secret; only the local and test stages may
        fall back to the local stack's public ones (``sk_test_local``, ``whsec_local``).

        Raises:
            RuntimeError: a deployed stage has no STRIPE_API_KEY or STRIPE_WEBHOOK_SECRET.
        """
        local = self.stage in ("local", "test")
        key = self.secret("STRIPE_API_KEY", self.stripe_api_key)
        key = key or (LOCAL_STRIPE_API_KEY if local else None)
        secret = self.secret("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret)
        secret = secret or (LOCAL_STRIPE_WEBHOOK_SECRET if local else None)
        if not key or not secret:
            raise RuntimeError("STRIPE_API_KEY or STRIPE_WEBHOOK_SECRET is not set for this stage")
        return key, secret

    def crypto_secrets(self) -> tuple[str, str]:
        """The crypto gateway's webhook secret and the deposit-address secret; only the local and
        test stages may fall back to public ones (``crypto_local``).

        Raises:
            RuntimeError: a deployed stage has no CRYPTO_WEBHOOK_SECRET or CRYPTO_ADDRESS_SECRET.
        """
        local = self.stage in ("local", "test")
        webhook = self.secret("CRYPTO_WEBHOOK_SECRET", self.crypto_webhook_secret)
        webhook = webhook or (LOCAL_CRYPTO_WEBHOOK_SECRET if local else None)
        address = self.secret("CRYPTO_ADDRESS_SECRET", self.crypto_address_secret)
        address = address or (LOCAL_CRYPTO_ADDRESS_SECRET if local else None)
        if not webhook or not address:
            raise RuntimeError(
                "CRYPTO_WEBHOOK_SECRET or CRYPTO_ADDRESS_SECRET is not set for this stage"
            )
        return webhook, address


def webhook_master_key(settings: Settings) -> str:
    """The key webhook endpoint secrets are derived from; only the local and test stages may
    fall back to a public one.

    Raises:
        RuntimeError: a deployed stage has no WEBHOOK_SECRET_KEY.
    """
    key = settings.secret("WEBHOOK_SECRET_KEY", settings.webhook_secret_key)
    if key:
        return key
    if settings.stage in ("local", "test"):
        return LOCAL_WEBHOOK_SECRET_KEY
    raise RuntimeError("WEBHOOK_SECRET_KEY is not set for this stage")


def _int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    try:
        value = default if raw in (None, "") else int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _amounts(name: str, default: Mapping[str, str]) -> Mapping[str, int]:
    """A JSON object of amounts per currency, e.g. ``{"USD": "10.00", "BTC": "0.0001"}``, in
    minor units."""
    from chalicelib.domain.errors import LedgerError
    from chalicelib.domain.money import parse_amount

    raw = os.environ.get(name)
    try:
        table = default if not raw else json.loads(raw)
    except ValueError:
        raise ValueError(f"{name} is not valid JSON: {raw!r}") from None
    if not isinstance(table, dict):
        raise ValueError(f'{name} must be a JSON object like {{"USD": "10.00"}}, got {raw!r}')
    amounts: dict[str, int] = {}
    for code, amount in table.items():
        try:
            amounts[code] = parse_amount(amount, code)
        except LedgerError as exc:
            raise ValueError(f"{name}: {code} {amount!r}: {exc}") from None
    return MappingProxyType(amounts)


def _fx_rates(name: str) -> str | None:
    """FX_RATES as given, once it is known to be a JSON object of ``"FROM/TO": "rate"``."""
    from chalicelib.domain.errors import LedgerError
    from chalicelib.domain.fx import parse_rate
    from chalicelib.domain.money import currency

    raw = os.environ.get(name) or None
    if raw is None:
        return None
    try:
        table = json.loads(raw)
    except ValueError:
        raise ValueError(f"{name} is not valid JSON") from None
    if not isinstance(table, dict):
        raise ValueError(f'{name} must be a JSON object like {{"USD/BTC": "0.00001047"}}')
    for pair, rate in table.items():
        try:
            from_code, to_code = str(pair).split("/")
            currency(from_code), currency(to_code)
            parse_rate(rate)
        except (ValueError, LedgerError) as exc:
            raise ValueError(
                f"{name}: {pair!r}: {rate!r} is not a rate between two currencies"
            ) from exc
    return raw


@cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return read_settings()


def read_settings() -> Settings:
    """The settings of the environment as it is now.

    Raises:
        ValueError: a variable has a value that cannot be right; the message names it.
    """
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
        withdrawal_minimums=_amounts(
            "WITHDRAWAL_MINIMUMS", {"USD": "10.00", "BTC": "0.0001", "ETH": "0.001", "USDT": "10"}
        ),
        withdrawal_daily_limits=_amounts(
            "WITHDRAWAL_DAILY_LIMITS",
            {"USD": "10000.00", "BTC": "1", "ETH": "20", "USDT": "10000"},
        ),
        fx_rate_source=os.environ.get("FX_RATE_SOURCE") or "static",
        fx_rates=_fx_rates("FX_RATES"),
        fx_quote_ttl_seconds=_int("FX_QUOTE_TTL_SECONDS", 60, 1),
        stripe_api_key=os.environ.get("STRIPE_API_KEY") or None,
        stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
        stripe_webhook_secret=os.environ.get("STRIPE_WEBHOOK_SECRET") or None,
        crypto_webhook_secret=os.environ.get("CRYPTO_WEBHOOK_SECRET") or None,
        crypto_address_secret=os.environ.get("CRYPTO_ADDRESS_SECRET") or None,
        secrets_id=os.environ.get("SECRETS_ID") or None,
        alert_topic_arn=os.environ.get("ALERT_TOPIC_ARN") or None,
        crypto_gateway_url=os.environ.get("CRYPTO_GATEWAY_URL") or None,
        admin_mfa_max_age_seconds=_int("ADMIN_MFA_MAX_AGE_SECONDS", 12 * 3600, 60),
        reset_mails_per_hour=_int("RESET_MAILS_PER_HOUR", 3, 1),
        verify_mails_per_hour=_int("VERIFY_MAILS_PER_HOUR", 3, 1),
        email_verify_ttl_seconds=_int("EMAIL_VERIFY_TTL_SECONDS", 24 * 3600, 60),
        payout_max_attempts=_int("PAYOUT_MAX_ATTEMPTS", 10, 1),
        adjustment_approval_threshold=os.environ.get("ADJUSTMENT_APPROVAL_THRESHOLD") or "1000.00",
        reconciliation_function=os.environ.get("RECONCILIATION_FUNCTION") or None,
        reconciliation_wait_seconds=_int("RECONCILIATION_WAIT_SECONDS", 10, 0),
        withdrawal_review_days=_int("WITHDRAWAL_REVIEW_DAYS", 7, 1),
        backup_vault_name=os.environ.get("BACKUP_VAULT_NAME") or None,
        backup_restore_role_arn=os.environ.get("BACKUP_RESTORE_ROLE_ARN") or None,
        facility_rate_limit_per_minute=_int("FACILITY_RATE_LIMIT_PER_MINUTE", 100, 1),
        usage_plan_id=os.environ.get("USAGE_PLAN_ID") or None,
        risk_review_hours=_int("RISK_REVIEW_HOURS", 72, 1),
        risk_rules_ttl_seconds=_int("RISK_RULES_TTL_SECONDS", 10, 0),
        webhook_secret_key=os.environ.get("WEBHOOK_SECRET_KEY") or None,
    )
