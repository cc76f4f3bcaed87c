"""Accounts: who owns them, what they hold, and how platform accounts are sharded.

Accounting equation kept by the ledger (per currency)::

    sum(posted over every account) == 0
    available = posted - pending_out

User and facility accounts are *overdraft-forbidden*: their ``available`` never goes below zero,
except through a forced reversal, which marks the account ``forced_negative``. Platform accounts
(Stripe clearing, crypto custody, FX pools, fees) are the other side of money entering and
leaving; they go negative by design and are split into shards so that no single item is written
by every transaction. A platform account's balance is the sum of its shards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.money import currency


class OwnerType(StrEnum):
    USER = "user"
    FACILITY = "facility"
    PLATFORM = "platform"


class PlatformKind(StrEnum):
    STRIPE_CLEARING = "stripe_clearing"
    CRYPTO_CUSTODY = "crypto_custody"
    FX_POOL = "fx_pool"
    FEES = "fees"
    ADJUSTMENTS = "adjustments"  # the other side of operators' adjustments
    PAYROLL = "payroll"  # transit of a facility's payroll batch: zero once each batch completes


PLATFORM_PREFIX = "plat"


@dataclass(frozen=True)
class PlatformAccount:
    """A logical platform account; transactions post to one of its shards."""

    kind: PlatformKind
    currency: str

    def shard_id(self, shard: int) -> str:
        return f"{PLATFORM_PREFIX}_{self.kind.value}_{self.currency}_{shard:02d}"

    def shard_ids(self, shards: int) -> list[str]:
        return [self.shard_id(i) for i in range(shards)]


def parse_platform_shard(account_id: str) -> tuple[PlatformAccount, int] | None:
    """The logical platform account and shard number of a shard id, or None for other ids."""
    if not account_id.startswith(PLATFORM_PREFIX + "_"):
        return None
    body = account_id[len(PLATFORM_PREFIX) + 1 :]
    try:
        kind_name, code, shard = body.rsplit("_", 2)
        return PlatformAccount(PlatformKind(kind_name), currency(code).code), int(shard)
    except (ValueError, LookupError):
        return None


def wallet_id(owner_type: OwnerType, owner_id: str, code: str) -> str:
    """The id of an owner's account in one currency, derived rather than looked up: a payment
    to a user or facility needs no query to find the account (and an unknown owner has none)."""
    material = f"wallet\x1f{owner_type.value}\x1f{owner_id}\x1f{code}".encode()
    return "acct_" + hashlib.sha256(material).hexdigest()[:24]


def logical_account_id(account_id: str) -> str:
    """The id without its shard number for a platform shard; other ids unchanged."""
    parsed = parse_platform_shard(account_id)
    if parsed is None:
        return account_id
    platform, _ = parsed
    return f"{PLATFORM_PREFIX}_{platform.kind.value}_{platform.currency}"


@dataclass(frozen=True)
class Account:
    """One balance in one currency. ``version`` changes on every write; ``last_seq`` on every
    history entry (holds change the version but write no entry)."""

    id: str
    currency: str
    owner_type: OwnerType
    owner_id: str
    overdraft_forbidden: bool
    posted: int = 0
    pending_out: int = 0
    pending_in: int = 0
    version: int = 0
    last_seq: int = 0
    last_entry_at: str | None = None
    forced_negative: bool = False
    created_at: str | None = None
    stored: bool = True

    @property
    def available(self) -> int:
        return self.posted - self.pending_out

    @property
    def is_new(self) -> bool:
        """True for an account not yet written (a platform shard before its first use)."""
        return not self.stored

    @classmethod
    def open(
        cls, account_id: str, code: str, owner_type: OwnerType, owner_id: str, now: str
    ) -> Account:
        """A new, empty account; user and facility accounts may not be overdrawn."""
        return cls(
            id=account_id,
            currency=currency(code).code,
            owner_type=owner_type,
            owner_id=owner_id,
            overdraft_forbidden=owner_type is not OwnerType.PLATFORM,
            created_at=now,
            stored=False,
        )

    @classmethod
    def platform_shard(cls, account_id: str) -> Account:
        """The never-written state of a platform shard (created by its first transaction)."""
        parsed = parse_platform_shard(account_id)
        if parsed is None:
            raise ValueError(f"{account_id} is not a platform shard id")
        platform, _ = parsed
        return cls(
            id=account_id,
            currency=platform.currency,
            owner_type=OwnerType.PLATFORM,
            owner_id=platform.kind.value,
            overdraft_forbidden=False,
            stored=False,
        )

    def evolve(self, **changes: object) -> Account:
        return replace(self, **changes)
