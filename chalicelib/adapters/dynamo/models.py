"""PynamoDB models of the ledger's items, all stored in the one table.

Item-to-domain mapping happens in exactly one place per item type (``to_domain`` /
``from_domain``). Money attributes are DynamoDB numbers holding integer minor units (up to 38
significant digits; an 18-integer-digit ETH amount has 36).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.adapters.dynamo import keys
from chalicelib.domain.accounts import Account, OwnerType, PlatformKind
from chalicelib.domain.fx import Quote, format_rate, parse_rate
from chalicelib.domain.monitors import BalanceMonitor, MonitorCondition, MonitorState
from chalicelib.domain.transactions import (
    Entry,
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from chalicelib.domain.users import AuditEvent, Role, Session, User, UserStatus

if TYPE_CHECKING:  # a type only: config imports adapters (secrets) at run time
    from chalicelib.config import Settings


class _Meta:
    table_name = "ledger-local"
    region = "us-east-1"
    host: str | None = None
    # PynamoDB's defaults (15 s connect, 30 s read) outlast API Gateway's 29 s limit.
    connect_timeout_seconds = 2
    read_timeout_seconds = 8
    max_retry_attempts = 3


class OwnerIndex(GlobalSecondaryIndex):
    """GSI1: an owner's accounts, by currency. Keys only: balances change on every transfer and
    must not be copied into the index each time (nor be read from it, eventually consistent)."""

    class Meta:
        index_name = "GSI1"
        projection = KeysOnlyProjection()

    GSI1PK = UnicodeAttribute(hash_key=True)
    GSI1SK = UnicodeAttribute(range_key=True)


class DayIndex(GlobalSecondaryIndex):
    """GSI2: transactions by creation day (sharded), for reconciliation."""

    class Meta:
        index_name = "GSI2"
        projection = AllProjection()

    GSI2PK = UnicodeAttribute(hash_key=True)
    GSI2SK = UnicodeAttribute(range_key=True)


class LedgerItem(Model):
    class Meta(_Meta):
        pass

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    item_type = UnicodeAttribute()


class AccountItem(LedgerItem):
    class Meta(_Meta):
        pass

    owner_index = OwnerIndex()
    GSI1PK = UnicodeAttribute()
    GSI1SK = UnicodeAttribute()
    account_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    owner_type = UnicodeAttribute()
    owner_id = UnicodeAttribute()
    overdraft_forbidden = BooleanAttribute()
    posted = NumberAttribute()
    pending_out = NumberAttribute()
    pending_in = NumberAttribute()
    available = NumberAttribute()
    version = NumberAttribute()
    last_seq = NumberAttribute()
    last_entry_at = UnicodeAttribute(null=True)
    forced_negative = BooleanAttribute(default=False)
    created_at = UnicodeAttribute()

    ITEM_TYPE = "account"

    @classmethod
    def from_domain(cls, account: Account) -> AccountItem:
        return cls(
            keys.account_pk(account.id),
            keys.ACCOUNT_SK,
            item_type=cls.ITEM_TYPE,
            GSI1PK=keys.owner_gsi_pk(account.owner_type.value, account.owner_id),
            GSI1SK=keys.owner_gsi_sk(account.currency),
            account_id=account.id,
            currency=account.currency,
            owner_type=account.owner_type.value,
            owner_id=account.owner_id,
            overdraft_forbidden=account.overdraft_forbidden,
            posted=account.posted,
            pending_out=account.pending_out,
            pending_in=account.pending_in,
            available=account.available,
            version=account.version,
            last_seq=account.last_seq,
            last_entry_at=account.last_entry_at,
            forced_negative=account.forced_negative,
            created_at=account.created_at,
        )

    def to_domain(self) -> Account:
        return Account(
            id=self.account_id,
            currency=self.currency,
            owner_type=OwnerType(self.owner_type),
            owner_id=self.owner_id,
            overdraft_forbidden=self.overdraft_forbidden,
            posted=int(self.posted),
            pending_out=int(self.pending_out),
            pending_in=int(self.pending_in),
            version=int(self.version),
            last_seq=int(self.last_seq),
            last_entry_at=self.last_entry_at,
            forced_negative=bool(self.forced_negative),
            created_at=self.created_at,
        )


class EntryItem(LedgerItem):
    class Meta(_Meta):
        pass

    account_id = UnicodeAttribute()
    seq = NumberAttribute()
    transaction_id = UnicodeAttribute()
    type = UnicodeAttribute()
    amount = NumberAttribute()
    balance_after = NumberAttribute()
    created_at = UnicodeAttribute()
    memo = UnicodeAttribute(default="")

    ITEM_TYPE = "entry"

    @classmethod
    def from_domain(cls, entry: Entry) -> EntryItem:
        return cls(
            keys.account_pk(entry.account_id),
            keys.entry_sk(entry.created_at, entry.seq),
            item_type=cls.ITEM_TYPE,
            account_id=entry.account_id,
            seq=entry.seq,
            transaction_id=entry.transaction_id,
            type=entry.type.value,
            amount=entry.amount,
            balance_after=entry.balance_after,
            created_at=entry.created_at,
            memo=entry.memo,
        )

    def to_domain(self) -> Entry:
        return Entry(
            account_id=self.account_id,
            seq=int(self.seq),
            transaction_id=self.transaction_id,
            type=TransactionType(self.type),
            amount=int(self.amount),
            balance_after=int(self.balance_after),
            created_at=self.created_at,
            memo=self.memo or "",
        )


class PostingAttribute(MapAttribute):
    account_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    amount = NumberAttribute()


class TransactionItem(LedgerItem):
    class Meta(_Meta):
        pass

    day_index = DayIndex()
    GSI2PK = UnicodeAttribute()
    GSI2SK = UnicodeAttribute()
    transaction_id = UnicodeAttribute()
    type = UnicodeAttribute()
    status = UnicodeAttribute()
    postings = ListAttribute(of=PostingAttribute)
    created_at = UnicodeAttribute()
    memo = UnicodeAttribute(default="")
    metadata = MapAttribute(default=dict)
    reverses = UnicodeAttribute(null=True)
    reversed_by = UnicodeAttribute(null=True)
    forced = BooleanAttribute(default=False)
    resolved_at = UnicodeAttribute(null=True)

    ITEM_TYPE = "transaction"

    @classmethod
    def from_domain(cls, txn: Transaction) -> TransactionItem:
        return cls(
            keys.transaction_pk(txn.id),
            keys.TRANSACTION_SK,
            item_type=cls.ITEM_TYPE,
            GSI2PK=keys.day_index_pk(txn.created_at, txn.id),
            GSI2SK=keys.day_index_sk(txn.created_at, txn.id),
            transaction_id=txn.id,
            type=txn.type.value,
            status=txn.status.value,
            postings=[
                PostingAttribute(account_id=p.account_id, currency=p.currency, amount=p.amount)
                for p in txn.postings
            ],
            created_at=txn.created_at,
            memo=txn.memo,
            metadata=dict(txn.metadata),
            reverses=txn.reverses,
            reversed_by=txn.reversed_by,
            forced=txn.forced,
            resolved_at=txn.resolved_at,
        )

    def to_domain(self) -> Transaction:
        metadata = self.metadata.as_dict() if isinstance(self.metadata, MapAttribute) else {}
        return Transaction(
            id=self.transaction_id,
            type=TransactionType(self.type),
            status=TransactionStatus(self.status),
            postings=tuple(
                Posting(account_id=p.account_id, currency=p.currency, amount=int(p.amount))
                for p in self.postings
            ),
            created_at=self.created_at,
            memo=self.memo or "",
            metadata={str(k): str(v) for k, v in metadata.items()},
            reverses=self.reverses,
            reversed_by=self.reversed_by,
            forced=bool(self.forced),
            resolved_at=self.resolved_at,
        )


class TimelineItem(LedgerItem):
    """An owner's pointer to a transaction they take part in (written with the transaction)."""

    class Meta(_Meta):
        pass

    transaction_id = UnicodeAttribute()
    created_at = UnicodeAttribute()

    ITEM_TYPE = "timeline"

    @classmethod
    def for_owner(cls, owner_type: str, owner_id: str, txn: Transaction) -> TimelineItem:
        return cls(
            keys.timeline_pk(owner_type, owner_id),
            keys.timeline_sk(txn.created_at, txn.id),
            item_type=cls.ITEM_TYPE,
            transaction_id=txn.id,
            created_at=txn.created_at,
        )


class IdempotencyItem(LedgerItem):
    """A Powertools idempotency record (see adapters/dynamo/idempotency_store.py)."""

    class Meta(_Meta):
        pass

    status = UnicodeAttribute()
    expires_at = NumberAttribute()  # the table's TTL attribute
    in_progress_expiry = NumberAttribute(null=True)
    data = UnicodeAttribute(null=True)
    validation = UnicodeAttribute(null=True)

    ITEM_TYPE = "idempotency"


class FacilityItem(LedgerItem):
    class Meta(_Meta):
        pass

    facility_id = UnicodeAttribute()
    name = UnicodeAttribute()
    created_at = UnicodeAttribute()

    ITEM_TYPE = "facility"


class MonitorItem(LedgerItem):
    """A balance monitor (``domain/monitors.py``); thresholds and balances in minor units."""

    class Meta(_Meta):
        pass

    monitor_id = UnicodeAttribute()
    name = UnicodeAttribute()
    currency = UnicodeAttribute()
    condition = UnicodeAttribute()
    threshold = NumberAttribute()
    account_id = UnicodeAttribute(null=True)
    platform = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    enabled = BooleanAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute(null=True)
    state_changed_at = UnicodeAttribute(null=True)
    last_balance = NumberAttribute(null=True)
    alert_pending = BooleanAttribute(null=True)
    disabled_at = UnicodeAttribute(null=True)
    disabled_by = UnicodeAttribute(null=True)

    ITEM_TYPE = "balance_monitor"

    @classmethod
    def from_domain(cls, monitor: BalanceMonitor) -> MonitorItem:
        return cls(
            keys.MONITORS_PK,
            keys.monitor_sk(monitor.id),
            item_type=cls.ITEM_TYPE,
            monitor_id=monitor.id,
            name=monitor.name,
            currency=monitor.currency,
            condition=monitor.condition.value,
            threshold=monitor.threshold,
            account_id=monitor.account_id,
            platform=monitor.platform.value if monitor.platform else None,
            state=monitor.state.value,
            enabled=monitor.enabled,
            created_at=monitor.created_at,
            created_by=monitor.created_by,
            state_changed_at=monitor.state_changed_at,
            last_balance=monitor.last_balance,
            alert_pending=monitor.alert_pending or None,
            disabled_at=monitor.disabled_at,
            disabled_by=monitor.disabled_by,
        )

    def to_domain(self) -> BalanceMonitor:
        return BalanceMonitor(
            id=self.monitor_id,
            name=self.name,
            currency=self.currency,
            condition=MonitorCondition(self.condition),
            threshold=int(self.threshold),
            created_at=self.created_at,
            created_by=self.created_by,
            account_id=self.account_id,
            platform=PlatformKind(self.platform) if self.platform else None,
            state=MonitorState(self.state),
            enabled=bool(self.enabled),
            state_changed_at=self.state_changed_at,
            last_balance=int(self.last_balance) if self.last_balance is not None else None,
            alert_pending=bool(self.alert_pending),
            disabled_at=self.disabled_at,
            disabled_by=self.disabled_by,
        )


class ApiKeyItem(LedgerItem):
    """A facility's API key: the keyed hash of its secret, never the secret."""

    class Meta(_Meta):
        pass

    facility_index = DayIndex()  # GSI2, overloaded: a facility's keys, newest first
    GSI2PK = UnicodeAttribute()
    GSI2SK = UnicodeAttribute()
    key_id = UnicodeAttribute()
    facility_id = UnicodeAttribute()
    name = UnicodeAttribute()
    prefix = UnicodeAttribute()
    scopes = ListAttribute(of=UnicodeAttribute)
    salt = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()
    last_used_at = UnicodeAttribute(null=True)
    revoked_at = UnicodeAttribute(null=True)
    revoked_by = UnicodeAttribute(null=True)
    rate_limit_per_minute = NumberAttribute(null=True)

    ITEM_TYPE = "api_key"


class RateCounterItem(LedgerItem):
    """One minute's requests of one API key (``count``), gone with the TTL a few minutes later."""

    class Meta(_Meta):
        pass

    requests = NumberAttribute(attr_name="count", null=True)
    expires_at = NumberAttribute(null=True)  # the table's TTL attribute

    ITEM_TYPE = "rate_counter"


class WithdrawalItem(LedgerItem):
    class Meta(_Meta):
        pass

    review_index = DayIndex()  # GSI2, overloaded: the review queue, newest first
    GSI2PK = UnicodeAttribute()
    GSI2SK = UnicodeAttribute()
    withdrawal_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    amount = NumberAttribute()
    destination = UnicodeAttribute()
    status = UnicodeAttribute()
    transaction_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    decided_by = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    # The mark of the request that decided it (api.idempotency.request_mark), when it had an
    # Idempotency-Key: its retry after a lost answer recognises its own decision.
    decided_request = UnicodeAttribute(null=True)
    risk_rule = UnicodeAttribute(null=True)  # the risk rule that asked for its review

    ITEM_TYPE = "withdrawal"


class PaymentRequestItem(LedgerItem):
    """A facility's payment request (``domain/payment_requests.py``): the item
    (``PAYREQ#<id>``), and its copies in the payer's and the facility's lists, written together.
    ``expires_at`` is stored as ``request_expires_at``: a string, and not the table's TTL."""

    class Meta(_Meta):
        pass

    ITEM_TYPE = "payment_request"
    LISTED_TYPE = "payment_request_listed"  # a copy in a list

    # GSI2, overloaded, on the item only: the open requests, soonest to expire first (keys
    # removed when it leaves open), for the expiry job.
    open_index = DayIndex()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute()
    facility_id = UnicodeAttribute()
    payer_id = UnicodeAttribute()
    payer_email = UnicodeAttribute()
    currency = UnicodeAttribute()
    amount = NumberAttribute()
    memo = UnicodeAttribute(default="")
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    expires_at = UnicodeAttribute(attr_name="request_expires_at")
    transaction_id = UnicodeAttribute(null=True)
    paid_at = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute(null=True)
    creation = UnicodeAttribute(null=True)
    decided_request = UnicodeAttribute(null=True)
    # Payment attempts ended by a rejected or expired risk review (absent: 0).
    attempt = NumberAttribute(null=True)
    # The risk review holding the payment ``transaction_id`` (absent: no hold).
    review_id = UnicodeAttribute(null=True)


class AdjustmentItem(LedgerItem):
    """An operator's adjustment of one account (chalicelib/domain/adjustments.py)."""

    class Meta(_Meta):
        pass

    adjustment_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    amount = NumberAttribute()  # signed minor units
    reason = UnicodeAttribute()
    status = UnicodeAttribute()
    requested_by = UnicodeAttribute()
    requested_at = UnicodeAttribute()
    approved_by = UnicodeAttribute(null=True)
    approved_at = UnicodeAttribute(null=True)

    ITEM_TYPE = "adjustment"


class WithdrawalLimitItem(LedgerItem):
    class Meta(_Meta):
        pass

    total = NumberAttribute(default=0)
    expires_at = NumberAttribute()

    ITEM_TYPE = "withdrawal_limit"


class RiskRulesItem(LedgerItem):
    """The one risk rule set (chalicelib/domain/risk.py), replaced whole, versioned."""

    class Meta(_Meta):
        pass

    version = NumberAttribute()
    rules = UnicodeAttribute()  # JSON (domain.risk.rules_to_json): amounts in minor units
    updated_at = UnicodeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)

    ITEM_TYPE = "risk_rules"


class RiskCounterItem(LedgerItem):
    """A user's velocity counter (domain.risk.Counter), rewritten by each assessed operation on
    the condition that its version did not change since it was read."""

    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    version = NumberAttribute()
    state = UnicodeAttribute()  # JSON (domain.risk.Counter.to_json)
    expires_at = NumberAttribute()  # the table's TTL attribute

    ITEM_TYPE = "risk_counter"


class ReviewItem(LedgerItem):
    """An operation held for an admin's risk review (domain.risk.Review)."""

    class Meta(_Meta):
        pass

    review_index = DayIndex()  # GSI2, overloaded: the review queue, newest first
    GSI2PK = UnicodeAttribute()
    GSI2SK = UnicodeAttribute()
    review_id = UnicodeAttribute()
    status = UnicodeAttribute()
    user_id = UnicodeAttribute()
    operation = UnicodeAttribute()
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    rule = UnicodeAttribute()
    rule_kind = UnicodeAttribute()
    created_at = UnicodeAttribute()
    transaction_id = UnicodeAttribute()
    review_expires_at = UnicodeAttribute()  # not the TTL attribute: a review is kept
    decided_by = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)

    ITEM_TYPE = "risk_review"


class HoldExpiryItem(LedgerItem):
    """A hold's deadline and owner (domain.holds.HoldExpiry), written with the hold."""

    class Meta(_Meta):
        pass

    transaction_id = UnicodeAttribute()
    hold_expires_at = UnicodeAttribute()
    owner = UnicodeAttribute(null=True)
    owner_id = UnicodeAttribute(null=True)
    done = BooleanAttribute(null=True)  # swept: the hold had ended, or the sweep ended it
    expires_at = NumberAttribute()  # the table's TTL attribute

    ITEM_TYPE = "hold_expiry"


class PayoutItem(LedgerItem):
    """A payout the crypto gateway must send; written with the approval, exactly once."""

    class Meta(_Meta):
        pass

    # GSI2, overloaded: the payouts still ``requested`` (keys removed once sent or settled), so
    # the retry finds them without a Scan (chalicelib/services/payouts.py).
    requested_index = DayIndex()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    withdrawal_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    amount = NumberAttribute()
    destination = UnicodeAttribute()
    status = UnicodeAttribute()  # requested -> sent -> completed | failed
    requested_at = UnicodeAttribute()
    sent_at = UnicodeAttribute(null=True)
    claimed_until = NumberAttribute(null=True)  # unix time: a sender is handing it over
    failed_attempts = NumberAttribute(null=True)  # hand-offs the gateway failed

    ITEM_TYPE = "payout"


class WebhookEventItem(LedgerItem):
    """A provider's webhook event (the inbox): written once, in the same write as its effect."""

    class Meta(_Meta):
        pass

    provider = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    outcome = UnicodeAttribute()  # what the event did: credited, duplicate, unmatched, ignored...
    subject = UnicodeAttribute(null=True)  # e.g. the transaction or withdrawal it concerned
    received_at = UnicodeAttribute()

    ITEM_TYPE = "webhook_event"


class CryptoAddressItem(LedgerItem):
    """A crypto deposit address and the user it belongs to (webhooks find the owner here)."""

    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    address = UnicodeAttribute()
    created_at = UnicodeAttribute()

    ITEM_TYPE = "crypto_address"


class DepositItem(LedgerItem):
    """A card deposit: pending until Stripe's webhook says succeeded (credited, in the same write
    as the ledger transaction) or failed."""

    class Meta(_Meta):
        pass

    deposit_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    amount = NumberAttribute()  # asked for, minor units; the credit is what Stripe reports
    currency = UnicodeAttribute()
    status = UnicodeAttribute()
    payment_intent_id = UnicodeAttribute(null=True)
    transaction_id = UnicodeAttribute(null=True)
    credited_amount = NumberAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute(null=True)
    # Refunds: ``refund_reserved`` counts pending and succeeded refunds (never above
    # ``credited_amount``, by a condition in the refund's hold write); ``refunded_amount`` the
    # succeeded ones.
    refund_reserved = NumberAttribute(null=True)
    refunded_amount = NumberAttribute(null=True)
    # An admin rolled the deposit's transaction back (only possible with no refund reserved and
    # no dispute; afterwards no refund or dispute hold can take the money from the wallet a
    # second time).
    rolled_back_by = UnicodeAttribute(null=True)
    # The card payment was disputed (the first dispute's id): the dispute settles the money, so
    # the deposit can no longer be rolled back.
    disputed_by = UnicodeAttribute(null=True)

    ITEM_TYPE = "deposit"


class RefundItem(LedgerItem):
    """A refund of a card deposit: the hold on the user's wallet, the Stripe refund, its outcome."""

    class Meta(_Meta):
        pass

    refund_id = UnicodeAttribute()
    deposit_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    amount = NumberAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute()  # pending | succeeded | failed
    reason = UnicodeAttribute()
    requested_by = UnicodeAttribute()
    transaction_id = UnicodeAttribute()
    payment_intent_id = UnicodeAttribute()
    stripe_refund_id = UnicodeAttribute(null=True)
    failure_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute(null=True)
    # GSI2, overloaded: the refunds still pending (keys removed when the refund finishes), so
    # the scheduled finisher finds them without a Scan.
    pending_index = DayIndex()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)

    ITEM_TYPE = "refund"


class DisputeItem(LedgerItem):
    """A Stripe dispute of a card deposit: what was held on the wallet, and how it ended."""

    class Meta(_Meta):
        pass

    dispute_id = UnicodeAttribute()
    deposit_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    payment_intent_id = UnicodeAttribute()
    amount = NumberAttribute()  # disputed, minor units
    held_amount = NumberAttribute()  # what the wallet could cover when the dispute opened
    currency = UnicodeAttribute()
    status = UnicodeAttribute()  # open | won | lost
    transaction_id = UnicodeAttribute(null=True)  # the hold; none when nothing could be held
    created_at = UnicodeAttribute()
    closed_at = UnicodeAttribute(null=True)

    ITEM_TYPE = "dispute"


class UserItem(LedgerItem):
    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    email = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    role = UnicodeAttribute()
    status = UnicodeAttribute()
    terms_accepted_at = UnicodeAttribute()
    created_at = UnicodeAttribute()
    mfa_enabled = BooleanAttribute(default=False)
    totp_secret = UnicodeAttribute(null=True)
    totp_pending_secret = UnicodeAttribute(null=True)
    totp_last_step = NumberAttribute(default=0)
    recovery_code_hashes = UnicodeSetAttribute(null=True)
    sessions_valid_after = NumberAttribute(default=0)
    version = NumberAttribute(default=1)
    suspended_at = UnicodeAttribute(null=True)
    suspended_by = UnicodeAttribute(null=True)
    suspension_reason = UnicodeAttribute(null=True)
    email_verified = BooleanAttribute(null=True)  # absent: a user of before verification
    # ``<kind>_<hash>`` -> last seen (epoch seconds), domain/sign_ins.py; absent: never recorded
    known_devices = MapAttribute(null=True)

    ITEM_TYPE = "user"

    @classmethod
    def from_domain(cls, user: User) -> UserItem:
        return cls(
            keys.user_pk(user.id),
            keys.PROFILE_SK,
            item_type=cls.ITEM_TYPE,
            user_id=user.id,
            email=user.email,
            password_hash=user.password_hash,
            role=user.role.value,
            status=user.status.value,
            terms_accepted_at=user.terms_accepted_at,
            created_at=user.created_at,
            mfa_enabled=user.mfa_enabled,
            totp_secret=user.totp_secret,
            totp_pending_secret=user.totp_pending_secret,
            totp_last_step=user.totp_last_step,
            recovery_code_hashes=set(user.recovery_code_hashes) or None,
            sessions_valid_after=user.sessions_valid_after,
            version=user.version,
            suspended_at=user.suspended_at,
            suspended_by=user.suspended_by,
            suspension_reason=user.suspension_reason,
            email_verified=user.email_verified,
            known_devices=dict(user.known_devices) if user.known_devices is not None else None,
        )

    def to_domain(self) -> User:
        return User(
            id=self.user_id,
            email=self.email,
            password_hash=self.password_hash,
            role=Role(self.role),
            status=UserStatus(self.status),
            terms_accepted_at=self.terms_accepted_at,
            created_at=self.created_at,
            mfa_enabled=bool(self.mfa_enabled),
            totp_secret=self.totp_secret,
            totp_pending_secret=self.totp_pending_secret,
            totp_last_step=int(self.totp_last_step or 0),
            recovery_code_hashes=frozenset(self.recovery_code_hashes or ()),
            sessions_valid_after=int(self.sessions_valid_after or 0),
            version=int(self.version or 1),
            suspended_at=self.suspended_at,
            suspended_by=self.suspended_by,
            suspension_reason=self.suspension_reason,
            email_verified=bool(self.email_verified),
            known_devices=(
                {k: int(v) for k, v in self.known_devices.as_dict().items()}
                if self.known_devices is not None
                else None
            ),
        )


class EmailClaimItem(LedgerItem):
    """Written with ``attribute_not_exists`` in the same transaction as its user, and never
    updated. It carries the admin list's index keys (GSI2 ``USERS`` / lower-case email), rather
    than the profile: GSI2 projects every attribute, and the profile holds the password hash and
    the TOTP secret, and is rewritten on every TOTP login (one hot index partition)."""

    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    # Set with the user's when the email is verified: a transfer by email reads only the claim.
    verified = BooleanAttribute(null=True)
    users_index = DayIndex()  # GSI2, overloaded: the admin list of users
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)

    ITEM_TYPE = "email_claim"

    @classmethod
    def for_user(cls, user: User) -> EmailClaimItem:
        return cls(
            keys.email_pk(user.email),
            keys.EMAIL_SK,
            item_type=cls.ITEM_TYPE,
            user_id=user.id,
            verified=user.email_verified or None,
            GSI2PK=keys.USERS_GSI_PK,
            GSI2SK=keys.users_gsi_sk(user.email, user.id),
        )


class SessionItem(LedgerItem):
    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    session_id = UnicodeAttribute()
    token_hash = UnicodeAttribute()
    used_token_hashes = UnicodeSetAttribute(null=True)
    mfa = BooleanAttribute(default=False)
    created_at = NumberAttribute()
    expires_at = NumberAttribute()  # the table's TTL attribute
    revoked = BooleanAttribute(default=False)
    valid_from = NumberAttribute(null=True)
    mfa_at = NumberAttribute(null=True)
    ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    last_used_at = NumberAttribute(null=True)

    ITEM_TYPE = "session"

    @classmethod
    def from_domain(cls, session: Session) -> SessionItem:
        return cls(
            keys.user_pk(session.user_id),
            keys.session_sk(session.id),
            item_type=cls.ITEM_TYPE,
            user_id=session.user_id,
            session_id=session.id,
            token_hash=session.token_hash,
            used_token_hashes=set(session.used_token_hashes) or None,
            mfa=session.mfa,
            created_at=session.created_at,
            expires_at=session.expires_at,
            revoked=session.revoked,
            valid_from=session.valid_from or None,
            mfa_at=session.mfa_at,
            ip=session.ip,
            user_agent=session.user_agent,
            last_used_at=session.last_used_at or None,
        )

    def to_domain(self) -> Session:
        return Session(
            user_id=self.user_id,
            id=self.session_id,
            token_hash=self.token_hash,
            used_token_hashes=frozenset(self.used_token_hashes or ()),
            mfa=bool(self.mfa),
            created_at=int(self.created_at),
            expires_at=int(self.expires_at),
            revoked=bool(self.revoked),
            valid_from=int(self.valid_from or 0),
            mfa_at=int(self.mfa_at) if self.mfa_at is not None else None,
            ip=self.ip,
            user_agent=self.user_agent,
            last_used_at=int(self.last_used_at or self.created_at),
        )


class ResetTokenItem(LedgerItem):
    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    expires_at = NumberAttribute()
    used = BooleanAttribute(default=False)

    ITEM_TYPE = "reset_token"


class VerifyTokenItem(LedgerItem):
    """The hash of an email verification token (the token itself is only in the mail)."""

    class Meta(_Meta):
        pass

    user_id = UnicodeAttribute()
    email = UnicodeAttribute()  # the address it proves; a changed address voids it
    expires_at = NumberAttribute()  # the table's TTL attribute
    used = BooleanAttribute(default=False)

    ITEM_TYPE = "verify_token"


class OutboxItem(LedgerItem):
    """A mail to send outside the request that asked for it (``services/mail_outbox.py``)."""

    class Meta(_Meta):
        pass

    message_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    claimed_until = NumberAttribute(default=0)
    expires_at = NumberAttribute()  # the table's TTL attribute

    ITEM_TYPE = "outbox"


class OutboundEventItem(LedgerItem):
    """An outbound webhook event, written with the money it reports (``domain/webhooks.py``)."""

    class Meta(_Meta):
        pass

    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    facility_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    data = UnicodeAttribute()  # the event's ``data``, as JSON text
    claimed_until = NumberAttribute(default=0)
    expires_at = NumberAttribute()  # the table's TTL attribute
    fan_out_tries = NumberAttribute(null=True)  # failed fan-outs (a poison event is parked)
    parked_at = UnicodeAttribute(null=True)  # set on a parked copy (WHEVPARKED#), kept to read

    ITEM_TYPE = "outbound_event"


class WebhookEndpointCountItem(LedgerItem):
    """How many webhook endpoints a facility has created (``WHEP#<facility>``, ``WHEPCOUNT``):
    raised in the same write as each endpoint, on condition it is under the cap."""

    class Meta(_Meta):
        pass

    count = NumberAttribute(null=True)

    ITEM_TYPE = "webhook_endpoint_count"


class WebhookEndpointItem(LedgerItem):
    """A facility's webhook endpoint. No secret: it is derived when needed (domain/webhooks.py)."""

    class Meta(_Meta):
        pass

    endpoint_id = UnicodeAttribute()
    facility_id = UnicodeAttribute()
    url = UnicodeAttribute()
    events = ListAttribute(of=UnicodeAttribute)
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    secret_nonce = UnicodeAttribute()
    disabled_at = UnicodeAttribute(null=True)
    disabled_reason = UnicodeAttribute(null=True)
    failing_since = UnicodeAttribute(null=True)

    ITEM_TYPE = "webhook_endpoint"


class DueIndex(GlobalSecondaryIndex):
    """GSI1, overloaded (keys only): webhook deliveries still pending, by when they are due."""

    class Meta:
        index_name = "GSI1"
        projection = KeysOnlyProjection()

    GSI1PK = UnicodeAttribute(hash_key=True)
    GSI1SK = UnicodeAttribute(range_key=True)


class WebhookDeliveryItem(LedgerItem):
    """One event to one endpoint and how its attempts went; in GSI1 only while pending."""

    class Meta(_Meta):
        pass

    facility_index = DayIndex()  # GSI2, overloaded: a facility's deliveries, newest first
    due_index = DueIndex()
    GSI1PK = UnicodeAttribute(null=True)
    GSI1SK = UnicodeAttribute(null=True)
    GSI2PK = UnicodeAttribute()
    GSI2SK = UnicodeAttribute()
    delivery_id = UnicodeAttribute()
    facility_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    event_created_at = UnicodeAttribute()
    data = UnicodeAttribute()  # the event's ``data``, as JSON text
    status = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    created_at = UnicodeAttribute()
    next_attempt_at = UnicodeAttribute(null=True)
    last_status_code = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    first_attempt_at = UnicodeAttribute(null=True)
    last_attempt_at = UnicodeAttribute(null=True)
    claimed_until = NumberAttribute(default=0)
    lease = UnicodeAttribute(null=True)  # the claim's own token: only its holder records
    expires_at = NumberAttribute(null=True)  # the table's TTL: set once the delivery has ended

    ITEM_TYPE = "webhook_delivery"


class PayrollBatchItem(LedgerItem):
    """A facility's payroll batch (``domain/payroll.py``): its items as compact JSON text, their
    outcomes included once it completed."""

    class Meta(_Meta):
        pass

    # GSI2, overloaded: the batches still processing (keys removed when the batch completes),
    # so the finisher finds them without a Scan.
    processing_index = DayIndex()
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    payroll_id = UnicodeAttribute()
    facility_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    status = UnicodeAttribute()
    items = UnicodeAttribute()  # JSON list, one compact object per item, as stored at first
    # JSON object, item index -> [status, transaction id, error code] of every payable item: set
    # once, when the batch completes (``items`` is never rewritten: a 300 KB batch stays one write)
    outcomes = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    completed_at = UnicodeAttribute(null=True)
    request_hash = UnicodeAttribute()

    ITEM_TYPE = "payroll"


class PayrollListingItem(LedgerItem):
    """A batch's line in its facility's list (``PAYROLLS#<facility id>``); never changed."""

    class Meta(_Meta):
        pass

    payroll_id = UnicodeAttribute()

    ITEM_TYPE = "payroll_listing"


class PayrollOutcomeItem(LedgerItem):
    """How one payable item of a batch was decided; written once, with its money."""

    class Meta(_Meta):
        pass

    status = UnicodeAttribute()  # paid | failed
    transaction_id = UnicodeAttribute(null=True)
    error_code = UnicodeAttribute(null=True)
    decided_at = UnicodeAttribute()

    ITEM_TYPE = "payroll_item"


class MailCountItem(LedgerItem):
    """How many mails of one kind went to one address in one hour."""

    class Meta(_Meta):
        pass

    count = NumberAttribute(default=0)
    expires_at = NumberAttribute()  # the table's TTL attribute

    ITEM_TYPE = "mail_count"


class ThrottleItem(LedgerItem):
    """Recent failed logins of one email or one IP (epoch seconds), expiring with the window."""

    class Meta(_Meta):
        pass

    failures = ListAttribute(of=NumberAttribute, default=list)
    version = NumberAttribute(default=0)
    expires_at = NumberAttribute()
    # A fixed window's count of attempts (``claim_attempt``): per IP, one atomic ADD each.
    attempts = NumberAttribute(null=True)

    ITEM_TYPE = "throttle"


class AuditItem(LedgerItem):
    class Meta(_Meta):
        pass

    event_id = UnicodeAttribute()
    at = UnicodeAttribute()
    actor_id = UnicodeAttribute(null=True)
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)
    ip = UnicodeAttribute(null=True)
    details = MapAttribute(default=dict)

    ITEM_TYPE = "audit"

    @classmethod
    def from_domain(cls, event: AuditEvent) -> AuditItem:
        return cls(
            keys.audit_pk(event.at, event.id),
            keys.audit_sk(event.at, event.id),
            item_type=cls.ITEM_TYPE,
            event_id=event.id,
            at=event.at,
            actor_id=event.actor_id,
            action=event.action,
            target=event.target,
            ip=event.ip,
            details=dict(event.details),
        )

    def to_domain(self) -> AuditEvent:
        details = self.details.as_dict() if isinstance(self.details, MapAttribute) else {}
        return AuditEvent(
            id=self.event_id,
            at=self.at,
            actor_id=self.actor_id,
            action=self.action,
            target=self.target,
            ip=self.ip,
            details={str(k): str(v) for k, v in details.items()},
        )


class AuditDigestItem(LedgerItem):
    """One UTC day of audit events, sealed: the hash of the day's events in canonical order,
    chained to the previous day's digest (chalicelib/services/audit_chain.py). Written once."""

    class Meta(_Meta):
        pass

    day = UnicodeAttribute()
    event_count = NumberAttribute()
    events_hash = UnicodeAttribute()
    previous_digest = UnicodeAttribute()
    digest = UnicodeAttribute()
    sealed_at = UnicodeAttribute()

    ITEM_TYPE = "audit_digest"


class AuditChainHeadItem(LedgerItem):
    """The last sealed day and its digest: each new digest is written with a condition on it, so
    two sealers cannot fork the chain."""

    class Meta(_Meta):
        pass

    day = UnicodeAttribute()
    digest = UnicodeAttribute()

    ITEM_TYPE = "audit_chain_head"


class QuoteItem(LedgerItem):
    """An fx quote offered to one user (``domain.fx.Quote``); marked ``used`` by the swap that
    executes it, in the swap's own write. ``expires_at`` (epoch seconds) is the table's TTL."""

    class Meta(_Meta):
        pass

    quote_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    from_currency = UnicodeAttribute()
    to_currency = UnicodeAttribute()
    from_amount = NumberAttribute()
    to_amount = NumberAttribute()
    rate = UnicodeAttribute()  # the exact decimal string; never a number that could round
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()  # the table's TTL attribute
    used = BooleanAttribute(default=False)
    used_at = UnicodeAttribute(null=True)
    transaction_id = UnicodeAttribute(null=True)

    ITEM_TYPE = "fx_quote"

    @classmethod
    def from_domain(cls, quote: Quote) -> QuoteItem:
        return cls(
            keys.quote_pk(quote.id),
            keys.QUOTE_SK,
            item_type=cls.ITEM_TYPE,
            quote_id=quote.id,
            user_id=quote.user_id,
            from_currency=quote.from_currency,
            to_currency=quote.to_currency,
            from_amount=quote.from_amount,
            to_amount=quote.to_amount,
            rate=format_rate(quote.rate),
            created_at=quote.created_at,
            expires_at=quote.expires_at,
            used=quote.used,
            transaction_id=quote.transaction_id,
        )

    def to_domain(self) -> Quote:
        return Quote(
            id=self.quote_id,
            user_id=self.user_id,
            from_currency=self.from_currency,
            to_currency=self.to_currency,
            from_amount=int(self.from_amount),
            to_amount=int(self.to_amount),
            rate=parse_rate(self.rate),
            created_at=self.created_at,
            expires_at=int(self.expires_at),
            used=bool(self.used),
            transaction_id=self.transaction_id,
        )


MODELS: tuple[type[Model], ...] = (
    LedgerItem,
    AccountItem,
    EntryItem,
    TransactionItem,
    TimelineItem,
    IdempotencyItem,
    FacilityItem,
    MonitorItem,
    ApiKeyItem,
    RateCounterItem,
    WithdrawalItem,
    WithdrawalLimitItem,
    PaymentRequestItem,
    RiskRulesItem,
    RiskCounterItem,
    ReviewItem,
    HoldExpiryItem,
    AdjustmentItem,
    PayoutItem,
    WebhookEventItem,
    CryptoAddressItem,
    DepositItem,
    RefundItem,
    DisputeItem,
    UserItem,
    EmailClaimItem,
    SessionItem,
    ResetTokenItem,
    VerifyTokenItem,
    OutboxItem,
    OutboundEventItem,
    WebhookEndpointItem,
    WebhookEndpointCountItem,
    WebhookDeliveryItem,
    MailCountItem,
    ThrottleItem,
    AuditItem,
    QuoteItem,
    AuditDigestItem,
    AuditChainHeadItem,
    PayrollBatchItem,
    PayrollListingItem,
    PayrollOutcomeItem,
)


def bind(settings: Settings) -> None:
    """Point every model at the configured table (and endpoint, for the local stack).

    PynamoDB opens a botocore session and client per model class, which costs ~120 ms each on a
    cold start; all models talk to one table, so they share the first model's client.
    """
    for model in MODELS:
        model.Meta.table_name = settings.table_name
        model.Meta.region = settings.region
        model.Meta.host = settings.dynamodb_endpoint
        model._connection = None  # PynamoDB caches a connection per model class
    client = MODELS[0]._get_connection().connection.client
    for model in MODELS[1:]:
        model._get_connection().connection._client = client
