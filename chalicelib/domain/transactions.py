"""Transactions, postings, history entries, and the pure rules that move balances.

Guarantees enforced here (and again by the DynamoDB write, see adapters/dynamo):

* Balanced: for each currency, ``sum(p.amount for p in postings) == 0``.
* No overdraft: an overdraft-forbidden account's ``available`` never drops below zero, unless the
  operation is a forced reversal, which marks the account ``forced_negative``.
* Holds: a pending transaction moves ``pending_out`` / ``pending_in`` only; posting it moves
  ``posted`` and writes entries; voiding it releases the pending amounts. Either happens once.
* Consistent history: every change to ``posted`` writes one entry with ``seq = last_seq + 1`` and
  ``balance_after`` equal to the new ``posted``.
* Reversals: opposite postings, only of posted non-reversal transactions, at most once.

A sign convention: a negative posting takes money out of an account (a debit of its balance), a
positive one puts money in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from chalicelib.domain.accounts import Account, logical_account_id
from chalicelib.domain.errors import (
    AlreadyReversed,
    CurrencyMismatch,
    DuplicateAccountInPostings,
    HoldNotPending,
    InsufficientFunds,
    NotReversible,
    PostingAmountZero,
    PostingsEmpty,
    PostingsUnbalanced,
    TooManyPostings,
)
from chalicelib.domain.money import currency

# One posting costs two items of a TransactWriteItems call (account + entry), plus the
# transaction item, a link and a few service items; DynamoDB allows 100.
MAX_POSTINGS = 40


class TransactionType(StrEnum):
    TRANSFER = "transfer"
    PAYMENT = "payment"
    DEPOSIT = "deposit"
    SWAP = "swap"
    WITHDRAWAL = "withdrawal"
    REFUND = "refund"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"


class TransactionStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class Effect(StrEnum):
    """How a set of postings changes balances."""

    POST = "post"  # posted moves now
    HOLD = "hold"  # pending moves now, posted later
    SETTLE = "settle"  # a hold becomes posted
    RELEASE = "release"  # a hold is voided


@dataclass(frozen=True)
class Posting:
    account_id: str
    currency: str
    amount: int


@dataclass(frozen=True)
class Transaction:
    id: str
    type: TransactionType
    status: TransactionStatus
    postings: tuple[Posting, ...]
    created_at: str
    memo: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    reverses: str | None = None
    reversed_by: str | None = None
    forced: bool = False
    resolved_at: str | None = None

    def same_request_as(self, other: Transaction) -> bool:
        """True when ``other`` asks for what this transaction already did (an idempotent replay)."""
        return (
            self.type == other.type
            and sorted(map(_posting_key, self.postings))
            == sorted(map(_posting_key, other.postings))
            and self.reverses == other.reverses
        )


def _posting_key(p: Posting) -> tuple[str, str, int]:
    # A replay may pick another shard of the same platform account; that is the same request.
    return (p.currency, logical_account_id(p.account_id), p.amount)


@dataclass(frozen=True)
class Entry:
    """One line of an account's history, written when its ``posted`` balance changes."""

    account_id: str
    seq: int
    transaction_id: str
    type: TransactionType
    amount: int
    balance_after: int
    created_at: str
    memo: str = ""


@dataclass(frozen=True)
class AccountChange:
    """An account before and after a transaction."""

    before: Account
    after: Account

    @property
    def available_drop(self) -> int:
        """How much ``available`` falls (0 if it does not): what the stored one must cover."""
        return max(self.before.available - self.after.available, 0)


@dataclass(frozen=True)
class Plan:
    """Everything one atomic write has to do."""

    transaction: Transaction
    changes: tuple[AccountChange, ...]
    entries: tuple[Entry, ...]
    is_new_transaction: bool
    links_reversal_of: Transaction | None = None


def derive_transaction_id(scope: str, *parts: str) -> str:
    """A transaction id determined by what makes an operation unique.

    The same operation (same scope and parts, e.g. ``("deposit", payment_intent_id)``) always
    yields the same id, so writing it with ``attribute_not_exists`` moves money at most once.
    """
    material = "\x1f".join((scope, *parts)).encode()
    return "txn_" + hashlib.sha256(material).hexdigest()[:32]


def validate_postings(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """Check a transaction's shape before any I/O.

    Raises (in order of precedence):
        PostingsEmpty, TooManyPostings, UnsupportedCurrency, PostingAmountZero,
        DuplicateAccountInPostings, PostingsUnbalanced.
    """
    postings = tuple(postings)
    if len(postings) < 2:
        raise PostingsEmpty("a transaction needs at least two postings")
    if len(postings) > MAX_POSTINGS:
        raise TooManyPostings(f"at most {MAX_POSTINGS} postings per transaction")
    sums: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for p in postings:
        currency(p.currency)
        if not isinstance(p.amount, int) or isinstance(p.amount, bool):
            raise TypeError("posting amounts are int minor units")
        if p.amount == 0:
            raise PostingAmountZero(f"posting to {p.account_id} moves zero")
        if p.account_id in seen:
            raise DuplicateAccountInPostings(f"account {p.account_id} appears twice")
        seen.add(p.account_id)
        sums[p.currency] += p.amount
    unbalanced = {code: total for code, total in sums.items() if total != 0}
    if unbalanced:
        raise PostingsUnbalanced(f"postings do not sum to zero: {unbalanced}")
    return postings


def _apply(
    account: Account,
    posting: Posting,
    effect: Effect,
    transaction: Transaction,
    now: str,
    allow_overdraft: bool,
) -> tuple[AccountChange, Entry | None]:
    if posting.currency != account.currency:
        raise CurrencyMismatch(
            f"posting in {posting.currency} to {account.id}, a {account.currency} account"
        )
    amount = posting.amount
    out, inc = max(-amount, 0), max(amount, 0)
    posted, pending_out, pending_in = account.posted, account.pending_out, account.pending_in
    if effect is Effect.POST:
        posted += amount
    elif effect is Effect.HOLD:
        pending_out += out
        pending_in += inc
    elif effect is Effect.SETTLE:
        posted += amount
        pending_out -= out
        pending_in -= inc
    else:  # RELEASE
        pending_out -= out
        pending_in -= inc

    reduces_available = effect in (Effect.POST, Effect.HOLD) and out > 0
    forced = account.forced_negative
    if account.overdraft_forbidden and reduces_available and posted - pending_out < 0:
        if not allow_overdraft:
            raise InsufficientFunds(account.id)
        forced = True

    entry = None
    last_seq, last_entry_at = account.last_seq, account.last_entry_at
    if posted != account.posted:
        # Entries of one account are ordered by time as well as by seq, even across clock skew.
        created_at = max(now, last_entry_at) if last_entry_at else now
        last_seq, last_entry_at = last_seq + 1, created_at
        entry = Entry(
            account_id=account.id,
            seq=last_seq,
            transaction_id=transaction.id,
            type=transaction.type,
            amount=amount,
            balance_after=posted,
            created_at=created_at,
            memo=transaction.memo,
        )
    after = account.evolve(
        posted=posted,
        pending_out=pending_out,
        pending_in=pending_in,
        version=account.version + 1,
        last_seq=last_seq,
        last_entry_at=last_entry_at,
        forced_negative=forced,
        created_at=account.created_at or now,
    )
    return AccountChange(before=account, after=after), entry


def _plan(
    transaction: Transaction,
    accounts: Mapping[str, Account],
    effect: Effect,
    now: str,
    *,
    allow_overdraft: bool = False,
    is_new_transaction: bool,
    links_reversal_of: Transaction | None = None,
) -> Plan:
    changes: list[AccountChange] = []
    entries: list[Entry] = []
    for posting in transaction.postings:
        change, entry = _apply(
            accounts[posting.account_id], posting, effect, transaction, now, allow_overdraft
        )
        changes.append(change)
        if entry is not None:
            entries.append(entry)
    # Forced: some account was overdrawn by this very change (so DynamoDB's own overdraft check
    # must be skipped for it), whether or not it was flagged by an earlier forced reversal.
    forced = any(
        c.after.overdraft_forbidden
        and c.after.available < 0
        and c.after.available < c.before.available
        for c in changes
    )
    if forced:
        transaction = replace(transaction, forced=True)
    return Plan(
        transaction=transaction,
        changes=tuple(changes),
        entries=tuple(entries),
        is_new_transaction=is_new_transaction,
        links_reversal_of=links_reversal_of,
    )


def plan_new(transaction: Transaction, accounts: Mapping[str, Account], now: str) -> Plan:
    """Record a new transaction: posted at once, or held when its status is pending."""
    validate_postings(transaction.postings)
    effect = Effect.HOLD if transaction.status is TransactionStatus.PENDING else Effect.POST
    return _plan(transaction, accounts, effect, now, is_new_transaction=True)


def plan_resolve_hold(
    hold: Transaction, accounts: Mapping[str, Account], now: str, *, post: bool
) -> Plan:
    """Post (``post=True``) or void a pending transaction.

    Raises:
        HoldNotPending: the transaction is already posted or voided.
    """
    if hold.status is not TransactionStatus.PENDING:
        raise HoldNotPending(hold.id, hold.status.value)
    resolved = replace(
        hold,
        status=TransactionStatus.POSTED if post else TransactionStatus.VOIDED,
        resolved_at=now,
    )
    effect = Effect.SETTLE if post else Effect.RELEASE
    return _plan(resolved, accounts, effect, now, is_new_transaction=False)


def settled_with_provider(transaction: Transaction) -> str | None:
    """Why an operator may not roll ``transaction`` back, if it moved money with a provider that
    a ledger reversal cannot call back (a rollback would pay the user twice): a card refund, a
    withdrawal (posted once the payout completed), a card dispute's hold or loss. None otherwise.
    Correct those with an adjustment. (A card deposit with a refund or dispute is refused by its
    deposit item, in the rollback's own write.)"""
    if transaction.type is TransactionType.REFUND:
        return "a card refund Stripe has made"
    if transaction.type is TransactionType.WITHDRAWAL:
        return "a withdrawal paid out on chain"
    if "dispute_id" in transaction.metadata:
        return "a card dispute's outcome"
    if "payroll_id" in transaction.metadata:
        # Not a provider's, but settled with a batch the same way: reversing one leg would leave
        # the money in the payroll transit account while the batch says paid (domain/payroll.py).
        return "a leg of a payroll payout batch"
    return None


def reversal_of(
    original: Transaction, reversal_id: str, now: str, memo: str, metadata: Mapping[str, str]
) -> Transaction:
    """The reversal transaction of ``original``: the same postings with opposite signs.

    Raises:
        NotReversible: ``original`` is pending, voided, or itself a reversal.
        AlreadyReversed: ``original`` already has a reversal.
    """
    if original.type is TransactionType.REVERSAL:
        raise NotReversible(f"{original.id} is a reversal; it cannot be reversed")
    if original.status is not TransactionStatus.POSTED:
        raise NotReversible(f"{original.id} is {original.status.value}; only posted ones reverse")
    if original.reversed_by is not None:
        raise AlreadyReversed(f"{original.id} was already reversed by {original.reversed_by}")
    return Transaction(
        id=reversal_id,
        type=TransactionType.REVERSAL,
        status=TransactionStatus.POSTED,
        postings=tuple(replace(p, amount=-p.amount) for p in original.postings),
        created_at=now,
        memo=memo,
        metadata=dict(metadata),
        reverses=original.id,
    )


def plan_reversal(
    original: Transaction,
    reversal: Transaction,
    accounts: Mapping[str, Account],
    now: str,
    *,
    allow_overdraft: bool,
) -> Plan:
    """Post ``reversal`` and link it to ``original`` (both ways) in the same write."""
    return _plan(
        reversal,
        accounts,
        Effect.POST,
        now,
        allow_overdraft=allow_overdraft,
        is_new_transaction=True,
        links_reversal_of=original,
    )
