"""Every PK / SK / GSI key string of the single table is built and parsed here, and only here.

- account:     PK ``ACCT#<id>``, SK ``ACCT``;
  GSI1 (owner -> accounts) ``OWNER#<type>#<owner id>`` / ``CUR#<currency>``
- entry:       PK ``ACCT#<id>``, SK ``E#<created_at>#<seq:012d>``
- transaction: PK ``TXN#<id>``, SK ``TXN``;
  GSI2 (day -> transactions) ``TXDAY#<yyyy-mm-dd>#<shard>`` / ``<created_at>#<id>``
- timeline:    PK ``OWNER#<type>#<owner id>``, SK ``TXN#<created_at>#<transaction id>`` (one per
  owner taking part in a transaction: "my transactions", newest first, by time range)
- idempotency: PK ``IDEM#<hash of scope, caller and key>``, SK ``IDEM`` (API replay records)
- facility:    PK ``FACILITIES``, SK ``FAC#<id>`` (few, rarely written: one directory partition)
- balance monitor: PK ``MONITORS``, SK ``MON#<id>`` (an operator's handful, written on creation,
  disabling and each state change: one directory partition; ids sort by creation)
- withdrawal:  PK ``WITHDRAWAL#<id>``, SK ``WITHDRAWAL``;
  GSI2 (review queue) ``WITHDRAWALS`` / ``<created_at>#<id>``
- adjustment:  PK ``ADJUSTMENT#<id>``, SK ``ADJUSTMENT`` (an operator's correction of an account)
- withdrawal limit: PK ``WDLIMIT#<user>#<currency>#<yyyy-mm-dd>``, SK ``WDLIMIT`` (a day's total)
- payout request:   PK ``PAYOUT#<withdrawal id>``, SK ``PAYOUT`` (outbox for the crypto gateway);
  GSI2 (still to send) ``PAYOUTS#requested`` / ``<requested_at>#<withdrawal id>``, removed once sent
- fx quote:    PK ``QUOTE#<id>``, SK ``QUOTE`` (``expires_at`` is the TTL: gone after expiry)
- webhook inbox: PK ``EVT#<provider>#<event id>``, SK ``EVT`` (each provider event used once)
- crypto deposit address: PK ``ADDR#<currency>#<address>``, SK ``ADDR`` (address -> owner)
- card deposit: PK ``DEPOSIT#<id>``, SK ``DEPOSIT`` (a Stripe PaymentIntent and its outcome)
- card refund: PK ``REFUND#<id>``, SK ``REFUND`` (a card deposit refund: hold, Stripe, outcome);
  GSI2 (still pending) ``REFUNDS#pending`` / ``<created_at>#<id>``, removed when it finishes
- card dispute: PK ``DISPUTE#<Stripe dispute id>``, SK ``DISPUTE`` (the held amount and outcome)
- user:        PK ``USER#<id>``, SK ``PROFILE``
- email claim: PK ``EMAIL#<lower-case email>``, SK ``EMAIL`` (makes emails unique)
- session:     PK ``USER#<id>``, SK ``SESSION#<id>`` (one login: its refresh token family)
- reset token: PK ``RESET#<sha256 of the token>``, SK ``RESET``
- email verification token: PK ``VERIFY#<sha256 of the token>``, SK ``VERIFY``
- mail outbox: PK ``OUTBOX#<shard>``, SK ``<at>#<id>`` (a mail to send, out of the request)
- mail count:  PK ``MAILS#<kind>#<lower-case email>#<yyyy-mm-ddThh>``, SK ``MAILS`` (an hour's
  mails of one kind to one address)
- throttle:    PK ``THROTTLE#<email|ip>#<value>``, SK ``THROTTLE``
- audit event: PK ``AUDIT#<yyyy-mm-dd>#<shard>``, SK ``<at>#<id>``
- audit digest: PK ``AUDITDIGEST#<yyyy-mm-dd>``, SK ``DIGEST`` (a day's events, hash-chained);
  the chain head: PK ``AUDITDIGEST#HEAD``, SK ``DIGEST`` (the last sealed day)
- user (admin list): GSI2 ``USERS`` / ``<lower-case email>#<user id>`` on the email claim (written
  once; the profile, with its secrets, stays out of the index)
- restore drill report: PK ``DRILL#<started at, yyyymmddThhmmssZ>``, SK ``DRILL``
- facility API key: PK ``APIKEY#<prefix>``, SK ``APIKEY`` (found by the secret's public prefix);
  GSI2 (a facility's keys, newest first) ``FACKEYS#<facility id>`` / ``<created_at>#<key id>``
- webhook event: PK ``WHEVT#<shard>``, SK ``<created_at>#<event id>`` (outbox: an event written
  with its money, waiting to be fanned out to the facility's endpoints; ``expires_at`` TTL)
- payment request: PK ``PAYREQ#<id>``, SK ``PAYREQ``; GSI2 (open requests by expiry)
  ``PAYREQS#open`` / ``<expires_at>#<id>``, removed when it leaves open (the expiry job's queue);
  copies for the lists, kept in the same writes: the payer's PK ``PAYER#<user id>``, the
  facility's PK ``FACPAYREQ#<facility id>``, each SK ``PAYREQ#<created_at>#<id>`` (newest first)
- webhook endpoint: PK ``WHEP#<facility id>``, SK ``WHEP#<endpoint id>`` (a facility's endpoints
  in one partition: listed, and found by id, only under the facility that owns them)
- webhook delivery: PK ``WHDLV#<delivery id>``, SK ``WHDLV`` (one event to one endpoint; the id
  is derived from both, so a fan-out run again writes nothing new);
  GSI2 (a facility's deliveries, newest first) ``WHDLVS#<facility id>`` / ``<created_at>#<id>``;
  GSI1 (due, only while pending) ``WHDUE#<shard>`` / ``<next attempt at>#<delivery id>``
- API key rate counter: PK ``RATE#<prefix>#<window start, epoch seconds>``, SK ``RATE`` (one
  minute's requests of one key; ``expires_at`` removes it a few minutes later)
- risk rules:  PK ``RISKRULES``, SK ``RULES`` (the one versioned rule set an admin replaces)
- risk counter: PK ``RISK#<user id>``, SK ``COUNTER`` (a user's last 24 h in hourly buckets and
  the recipients first paid, versioned; ``expires_at`` removes it after a quiet spell)
- risk review: PK ``REVIEW#<id>``, SK ``REVIEW`` (an operation held for an admin's decision);
  GSI2 (the review queue, newest first) ``REVIEWS`` / ``<created_at>#<id>``
- hold expiry: PK ``HOLDEXP#<shard>``, SK ``<expires_at>#<transaction id>`` (a hold's deadline
  and its owner, written with the hold; the sweeper reads the due ones by key range, marks them
  ``done``; ``expires_at`` (epoch) removes them 30 days after the deadline)
- payroll batch: PK ``PAYROLL#<id>``, SK ``PAYROLL`` (a facility's payout batch and its items);
  GSI2 (still processing, for the finisher) ``PAYROLLS#processing`` / ``<created_at>#<id>``,
  removed when the batch completes
- payroll listing: PK ``PAYROLLS#<facility id>``, SK ``<created_at>#<id>`` (a facility's batches,
  newest first; written with the batch, never changed; GSI1 stays accounts only)
- payroll item outcome: PK ``PAYROLL#<id>``, SK ``ITEM#<index:04d>`` (one payable item paid or
  failed, written once, with its money)

Entries sort by time *and* by ``seq`` (the write path keeps an account's entry times
non-decreasing), so a time filter is a key range and "entries after a checkpoint" is a key range.
The day index is sharded so that one day's writes do not all land on one GSI partition.
"""

from __future__ import annotations

import zlib

ACCOUNT_PREFIX = "ACCT#"
ACCOUNT_SK = "ACCT"
ENTRY_PREFIX = "E#"
TRANSACTION_PREFIX = "TXN#"
TRANSACTION_SK = "TXN"
OWNER_PREFIX = "OWNER#"
CURRENCY_PREFIX = "CUR#"
DAY_PREFIX = "TXDAY#"
DAY_INDEX_SHARDS = 4
SEQ_WIDTH = 12


def account_pk(account_id: str) -> str:
    return ACCOUNT_PREFIX + account_id


def account_id_from_pk(pk: str) -> str:
    if not pk.startswith(ACCOUNT_PREFIX):
        raise ValueError(f"not an account key: {pk!r}")
    return pk[len(ACCOUNT_PREFIX) :]


def entry_sk(created_at: str, seq: int) -> str:
    return f"{ENTRY_PREFIX}{created_at}#{seq:0{SEQ_WIDTH}d}"


def entry_time_bounds(since: str | None, until: str | None) -> tuple[str, str]:
    """Inclusive SK bounds for entries created in [since, until] (either side open)."""
    low = ENTRY_PREFIX + (since or "")
    # "~" sorts after every character used in timestamps and seq numbers.
    high = ENTRY_PREFIX + (until + "#~" if until else "~")
    return low, high


def owner_gsi_pk(owner_type: str, owner_id: str) -> str:
    return f"{OWNER_PREFIX}{owner_type}#{owner_id}"


def owner_gsi_sk(currency: str) -> str:
    return CURRENCY_PREFIX + currency


def transaction_pk(transaction_id: str) -> str:
    return TRANSACTION_PREFIX + transaction_id


def day_index_pk(created_at: str, transaction_id: str) -> str:
    shard = zlib.crc32(transaction_id.encode()) % DAY_INDEX_SHARDS
    return f"{DAY_PREFIX}{created_at[:10]}#{shard}"


def day_index_pks(day: str) -> list[str]:
    """All GSI2 partitions holding the transactions created on ``day`` (YYYY-MM-DD)."""
    return [f"{DAY_PREFIX}{day}#{shard}" for shard in range(DAY_INDEX_SHARDS)]


def day_index_sk(created_at: str, transaction_id: str) -> str:
    return f"{created_at}#{transaction_id}"


USER_PREFIX = "USER#"
PROFILE_SK = "PROFILE"
EMAIL_PREFIX = "EMAIL#"
EMAIL_SK = "EMAIL"
SESSION_PREFIX = "SESSION#"
RESET_PREFIX = "RESET#"
RESET_SK = "RESET"
THROTTLE_PREFIX = "THROTTLE#"
THROTTLE_SK = "THROTTLE"
AUDIT_PREFIX = "AUDIT#"
AUDIT_SHARDS = 4


def user_pk(user_id: str) -> str:
    return USER_PREFIX + user_id


def email_pk(email: str) -> str:
    """Emails compare case-insensitively: the claim is keyed by the lower-case form."""
    return EMAIL_PREFIX + email.lower()


def session_sk(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def reset_pk(token_hash: str) -> str:
    return RESET_PREFIX + token_hash


VERIFY_PREFIX = "VERIFY#"
VERIFY_SK = "VERIFY"
OUTBOX_PREFIX = "OUTBOX#"
OUTBOX_SHARDS = 4
MAILS_PREFIX = "MAILS#"
MAILS_SK = "MAILS"


def verify_pk(token_hash: str) -> str:
    return VERIFY_PREFIX + token_hash


WEBHOOK_EVENT_PREFIX = "WHEVT#"
WEBHOOK_EVENT_SHARDS = 4


def webhook_event_pk(shard: int) -> str:
    return f"{WEBHOOK_EVENT_PREFIX}{shard}"


def webhook_event_sk(at: str, event_id: str) -> str:
    return f"{at}#{event_id}"


WEBHOOK_PARKED_EVENT_PK = "WHEVPARKED#"


def webhook_event_shard(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % WEBHOOK_EVENT_SHARDS


WEBHOOK_ENDPOINT_PREFIX = "WHEP#"
WEBHOOK_ENDPOINT_COUNT_SK = "WHEPCOUNT"  # not under WEBHOOK_ENDPOINT_PREFIX: not an endpoint
WEBHOOK_DELIVERY_PREFIX = "WHDLV#"
WEBHOOK_DELIVERY_SK = "WHDLV"
WEBHOOK_DELIVERIES_GSI_PREFIX = "WHDLVS#"
WEBHOOK_DUE_PREFIX = "WHDUE#"
WEBHOOK_DUE_SHARDS = 4


def webhook_endpoint_pk(facility_id: str) -> str:
    return WEBHOOK_ENDPOINT_PREFIX + facility_id


def webhook_endpoint_sk(endpoint_id: str) -> str:
    return WEBHOOK_ENDPOINT_PREFIX + endpoint_id


def webhook_delivery_pk(delivery_id: str) -> str:
    return WEBHOOK_DELIVERY_PREFIX + delivery_id


def webhook_delivery_id_from_pk(pk: str) -> str:
    if not pk.startswith(WEBHOOK_DELIVERY_PREFIX):
        raise ValueError(f"not a webhook delivery key: {pk!r}")
    return pk[len(WEBHOOK_DELIVERY_PREFIX) :]


def webhook_deliveries_gsi_pk(facility_id: str) -> str:
    return WEBHOOK_DELIVERIES_GSI_PREFIX + facility_id


def webhook_deliveries_gsi_sk(created_at: str, delivery_id: str) -> str:
    return f"{created_at}#{delivery_id}"


def webhook_due_pk(delivery_id: str) -> str:
    return f"{WEBHOOK_DUE_PREFIX}{zlib.crc32(delivery_id.encode()) % WEBHOOK_DUE_SHARDS}"


def webhook_due_pks() -> list[str]:
    return [f"{WEBHOOK_DUE_PREFIX}{shard}" for shard in range(WEBHOOK_DUE_SHARDS)]


def webhook_due_sk(next_attempt_at: str, delivery_id: str) -> str:
    return f"{next_attempt_at}#{delivery_id}"


def webhook_due_until(now: str) -> str:
    """The highest due-index sort key of a delivery due at ``now`` ("~" sorts after ids)."""
    return f"{now}#~"


def outbox_pk(shard: int) -> str:
    return f"{OUTBOX_PREFIX}{shard}"


def outbox_sk(at: str, message_id: str) -> str:
    return f"{at}#{message_id}"


def outbox_shard(message_id: str) -> int:
    return zlib.crc32(message_id.encode()) % OUTBOX_SHARDS


def mails_pk(kind: str, email: str, hour: str) -> str:
    return f"{MAILS_PREFIX}{kind}#{email.lower()}#{hour}"


def throttle_pk(kind: str, value: str) -> str:
    return f"{THROTTLE_PREFIX}{kind}#{value.lower()}"


def audit_pk(at: str, event_id: str) -> str:
    shard = zlib.crc32(event_id.encode()) % AUDIT_SHARDS
    return f"{AUDIT_PREFIX}{at[:10]}#{shard}"


def audit_sk(at: str, event_id: str) -> str:
    return f"{at}#{event_id}"


TIMELINE_PREFIX = "TXN#"


def timeline_pk(owner_type: str, owner_id: str) -> str:
    return f"{OWNER_PREFIX}{owner_type}#{owner_id}"


def timeline_sk(created_at: str, transaction_id: str) -> str:
    return f"{TIMELINE_PREFIX}{created_at}#{transaction_id}"


def timeline_time_bounds(since: str | None, until: str | None) -> tuple[str, str]:
    """Inclusive SK bounds for timeline items created in [since, until] (either side open)."""
    low = TIMELINE_PREFIX + (since or "")
    high = TIMELINE_PREFIX + (until + "#~" if until else "~")
    return low, high


IDEMPOTENCY_PREFIX = "IDEM#"
IDEMPOTENCY_SK = "IDEM"
FACILITIES_PK = "FACILITIES"
FACILITY_PREFIX = "FAC#"


def idempotency_pk(idempotency_key: str) -> str:
    return IDEMPOTENCY_PREFIX + idempotency_key


def facility_sk(facility_id: str) -> str:
    return FACILITY_PREFIX + facility_id


MONITORS_PK = "MONITORS"
MONITOR_PREFIX = "MON#"


def monitor_sk(monitor_id: str) -> str:
    return MONITOR_PREFIX + monitor_id


WITHDRAWAL_PREFIX = "WITHDRAWAL#"
WITHDRAWAL_SK = "WITHDRAWAL"
WITHDRAWALS_GSI_PK = "WITHDRAWALS"
WITHDRAWAL_LIMIT_SK = "WDLIMIT"
PAYOUT_SK = "PAYOUT"


def withdrawal_pk(withdrawal_id: str) -> str:
    return WITHDRAWAL_PREFIX + withdrawal_id


def withdrawals_gsi_sk(created_at: str, withdrawal_id: str) -> str:
    return f"{created_at}#{withdrawal_id}"


ADJUSTMENT_PREFIX = "ADJUSTMENT#"
ADJUSTMENT_SK = "ADJUSTMENT"


def adjustment_pk(adjustment_id: str) -> str:
    return ADJUSTMENT_PREFIX + adjustment_id


def withdrawal_limit_pk(user_id: str, currency: str, day: str) -> str:
    return f"WDLIMIT#{user_id}#{currency}#{day}"


def payout_pk(withdrawal_id: str) -> str:
    return f"PAYOUT#{withdrawal_id}"


PAYOUTS_REQUESTED_GSI_PK = "PAYOUTS#requested"


def payouts_requested_gsi_sk(requested_at: str, withdrawal_id: str) -> str:
    return f"{requested_at}#{withdrawal_id}"


QUOTE_PREFIX = "QUOTE#"
QUOTE_SK = "QUOTE"


def quote_pk(quote_id: str) -> str:
    """An fx quote: PK ``QUOTE#<id>``, SK ``QUOTE`` (expires with the table's TTL)."""
    return QUOTE_PREFIX + quote_id


INBOX_PREFIX = "EVT#"
INBOX_SK = "EVT"
CRYPTO_ADDRESS_PREFIX = "ADDR#"
CRYPTO_ADDRESS_SK = "ADDR"


def inbox_pk(provider: str, event_id: str) -> str:
    """A provider's webhook event, written once: ``EVT#<provider>#<event id>``."""
    return f"{INBOX_PREFIX}{provider}#{event_id}"


def crypto_address_pk(currency: str, address: str) -> str:
    """A deposit address and its owner: ``ADDR#<currency>#<address>``."""
    return f"{CRYPTO_ADDRESS_PREFIX}{currency}#{address}"


DEPOSIT_PREFIX = "DEPOSIT#"
DEPOSIT_SK = "DEPOSIT"


def deposit_pk(deposit_id: str) -> str:
    """A card deposit: ``DEPOSIT#<id>``."""
    return DEPOSIT_PREFIX + deposit_id


REFUND_PREFIX = "REFUND#"
REFUND_SK = "REFUND"
DISPUTE_PREFIX = "DISPUTE#"
DISPUTE_SK = "DISPUTE"


def refund_pk(refund_id: str) -> str:
    """A refund of a card deposit: ``REFUND#<id>``."""
    return REFUND_PREFIX + refund_id


def dispute_pk(dispute_id: str) -> str:
    """A Stripe dispute (chargeback) of a card deposit: ``DISPUTE#<Stripe dispute id>``."""
    return DISPUTE_PREFIX + dispute_id


DRILL_PREFIX = "DRILL#"
DRILL_SK = "DRILL"


def drill_pk(drill_id: str) -> str:
    """A restore drill's report: ``DRILL#<drill id>`` (its start time, ``yyyymmddThhmmssZ``)."""
    return DRILL_PREFIX + drill_id


# One index partition for all users: listing by email is then one key range. GSI2 projects every
# attribute, so each user update (e.g. a TOTP login) writes this partition too; fine for
# operator-scale sign-ups and logins (a partition takes ~1000 writes/s), shard it if that grows.
USERS_GSI_PK = "USERS"
# Above every character an email can hold: the high end of a prefix's key range.
_KEY_RANGE_END = "\U0010ffff"


def users_gsi_sk(email: str, user_id: str) -> str:
    """A user's place in the admin list: sorted by lower-case email, so an email filter is a
    prefix, i.e. a key range."""
    return f"{email.lower()}#{user_id}"


def users_gsi_bounds(email_prefix: str) -> tuple[str, str]:
    """Inclusive GSI2 sort key bounds of the users whose lower-case email starts with the prefix."""
    low = email_prefix.lower()
    return low, low + _KEY_RANGE_END


AUDIT_DIGEST_PREFIX = "AUDITDIGEST#"
AUDIT_DIGEST_SK = "DIGEST"
AUDIT_DIGEST_HEAD_PK = "AUDITDIGEST#HEAD"


def audit_day_pks(day: str) -> list[str]:
    """All partitions holding the audit events of ``day`` (YYYY-MM-DD)."""
    return [f"{AUDIT_PREFIX}{day}#{shard}" for shard in range(AUDIT_SHARDS)]


def audit_time_bounds(since: str | None, until: str | None) -> tuple[str, str]:
    """Inclusive SK bounds, within one day's partitions, for events at [since, until]."""
    return since or "", (until + "#~") if until else "~"


def audit_digest_pk(day: str) -> str:
    """The digest of one day's audit events: ``AUDITDIGEST#<yyyy-mm-dd>``."""
    return AUDIT_DIGEST_PREFIX + day


RECON_PREFIX = "RECON#"
RECON_REPORT_SK = "REPORT"
RECON_RUN_SK = "RUN"  # the day's latest run started on demand: running, or how it ended


def recon_pk(day: str) -> str:
    """A reconciliation report of one UTC day: ``RECON#<yyyy-mm-dd>``, SK ``REPORT``."""
    return RECON_PREFIX + day


CHECKPOINT_PREFIX = "CKPT#"


def checkpoint_pk(account_id: str) -> str:
    """An account's reconciliation checkpoints: ``CKPT#<account id>``, one item per day. Kept out
    of the ``ACCT#`` partition so the functions' IAM policy can allow deletes (a rerun replaces a
    day's checkpoints) on ``CKPT#`` keys only, never on accounts, entries or transactions."""
    return CHECKPOINT_PREFIX + account_id


def recon_checkpoint_sk(day: str) -> str:
    """An account's reconciliation checkpoint at the end of ``day``: PK ``ACCT#<id>``, SK
    ``RECON#<yyyy-mm-dd>``, in the account's ``CKPT#`` partition."""
    return RECON_PREFIX + day


PENDING_REFUNDS_GSI_PK = "REFUNDS#pending"


def pending_refunds_gsi_sk(created_at: str, refund_id: str) -> str:
    """A refund still pending, oldest first (GSI2, removed when it finishes)."""
    return f"{created_at}#{refund_id}"


API_KEY_PREFIX = "APIKEY#"
API_KEY_SK = "APIKEY"
FACILITY_KEYS_GSI_PREFIX = "FACKEYS#"
RATE_PREFIX = "RATE#"
RATE_SK = "RATE"


def api_key_pk(prefix: str) -> str:
    return API_KEY_PREFIX + prefix


def facility_keys_gsi_pk(facility_id: str) -> str:
    return FACILITY_KEYS_GSI_PREFIX + facility_id


def facility_keys_gsi_sk(created_at: str, key_id: str) -> str:
    return f"{created_at}#{key_id}"


def rate_pk(prefix: str, window_start: int) -> str:
    return f"{RATE_PREFIX}{prefix}#{window_start}"


PAYMENT_REQUEST_PREFIX = "PAYREQ#"
PAYMENT_REQUEST_SK = "PAYREQ"
OPEN_PAYMENT_REQUESTS_GSI_PK = "PAYREQS#open"
PAYER_PREFIX = "PAYER#"
FACILITY_PAYMENT_REQUESTS_PREFIX = "FACPAYREQ#"


def payment_request_pk(request_id: str) -> str:
    return PAYMENT_REQUEST_PREFIX + request_id


def open_payment_requests_gsi_sk(expires_at: str, request_id: str) -> str:
    """An open request's place in the expiry queue: soonest to expire first."""
    return f"{expires_at}#{request_id}"


def payer_requests_pk(user_id: str) -> str:
    return PAYER_PREFIX + user_id


def facility_requests_pk(facility_id: str) -> str:
    return FACILITY_PAYMENT_REQUESTS_PREFIX + facility_id


def listed_request_sk(created_at: str, request_id: str) -> str:
    """A request in its payer's and its facility's lists, by creation time."""
    return f"{PAYMENT_REQUEST_PREFIX}{created_at}#{request_id}"


def listed_request_bounds(since: str | None = None, until: str | None = None) -> tuple[str, str]:
    """Inclusive SK bounds of the listed requests of one payer or facility created from
    ``since`` to ``until`` (canonical ISO instants, both inclusive; None: no bound)."""
    low = PAYMENT_REQUEST_PREFIX + (since or "")
    high = PAYMENT_REQUEST_PREFIX + (f"{until}#~" if until else "~")
    return low, high


RISK_RULES_PK = "RISKRULES"
RISK_RULES_SK = "RULES"
RISK_COUNTER_PREFIX = "RISK#"
RISK_COUNTER_SK = "COUNTER"
REVIEW_PREFIX = "REVIEW#"
REVIEW_SK = "REVIEW"
REVIEWS_GSI_PK = "REVIEWS"


def risk_counter_pk(user_id: str) -> str:
    return RISK_COUNTER_PREFIX + user_id


def review_pk(review_id: str) -> str:
    return REVIEW_PREFIX + review_id


def reviews_gsi_sk(created_at: str, review_id: str) -> str:
    """A review's place in the queue: by creation time, then id."""
    return f"{created_at}#{review_id}"


HOLD_EXPIRY_PREFIX = "HOLDEXP#"
HOLD_EXPIRY_SHARDS = 4


def hold_expiry_pk(transaction_id: str) -> str:
    return f"{HOLD_EXPIRY_PREFIX}{zlib.crc32(transaction_id.encode()) % HOLD_EXPIRY_SHARDS}"


def hold_expiry_pks() -> list[str]:
    return [f"{HOLD_EXPIRY_PREFIX}{shard}" for shard in range(HOLD_EXPIRY_SHARDS)]


def hold_expiry_sk(expires_at: str, transaction_id: str) -> str:
    return f"{expires_at}#{transaction_id}"


def hold_expiry_due_bound(now: str) -> str:
    """The highest sort key of a hold whose deadline is at or before ``now``."""
    return now + "#~"


PAYROLL_PREFIX = "PAYROLL#"
PAYROLL_SK = "PAYROLL"
PAYROLL_ITEM_PREFIX = "ITEM#"
PAYROLLS_OF_FACILITY_PREFIX = "PAYROLLS#"
PAYROLLS_PROCESSING_GSI_PK = "PAYROLLS#processing"


def payroll_pk(payroll_id: str) -> str:
    return PAYROLL_PREFIX + payroll_id


def payroll_item_sk(index: int) -> str:
    return f"{PAYROLL_ITEM_PREFIX}{index:04d}"


def payroll_item_index(sk: str) -> int:
    if not sk.startswith(PAYROLL_ITEM_PREFIX):
        raise ValueError(f"not a payroll item key: {sk!r}")
    return int(sk[len(PAYROLL_ITEM_PREFIX) :])


def payrolls_of_facility_pk(facility_id: str) -> str:
    """A facility's payroll listing partition (one small item per batch)."""
    return PAYROLLS_OF_FACILITY_PREFIX + facility_id


def payroll_order_key(created_at: str, payroll_id: str) -> str:
    """A batch's place in its facility's listing (SK) and in the processing queue (GSI2SK)."""
    return f"{created_at}#{payroll_id}"


def payroll_id_from_order_key(key: str) -> str:
    return key.rsplit("#", 1)[1]
