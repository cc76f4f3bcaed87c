"""Lazy getters: where the HTTP layer gets what it talks to, and the only place tests swap it.

Each getter builds its object on first use and keeps it for the life of the process (a warm Lambda
container, the local dev server), so nothing touches DynamoDB, or even imports PynamoDB, at import
time. ``reset()`` forgets them all, for a test that changed the environment.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from chalicelib.api.log import logger
from chalicelib.config import Settings, get_settings

if TYPE_CHECKING:
    from pynamodb.connection import TableConnection

    from chalicelib.adapters.aws_backup import BackupVault
    from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
    from chalicelib.adapters.dynamo.deposit_repository import DynamoDepositRepository
    from chalicelib.adapters.dynamo.dispute_repository import DynamoDisputeRepository
    from chalicelib.adapters.dynamo.drill_tables import DynamoDrillTables
    from chalicelib.adapters.dynamo.inbox_store import DynamoInbox
    from chalicelib.adapters.dynamo.outbox_repository import DynamoOutbox
    from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore
    from chalicelib.adapters.dynamo.refund_repository import DynamoRefundRepository
    from chalicelib.services.alerts import Alerts
    from chalicelib.services.api_keys import ApiKeyRepository, GatewayKeys
    from chalicelib.services.crypto import AddressRepository
    from chalicelib.services.facilities import FacilityRepository
    from chalicelib.services.holds import HoldExpiries
    from chalicelib.services.monitors import MonitorRepository
    from chalicelib.services.payment_requests import PaymentRequestRepository
    from chalicelib.services.payouts import PayoutRepository
    from chalicelib.services.payroll import PayrollRepository
    from chalicelib.services.risk import Risk
    from chalicelib.services.webhook_events import WebhookEvents
    from chalicelib.services.webhooks import Webhooks, WebhookSender
    from chalicelib.services.withdrawals import WithdrawalRepository


@cache
def get_bound_settings() -> Settings:
    """The settings, with every PynamoDB model bound to the configured table (once per process)."""
    from chalicelib.adapters.dynamo import models

    settings = get_settings()
    models.bind(settings)
    return settings


class TableProbe:
    """Answers "can the ledger table be reached?" with one DescribeTable, quickly.

    It has its own connection with short timeouts and no retries: a health check must answer
    while the endpoint is down, and the models' connection waits (and retries) far longer.
    """

    CONNECT_TIMEOUT_SECONDS = 1.0
    READ_TIMEOUT_SECONDS = 2.0

    def __init__(self, settings: Settings) -> None:
        from pynamodb.connection import TableConnection

        self.table_name = settings.table_name
        self._connection: TableConnection = TableConnection(
            settings.table_name,
            region=settings.region,
            host=settings.dynamodb_endpoint,
            connect_timeout_seconds=self.CONNECT_TIMEOUT_SECONDS,
            read_timeout_seconds=self.READ_TIMEOUT_SECONDS,
            max_retry_attempts=0,
        )

    def reachable(self) -> bool:
        try:
            self._connection.describe_table()
        except Exception:
            # Whatever the cause (no table, no endpoint, no credentials), the table is not
            # usable; the log line says which.
            logger.exception("dynamodb health check failed", table=self.table_name)
            return False
        return True


@cache
def get_table_probe() -> TableProbe:
    return TableProbe(get_bound_settings())


@cache
def get_auth_repository() -> DynamoAuthRepository:
    """Users, logins, tokens, throttles and audit events (``adapters/dynamo/auth_repository.py``):
    the auth service's, and the operators' for managing users."""
    from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository

    get_bound_settings()
    return DynamoAuthRepository()


@cache
def get_outbox() -> DynamoOutbox:
    """The mail outbox (``adapters/dynamo/outbox_repository.py``): requests add to it, the
    ``deliver_mail`` job sends from it."""
    from chalicelib.adapters.dynamo.outbox_repository import DynamoOutbox

    get_bound_settings()
    return DynamoOutbox()


@cache
def get_auth_service():  # type: ignore[no-untyped-def]
    """The auth service, its mailer, repository and outbox (built on the first auth request)."""
    from pathlib import Path

    from chalicelib.adapters.email import FanOutMailer, FolderMailer, SesMailer
    from chalicelib.services.auth import AuthService

    settings = get_bound_settings()
    mailer = SesMailer(settings.mail_from, settings.region, settings.ses_endpoint)
    if settings.is_local and settings.mail_dir:
        mailer = FanOutMailer((mailer, FolderMailer(settings.mail_from, Path(settings.mail_dir))))
    return AuthService(get_auth_repository(), settings, mailer, get_outbox())


@cache
def get_ledger_service():  # type: ignore[no-untyped-def]
    """The ledger engine on the configured table."""
    from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository
    from chalicelib.services.ledger import LedgerService

    settings = get_bound_settings()
    return LedgerService(
        DynamoLedgerRepository(),
        platform_shards=settings.platform_shards,
        max_attempts=settings.max_write_attempts,
    )


@cache
def get_replay_store():  # type: ignore[no-untyped-def]
    """Replay records written with the money (``adapters/dynamo/replay_store.py``)."""
    from chalicelib.adapters.dynamo.replay_store import DynamoReplayStore

    get_bound_settings()
    return DynamoReplayStore()


def request_reads():  # type: ignore[no-untyped-def]
    """A context for one request in which the items it names ahead are read in one batch."""
    from chalicelib.adapters.dynamo.read_ahead import request_scope

    get_bound_settings()
    return request_scope()


@cache
def get_inbox() -> DynamoInbox:
    """The webhook inbox (``adapters/dynamo/inbox_store.py``)."""
    from chalicelib.adapters.dynamo.inbox_store import DynamoInbox

    get_bound_settings()
    return DynamoInbox()


@cache
def get_deposit_repository() -> DynamoDepositRepository:
    """Card deposits (``adapters/dynamo/deposit_repository.py``)."""
    from chalicelib.adapters.dynamo.deposit_repository import DynamoDepositRepository

    get_bound_settings()
    return DynamoDepositRepository()


@cache
def get_refund_repository() -> DynamoRefundRepository:
    """Refunds of card deposits (``adapters/dynamo/refund_repository.py``)."""
    from chalicelib.adapters.dynamo.refund_repository import DynamoRefundRepository

    get_bound_settings()
    return DynamoRefundRepository()


@cache
def get_dispute_repository() -> DynamoDisputeRepository:
    """Disputes of card deposits (``adapters/dynamo/dispute_repository.py``)."""
    from chalicelib.adapters.dynamo.dispute_repository import DynamoDisputeRepository

    get_bound_settings()
    return DynamoDisputeRepository()


@cache
def get_idempotent_runner():  # type: ignore[no-untyped-def]
    """Powertools' idempotent_function over ``DynamoIdempotencyStore``, and its config.

    ``run(request=..., execute=...)`` calls ``execute()`` once per (scope, caller, key) within 24 h
    and stores what it returns; a replay with the same body gets the stored result back.
    """
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    from chalicelib.adapters.dynamo.idempotency_store import DynamoIdempotencyStore

    get_bound_settings()
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=24 * 3600,
        use_local_cache=False,
    )

    @idempotent_function(
        data_keyword_argument="request", persistence_store=DynamoIdempotencyStore(), config=config
    )
    def run(request: dict, execute) -> dict:  # type: ignore[no-untyped-def]
        return execute()

    return run, config


@cache
def get_payment_gateway():  # type: ignore[no-untyped-def]
    """Stripe (or localstripe, with ``STRIPE_API_BASE``); the ``stripe`` library itself loads on
    the first call that talks to it."""
    from chalicelib.adapters.stripe_gateway import StripeGateway

    settings = get_settings()
    api_key, webhook_secret = settings.stripe_credentials()
    return StripeGateway(api_key, webhook_secret, settings.stripe_api_base)


@cache
def get_crypto_gateway():  # type: ignore[no-untyped-def]
    """The crypto gateway: ``HttpCryptoGateway`` at ``CRYPTO_GATEWAY_URL`` when it is set (the
    local stack's fake gateway process, or a real gateway), else the deterministic, offline
    ``LocalCryptoGateway``, on the local and test stages only: a deployed stage without a gateway
    must not hand out addresses that exist on no chain or "send" payouts into memory.

    Raises:
        ProviderUnavailable: a deployed stage has no ``CRYPTO_GATEWAY_URL``.
    """
    settings = get_settings()
    if settings.crypto_gateway_url:
        from chalicelib.adapters.crypto_gateway_http import HttpCryptoGateway

        return HttpCryptoGateway(settings.crypto_gateway_url)
    if settings.stage not in ("local", "test"):
        from chalicelib.domain.errors import ProviderUnavailable

        raise ProviderUnavailable(f"no crypto gateway is configured for stage {settings.stage}")
    from chalicelib.adapters.crypto_gateway import LocalCryptoGateway

    _, address_secret = settings.crypto_secrets()
    return LocalCryptoGateway(address_secret)


def get_reconciliation_store(table_name: str | None = None) -> DynamoReconciliationStore:
    """Reconciliation's reads and writes on ``table_name`` (default: the configured table),
    through the models' client; the models stay bound to the configured table."""
    from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore

    settings = get_bound_settings()
    return DynamoReconciliationStore(table_name or settings.table_name)


def get_alerts(settings: Settings) -> Alerts:
    """The operators' alert topic of ``settings`` (``ALERT_TOPIC_ARN``; none: nothing is sent)."""
    from chalicelib.adapters.alerts import SnsAlerts

    return SnsAlerts(settings.alert_topic_arn, settings.region)


def get_drill_tables(settings: Settings) -> DynamoDrillTables:
    """DynamoDB for the restore drill, on its own client for the region and endpoint of
    ``settings``."""
    from chalicelib.adapters.dynamo.drill_tables import DynamoDrillTables

    return DynamoDrillTables.for_settings(settings)


def get_backup_vault(settings: Settings) -> BackupVault | None:
    """The AWS Backup vault of ``settings`` (``BACKUP_VAULT_NAME``); None when there is none."""
    from chalicelib.adapters.aws_backup import backup_vault

    return backup_vault(settings)


@cache
def get_withdrawal_repository() -> WithdrawalRepository:
    """Withdrawals and their daily totals on the configured table."""
    from chalicelib.adapters.dynamo.withdrawal_repository import DynamoWithdrawalRepository

    get_bound_settings()
    return DynamoWithdrawalRepository()


@cache
def get_payout_repository() -> PayoutRepository:
    """Payout requests for the crypto gateway on the configured table."""
    from chalicelib.adapters.dynamo.payout_repository import DynamoPayoutRepository

    get_bound_settings()
    return DynamoPayoutRepository()


@cache
def get_address_repository() -> AddressRepository:
    """Crypto deposit addresses and their owners on the configured table."""
    from chalicelib.adapters.dynamo.crypto_address_repository import DynamoAddressRepository

    get_bound_settings()
    return DynamoAddressRepository()


@cache
def get_facility_repository() -> FacilityRepository:
    """Facilities on the configured table."""
    from chalicelib.adapters.dynamo.facility_repository import DynamoFacilityRepository

    get_bound_settings()
    return DynamoFacilityRepository()


@cache
def get_api_key_repository() -> ApiKeyRepository:
    """Facility API keys and their rate counters on the configured table."""
    from chalicelib.adapters.dynamo.api_key_repository import DynamoApiKeyRepository

    get_bound_settings()
    return DynamoApiKeyRepository()


@cache
def get_webhook_events() -> WebhookEvents:
    """Outbound webhook events, written with the money they report (the outbox)."""
    from chalicelib.adapters.dynamo.webhook_repository import DynamoWebhookEvents

    get_bound_settings()
    return DynamoWebhookEvents()


@cache
def get_gateway_keys() -> GatewayKeys:
    """The usage plan's API Gateway keys of a deployed stage (``USAGE_PLAN_ID``); none locally."""
    from chalicelib.adapters.api_gateway_keys import ApiGatewayKeys, NoGatewayKeys

    settings = get_bound_settings()
    if settings.usage_plan_id is None:
        return NoGatewayKeys()
    return ApiGatewayKeys(settings.usage_plan_id, settings.region)


@cache
def get_payment_request_repository() -> PaymentRequestRepository:
    """Facilities' payment requests on the configured table."""
    from chalicelib.adapters.dynamo.payment_request_repository import (
        DynamoPaymentRequestRepository,
    )

    get_bound_settings()
    return DynamoPaymentRequestRepository()


@cache
def get_monitor_repository() -> MonitorRepository:
    """Balance monitors on the configured table (``adapters/dynamo/monitor_repository.py``)."""
    from chalicelib.adapters.dynamo.monitor_repository import DynamoMonitorRepository

    get_bound_settings()
    return DynamoMonitorRepository()


@cache
def get_risk() -> Risk:
    """Risk rules (cached for RISK_RULES_TTL_SECONDS), counters and reviews on the table."""
    from chalicelib.adapters.clock import now_iso
    from chalicelib.adapters.dynamo.risk_repository import DynamoRiskRepository
    from chalicelib.domain.risk import Operation
    from chalicelib.services.payment_requests import (
        decision_writes as payment_request_decision_writes,
    )
    from chalicelib.services.risk import Risk, RulesCache
    from chalicelib.services.transfers import payment_received_on_approval

    settings = get_bound_settings()
    repository = DynamoRiskRepository()
    risk = Risk(
        repository,
        RulesCache(repository, settings.risk_rules_ttl_seconds),
        review_hours=settings.risk_review_hours,
        deadlines=get_hold_expiries(),
    )
    # A payment to a facility held for review tells the facility when it is approved.
    risk.on_decision[Operation.PAYMENT] = payment_received_on_approval(
        get_ledger_service().transaction, get_webhook_events(), now_iso
    )
    # A payment-request payment held for review: approved, the request turns paid (and its
    # event is written); rejected or expired, the request is released for another attempt.
    risk.on_decision[Operation.PAYMENT_REQUEST] = payment_request_decision_writes(
        get_payment_request_repository(),
        get_ledger_service().transaction,
        get_webhook_events(),
        now_iso,
    )
    return risk


@cache
def get_hold_expiries() -> HoldExpiries:
    """Hold deadlines (written with holds, enforced by the hold sweeper) on the table."""
    from chalicelib.adapters.dynamo.hold_expiry_repository import DynamoHoldExpiries

    get_bound_settings()
    return DynamoHoldExpiries()


@cache
def get_webhook_sender() -> WebhookSender:
    """HTTP to facilities' webhook endpoints under the stage's URL policy: https to public
    addresses only; the local and test stages also reach http(s)://127.0.0.1:<port>."""
    from chalicelib.adapters.webhook_http import HttpWebhookSender

    settings = get_settings()
    return HttpWebhookSender(allow_loopback=settings.stage in ("local", "test"))


@cache
def get_webhooks() -> Webhooks:
    """Outbound webhooks: endpoints, fan-out and delivery (``services/webhooks.py``)."""
    from chalicelib.adapters.dynamo.webhook_repository import DynamoWebhookRepository
    from chalicelib.config import webhook_master_key
    from chalicelib.services.webhooks import Webhooks

    settings = get_bound_settings()
    return Webhooks(
        repository=DynamoWebhookRepository(),
        sender=get_webhook_sender(),
        alerts=get_alerts(settings),
        master_key=webhook_master_key(settings),
        log=logger.warning,
    )


@cache
def get_payroll_repository() -> PayrollRepository:
    """Facilities' payroll batches on the configured table."""
    from chalicelib.adapters.dynamo.payroll_repository import DynamoPayrollRepository

    get_bound_settings()
    return DynamoPayrollRepository()


def reset() -> None:
    """Forget every object built so far; the next getter call reads the settings again."""
    get_table_probe.cache_clear()
    get_bound_settings.cache_clear()
    get_auth_repository.cache_clear()
    get_outbox.cache_clear()
    get_auth_service.cache_clear()
    get_ledger_service.cache_clear()
    get_idempotent_runner.cache_clear()
    get_replay_store.cache_clear()
    get_inbox.cache_clear()
    get_deposit_repository.cache_clear()
    get_refund_repository.cache_clear()
    get_dispute_repository.cache_clear()
    get_payment_gateway.cache_clear()
    get_crypto_gateway.cache_clear()
    get_withdrawal_repository.cache_clear()
    get_payout_repository.cache_clear()
    get_address_repository.cache_clear()
    get_facility_repository.cache_clear()
    get_api_key_repository.cache_clear()
    get_webhook_events.cache_clear()
    get_gateway_keys.cache_clear()
    get_payment_request_repository.cache_clear()
    get_monitor_repository.cache_clear()
    get_risk.cache_clear()
    get_hold_expiries.cache_clear()
    get_webhook_sender.cache_clear()
    get_webhooks.cache_clear()
    get_payroll_repository.cache_clear()
