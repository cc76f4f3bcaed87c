"""What the API answers (API.md), as pydantic models: one per object and one per answer.

Every route builds its answer from these models (``Answer.body``), and ``GET /openapi.json``
documents the same models (``openapi_spec.py``): the shape on the wire and the shape in the
document have one source. Every model is closed (``extra="forbid"``, so the document says
``additionalProperties: false``), and validates what it is given, so a view that drifts from the
contract fails in the tests instead of reaching a client. ``defer_build``: a model's validator is
built when it is first used, so importing this module costs a cold start little.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.users import EMAIL_ADDRESS

# -- the fields ----------------------------------------------------------------------------------
# An amount on the wire (API.md, "Conventions"); request fields say the same (api/fields.py).
AMOUNT_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,18})?$"
SIGNED_AMOUNT_PATTERN = r"^-?[0-9]{1,18}(\.[0-9]{1,18})?$"
Amount = Annotated[
    str,
    Field(
        pattern=AMOUNT_PATTERN,
        description='Decimal string in major units, e.g. "12.34" USD; never a JSON number.',
        examples=["12.34"],
    ),
]
SignedAmount = Annotated[
    str,
    Field(
        pattern=SIGNED_AMOUNT_PATTERN,
        description="Signed decimal string in major units; negative = money out.",
        examples=["-12.34"],
    ),
]
# Checked against domain.money.CURRENCIES by tests/unit/test_responses.py.
Currency = Literal["BTC", "ETH", "USD", "USDT"]
Instant = Annotated[
    str, Field(description="ISO-8601 UTC, with Z", json_schema_extra={"format": "date-time"})
]
Day = Annotated[
    str, Field(description="A UTC day, YYYY-MM-DD", json_schema_extra={"format": "date"})
]
TransactionType = Literal[
    "transfer", "payment", "deposit", "swap", "withdrawal", "refund", "reversal", "adjustment"
]


class Answer(BaseModel):
    """Base of every answer and every object in one."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    def body(self) -> dict[str, Any]:
        """The JSON body (every field is a JSON type already)."""
        return self.model_dump()


# -- objects ---------------------------------------------------------------------------------
class ErrorDetail(Answer):
    code: str = Field(examples=["insufficient_funds"])
    message: str
    request_id: str
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems of a 400 (absent otherwise)"
    )


class Error(Answer):
    """Every error (API.md, "Errors")."""

    error: ErrorDetail

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class User(Answer):
    id: str
    email: str = Field(pattern=f"^{EMAIL_ADDRESS}$")
    role: Literal["user", "admin"]
    status: Literal["active", "suspended"]
    terms_accepted_at: Instant
    mfa_enabled: bool
    email_verified: bool
    created_at: Instant


class ManagedUser(User):
    """A user as an admin sees one (``/v1/admin/users``)."""

    suspended_at: Instant | None
    suspended_by: str | None
    suspension_reason: str | None


class Session(Answer):
    id: str
    created_at: Instant
    last_used_at: Instant
    ip: str | None
    user_agent: str | None
    mfa: bool
    current: bool = Field(description="the login this request was made with")


class TokenPair(Answer):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds the access token lives")


class Account(Answer):
    id: str
    currency: Currency
    posted: SignedAmount
    available: SignedAmount
    pending_outgoing: Amount
    pending_incoming: Amount
    overdrawn_by_force: bool
    flags: list[Literal["forced_negative"]]
    created_at: Instant


class Entry(Answer):
    transaction_id: str
    type: TransactionType
    amount: SignedAmount
    balance_after: SignedAmount
    created_at: Instant
    memo: str
    seq: int = Field(description="the entry's place in its account's history")


class Posting(Answer):
    account_id: str
    currency: Currency
    amount: SignedAmount


class Transaction(Answer):
    id: str
    type: TransactionType
    status: Literal["pending", "posted", "voided"]
    created_at: Instant
    resolved_at: Instant | None
    postings: list[Posting]
    reverses: str | None
    reversed_by: str | None
    memo: str
    metadata: dict[str, str]
    forced: bool = Field(description="a rollback forced past an account's funds")


class Facility(Answer):
    id: str
    name: str


ApiKeyScope = Literal["read", "payment_requests", "payouts", "webhooks"]


class ApiKey(Answer):
    """A facility's API key, as admins see it: never its secret."""

    id: str
    name: str
    prefix: str = Field(description="public: the secret starts with fk_<prefix>_")
    scopes: list[ApiKeyScope]
    status: Literal["active", "revoked"]
    created_at: Instant
    last_used_at: Instant | None = Field(description="updated at most once a minute")
    revoked_at: Instant | None
    rate_limit_per_minute: int = Field(description="requests per minute this key may make")


class PaymentRequest(Answer):
    """A facility's request that a user pay it (API.md, "Facilities")."""

    id: str
    status: Literal["open", "paid", "declined", "expired", "cancelled"] = Field(
        description="expired as soon as expires_at has passed while it was open"
    )
    amount: Amount
    currency: Currency
    payer_email: str
    memo: str
    facility_id: str
    created_at: Instant
    expires_at: Instant
    transaction_id: str | None = Field(description="the payment (type payment), once paid")
    paid_at: Instant | None
    decided_at: Instant | None = Field(description="when it was declined, cancelled or expired")
    review_id: str | None = Field(
        default=None,
        description="the risk review holding its payment (transaction_id, pending) while it is "
        "open; kept once that payment is approved",
    )


WebhookEventType = Literal[
    "payment_request.paid", "payment_request.declined", "payment.received", "payout.completed"
]


class WebhookEndpoint(Answer):
    """A facility's webhook endpoint: never its secret."""

    id: str
    url: str
    events: list[WebhookEventType]
    status: Literal["enabled", "disabled"]
    created_at: Instant
    disabled_at: Instant | None
    disabled_reason: str | None


class WebhookDelivery(Answer):
    """One event to one endpoint, and how its attempts went."""

    id: str
    event_id: str = Field(description="the same on every attempt: receivers drop duplicates")
    event_type: WebhookEventType
    endpoint_id: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int = Field(ge=0)
    last_status_code: int | None = Field(description="HTTP status of the last answer, if any")
    last_error: str | None = Field(description="why the last attempt failed, if it did")
    next_attempt_at: Instant | None = Field(description="null once succeeded or failed")
    created_at: Instant


class Quote(Answer):
    id: str
    from_currency: Currency
    to_currency: Currency
    from_amount: Amount
    to_amount: Amount
    rate: str = Field(description="to_currency per from_currency, a decimal string")
    created_at: Instant
    expires_at: Instant


class Withdrawal(Answer):
    id: str
    status: Literal[
        "pending_review", "processing", "completed", "rejected", "cancelled", "failed", "expired"
    ]
    amount: Amount
    currency: Currency
    destination: str
    transaction_id: str
    created_at: Instant
    decided_at: Instant | None
    reason: str | None


class QueuedWithdrawal(Withdrawal):
    """A withdrawal in the admin's review queue: whose it is, and the risk rule that asked for
    its review, if one did (docs/risk.md)."""

    user_id: str
    risk_rule: str | None = None


class RiskRule(Answer):
    """A risk rule (API.md, "Risk"); fields a kind does not use are absent."""

    id: str
    kind: Literal[
        "amount_over",
        "daily_amount_over",
        "daily_count_over",
        "new_recipients_over",
        "account_younger_than",
    ]
    action: Literal["review", "block"]
    currency: Currency | None = None
    amount: Amount | None = None
    count: int | None = None
    hours: int | None = None
    user_id: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class RiskRules(Answer):
    version: int = Field(description="0 until rules are first set; +1 per change")
    rules: list[RiskRule]
    updated_at: Instant | None = None
    updated_by: str | None = None

    def body(self) -> dict[str, Any]:
        out = self.model_dump(exclude={"rules"})
        out["rules"] = [rule.body() for rule in self.rules]
        return out


class Review(Answer):
    """An operation held for a risk review."""

    id: str
    status: Literal["open", "approved", "rejected", "expired"]
    user_id: str
    operation: Literal["transfer", "payment", "payment_request", "withdrawal", "card_deposit"]
    amount: Amount
    currency: Currency
    rule: str = Field(description="the id of the rule that asked for the review")
    created_at: Instant
    transaction_id: str
    expires_at: Instant = Field(description="when it expires if nobody decides it")
    decided_by: str | None
    decided_at: Instant | None
    reason: str | None


class Deposit(Answer):
    id: str
    status: Literal["pending", "succeeded", "failed", "refunded", "partially_refunded"]
    amount: Amount
    currency: Currency
    payment_intent_id: str | None
    created_at: Instant
    credited_amount: Amount | None
    refunded_amount: Amount


class NewDeposit(Deposit):
    """The answer that created a card deposit: the only one with the PaymentIntent's secret."""

    client_secret: str


class Refund(Answer):
    id: str
    deposit_id: str
    amount: Amount
    currency: Currency
    status: Literal["pending", "succeeded", "failed"]
    reason: str
    transaction_id: str
    stripe_refund_id: str | None
    failure_reason: str | None
    created_at: Instant


class Address(Answer):
    currency: Currency
    address: str


class AuditEvent(Answer):
    id: str
    at: Instant
    actor_id: str | None
    action: str
    target: str | None
    ip: str | None
    details: dict[str, Any]


class Adjustment(Answer):
    id: str
    status: Literal["pending_approval", "posted"]
    account_id: str
    amount: SignedAmount
    currency: Currency
    reason: str
    requested_by: str
    requested_at: Instant
    approved_by: str | None
    approved_at: Instant | None
    transaction_id: str | None


class StripeMatching(Answer):
    matched: int
    unmatched_ledger: list[dict[str, Any]]
    unmatched_stripe: list[dict[str, Any]]


class Report(Answer):
    date: Day
    status: Literal["ok", "mismatch"]
    transactions_checked: int
    accounts_checked: int
    trial_balance: dict[str, str] = Field(description="the sum of every account, per currency")
    mismatches: list[dict[str, Any]]
    stripe: StripeMatching


class RunningReport(Answer):
    """A day whose reconciliation is under way."""

    date: Day
    status: Literal["running"]


class Verification(Answer):
    ok: bool
    first_day: Day
    last_day: Day
    days_checked: int
    broken_day: Day | None
    problem: str | None
    unsealed_from: Day | None = Field(description="days from here on are not sealed yet")


class PayrollItem(Answer):
    """One line of a payout batch: paid (with its transaction), failed (with why), or pending
    while the batch is still processing."""

    to_email: str
    amount: Amount
    memo: str
    status: Literal["pending", "paid", "failed"]
    error_code: Literal["recipient_not_found"] | None
    transaction_id: str | None


class PayrollSummary(Answer):
    """A payout batch without its items (``GET /v1/facility/payouts``)."""

    id: str
    status: Literal["processing", "completed", "partially_completed"]
    currency: Currency
    total: Amount = Field(description="every item's amount")
    paid_total: Amount = Field(description="what was paid; the rest stayed with the facility")
    item_count: int
    created_at: Instant
    completed_at: Instant | None


class Payroll(PayrollSummary):
    """A payout batch (a facility's payroll) and every item's outcome."""

    items: list[PayrollItem]


class Health(Answer):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]


# -- answers -------------------------------------------------------------------------------------
class UserAnswer(Answer):
    user: User


class ManagedUserAnswer(Answer):
    user: ManagedUser


class TotpSetup(Answer):
    secret: str
    otpauth_uri: str


class MfaOn(Answer):
    mfa_enabled: Literal[True]
    recovery_codes: list[str] = Field(description="each works once in the place of a code")


class MfaOff(Answer):
    mfa_enabled: Literal[False]


class Accepted(Answer):
    status: Literal["accepted"]


class AccountAnswer(Answer):
    account: Account


class TransactionAnswer(Answer):
    transaction: Transaction


class FacilityAnswer(Answer):
    facility: Facility


class Monitor(Answer):
    """A balance monitor (docs/risk.md, "Balance monitors")."""

    id: str
    name: str
    account_id: str | None = Field(description="the watched account; null for a platform one")
    platform: (
        Literal["stripe_clearing", "crypto_custody", "fx_pool", "fees", "adjustments"] | None
    ) = Field(description="the watched platform account (the sum of its shards); or null")
    currency: Currency
    condition: Literal["below", "above"]
    amount: SignedAmount = Field(description="the threshold, in the currency")
    state: Literal["ok", "crossed"]
    enabled: bool
    created_at: Instant
    created_by: str | None = Field(description="the admin; null for the out-of-the-box one")
    state_changed_at: Instant | None
    disabled_at: Instant | None


class MonitorAnswer(Answer):
    monitor: Monitor


class ApiKeyAnswer(Answer):
    api_key: ApiKey


class NewApiKeyAnswer(Answer):
    api_key: ApiKey
    secret: str = Field(
        pattern="^fk_[0-9a-f]{16}_[A-Za-z0-9_-]+$",
        description="the key's secret: shown only in this answer, stored only as a hash",
    )


class NewWebhookEndpointAnswer(Answer):
    endpoint: WebhookEndpoint
    secret: str = Field(description="signs every delivery (X-Signature); shown only here")


class WebhookEndpointAnswer(Answer):
    endpoint: WebhookEndpoint


class WebhookDeliveryAnswer(Answer):
    delivery: WebhookDelivery


class FacilityOverview(Answer):
    facility: Facility
    accounts: list[Account]


class PaymentRequestAnswer(Answer):
    payment_request: PaymentRequest


class ReviewedPaymentRequestAnswer(Answer):
    """A payment request whose payment a risk rule held for review (202): still ``open``, with
    ``review_id``; the transaction ``pending``, the review ``open``."""

    payment_request: PaymentRequest
    transaction: Transaction
    review: Review


class QuoteAnswer(Answer):
    quote: Quote


class ReviewedTransactionAnswer(Answer):
    """A transaction a risk rule held for review, and its review: ``pending`` and ``open`` when
    the money was just held (202), ``posted`` / ``voided`` once the review is decided."""

    transaction: Transaction
    review: Review


class WithdrawalAnswer(Answer):
    withdrawal: Withdrawal


class DepositAnswer(Answer):
    deposit: Deposit


class NewDepositAnswer(Answer):
    deposit: NewDeposit


class RefundAnswer(Answer):
    refund: Refund


class AddressAnswer(Answer):
    address: Address


class AdjustmentAnswer(Answer):
    adjustment: Adjustment


class ReportAnswer(Answer):
    report: Report


class RunningReportAnswer(Answer):
    report: RunningReport


class VerificationAnswer(Answer):
    verification: Verification


class PayrollAnswer(Answer):
    payout: Payroll


class Received(Answer):
    received: Literal[True]


class CryptoReceived(Answer):
    received: Literal[True]
    outcome: str


# -- pages (API.md, "Pagination") --------------------------------------------------------------
NextCursor = Annotated[
    str | None, Field(description="give it as cursor for the next page; null on the last")
]


class AccountList(Answer):
    data: list[Account]
    next_cursor: None = Field(description="always null: one account per currency")


class SessionPage(Answer):
    data: list[Session]
    next_cursor: NextCursor


class EntryPage(Answer):
    data: list[Entry]
    next_cursor: NextCursor


class TransactionPage(Answer):
    data: list[Transaction]
    next_cursor: NextCursor


class FacilityPage(Answer):
    data: list[Facility]
    next_cursor: NextCursor


class ApiKeyPage(Answer):
    data: list[ApiKey]
    next_cursor: None = Field(description="always null: a facility has few keys")


class PaymentRequestPage(Answer):
    data: list[PaymentRequest]
    next_cursor: NextCursor


class MonitorPage(Answer):
    data: list[Monitor]
    next_cursor: NextCursor


class QueuedWithdrawalPage(Answer):
    data: list[QueuedWithdrawal]
    next_cursor: NextCursor


class ManagedUserPage(Answer):
    data: list[ManagedUser]
    next_cursor: NextCursor


class AuditEventPage(Answer):
    data: list[AuditEvent]
    next_cursor: NextCursor


class ReviewPage(Answer):
    data: list[Review]
    next_cursor: NextCursor


class WebhookEndpointPage(Answer):
    data: list[WebhookEndpoint]
    next_cursor: None = Field(description="always null: a facility has few endpoints")


class WebhookDeliveryPage(Answer):
    data: list[WebhookDelivery]
    next_cursor: NextCursor


class PayrollPage(Answer):
    data: list[PayrollSummary]
    next_cursor: NextCursor
