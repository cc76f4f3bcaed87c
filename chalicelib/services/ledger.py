"""The ledger engine: records transactions, holds, posts, voids and reversals, exactly once.

Write path (DESIGN.md, "Write path"): one strongly consistent BatchGetItem of the accounts and
the transaction id, the domain computes the new balances and entries, one conditional
TransactWriteItems commits them. If another writer changed an account in between, DynamoDB
refuses the write (``VersionConflict``); the engine re-reads and tries again after a jittered
back-off, a bounded number of times. Uncontended, a transfer costs two round trips.

Exactly once: the caller names the transaction id (``derive_transaction_id``), so a retried
request finds its own transaction already written and gets it back instead of moving money again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.accounts import Account, PlatformAccount, parse_platform_shard
from chalicelib.domain.errors import (
    AccountNotFound,
    InsufficientFunds,
    TransactionAlreadyExists,
    TransactionExistsWithDifferentFields,
    TransactionNotFound,
    VersionConflict,
)
from chalicelib.domain.transactions import (
    Plan,
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
    derive_transaction_id,
    plan_new,
    plan_resolve_hold,
    plan_reversal,
    reversal_of,
    validate_postings,
)
from chalicelib.domain.users import AuditEvent


class SideWrite(Protocol):
    """A write an adapter prepared to go in the same transaction as the money (an inbox record,
    a lifecycle's status change, an audit event); opaque to services, which only pass it on.
    ``adapters.dynamo.ledger_repository.ExtraWrite`` is the one kind there is."""


class LedgerRepository(Protocol):
    def read(self, account_ids: Iterable[str], transaction_ids: Iterable[str] = ()): ...
    def commit(self, plan: Plan, extra: Sequence[SideWrite] = ()) -> None: ...
    def audit(self, event: AuditEvent) -> SideWrite:
        """An audit event as part of the write of the action it records, append-only."""
        ...

    def open_accounts(
        self, accounts: Sequence[Account], extra: Sequence[SideWrite] = ()
    ) -> None: ...


@dataclass(frozen=True)
class PostingRequest:
    """Money into (positive) or out of (negative) an account, or a logical platform account."""

    account: str | PlatformAccount
    currency: str
    amount: int


@dataclass(frozen=True)
class Recorded:
    transaction: Transaction
    created: bool  # False: the same operation was recorded before; nothing moved now


@dataclass
class LedgerService:
    repository: LedgerRepository
    platform_shards: int = 8
    max_attempts: int = 8
    clock: Callable[[], str] = now_iso
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    backoff_base: float = 0.01
    backoff_cap: float = 0.25

    # -- accounts -------------------------------------------------------------------------------
    def open_accounts(self, accounts: Sequence[Account], extra: Sequence[SideWrite] = ()) -> None:
        self.repository.open_accounts(accounts, extra)

    def platform_balance(self, platform: PlatformAccount) -> int:
        shards = self.repository.read(platform.shard_ids(self.platform_shards)).accounts
        return sum(a.posted for a in shards.values())

    # -- transactions ---------------------------------------------------------------------------
    def record(
        self,
        *,
        transaction_id: str,
        type: TransactionType,
        postings: Sequence[PostingRequest],
        memo: str = "",
        metadata: Mapping[str, str] | None = None,
        pending: bool = False,
        extra: Sequence[SideWrite] = (),
        extra_for: Callable[[Transaction], Sequence[SideWrite]] | None = None,
    ) -> Recorded:
        """Record a posted transaction, or a hold when ``pending``.

        ``extra`` items are written with the transaction; ``extra_for(transaction)`` too, for
        items that depend on the transaction as it will be written (a replay record holding the
        answer). Neither is written when the transaction exists already (``created`` False).

        Raises:
            PostingsEmpty, TooManyPostings, PostingAmountZero, DuplicateAccountInPostings,
            PostingsUnbalanced, UnsupportedCurrency, CurrencyMismatch: the shape is wrong.
            AccountNotFound: a posting names an account that does not exist.
            InsufficientFunds: an overdraft-forbidden account cannot cover its debit.
            TransactionExistsWithDifferentFields: the id was used for another operation.
            VersionConflict: contention outlasted the bounded retries.
        """
        for attempt in range(self.max_attempts):
            candidate = Transaction(
                id=transaction_id,
                type=type,
                status=TransactionStatus.PENDING if pending else TransactionStatus.POSTED,
                postings=self._resolve(postings),
                created_at=self.clock(),
                memo=memo,
                metadata=dict(metadata or {}),
            )
            validate_postings(candidate.postings)
            snapshot = self.repository.read(
                [p.account_id for p in candidate.postings], [transaction_id]
            )
            existing = snapshot.transactions.get(transaction_id)
            if existing is not None:
                return self._replay(existing, candidate)
            accounts = self._accounts(snapshot.accounts, candidate.postings)
            try:
                plan = plan_new(candidate, accounts, candidate.created_at)
            except InsufficientFunds:
                # The same operation, racing us, may have spent the funds between our reads.
                done = self.repository.read([], [transaction_id]).transactions
                if transaction_id in done:
                    return self._replay(done[transaction_id], candidate)
                raise
            writes = [*extra, *extra_for(candidate)] if extra_for is not None else extra
            try:
                self.repository.commit(plan, writes)
            except TransactionAlreadyExists:
                return self._replay(self._get(transaction_id), candidate)
            except VersionConflict:
                self._back_off(attempt)
                continue
            return Recorded(candidate, created=True)
        raise VersionConflict(f"gave up on {transaction_id} after {self.max_attempts} attempts")

    def transaction(self, transaction_id: str) -> Transaction:
        """The transaction, read strongly consistent. Raises TransactionNotFound."""
        return self._get(transaction_id)

    def post_pending(self, transaction_id: str, extra: Sequence[SideWrite] = ()) -> Transaction:
        """Turn a hold into posted money. Raises HoldNotPending if posted or voided already."""
        return self._resolve_hold(transaction_id, post=True, extra=extra)

    def void_pending(self, transaction_id: str, extra: Sequence[SideWrite] = ()) -> Transaction:
        """Release a hold. Raises HoldNotPending if posted or voided already."""
        return self._resolve_hold(transaction_id, post=False, extra=extra)

    def reverse(
        self,
        transaction_id: str,
        *,
        memo: str = "",
        metadata: Mapping[str, str] | None = None,
        allow_overdraft: bool = False,
        extra: Sequence[SideWrite] = (),
    ) -> Transaction:
        """Post the opposite of a posted transaction, linked both ways, at most once.

        With ``allow_overdraft`` a user or facility account may go negative; it is then marked
        ``forced_negative`` and the reversal ``forced``.

        Raises:
            TransactionNotFound, NotReversible, AlreadyReversed, InsufficientFunds,
            VersionConflict.
        """
        reversal_id = derive_transaction_id("reversal", transaction_id)
        for attempt in range(self.max_attempts):
            found = self.repository.read([], [transaction_id]).transactions
            if transaction_id not in found:
                raise TransactionNotFound(f"transaction {transaction_id} does not exist")
            original = found[transaction_id]
            now = self.clock()
            reversal = reversal_of(original, reversal_id, now, memo, metadata or {})
            snapshot = self.repository.read([p.account_id for p in reversal.postings])
            accounts = self._accounts(snapshot.accounts, reversal.postings)
            try:
                plan = plan_reversal(
                    original, reversal, accounts, now, allow_overdraft=allow_overdraft
                )
            except InsufficientFunds:
                # A concurrent reversal may have moved the money between our two reads.
                if self._get(transaction_id).reversed_by is not None:
                    continue  # the next pass raises AlreadyReversed
                raise
            try:
                self.repository.commit(plan, extra)
            except VersionConflict:
                self._back_off(attempt)
                continue
            except TransactionAlreadyExists:
                continue  # re-read: the original now shows reversed_by
            return plan.transaction
        raise VersionConflict(f"gave up reversing {transaction_id}")

    # -- internals ------------------------------------------------------------------------------
    def _resolve_hold(
        self, transaction_id: str, *, post: bool, extra: Sequence[SideWrite]
    ) -> Transaction:
        for attempt in range(self.max_attempts):
            hold = self._get(transaction_id)
            snapshot = self.repository.read([p.account_id for p in hold.postings])
            accounts = self._accounts(snapshot.accounts, hold.postings)
            plan = plan_resolve_hold(hold, accounts, self.clock(), post=post)
            try:
                self.repository.commit(plan, extra)
            except VersionConflict:
                self._back_off(attempt)
                continue
            return plan.transaction
        raise VersionConflict(f"gave up resolving {transaction_id}")

    def _resolve(self, postings: Sequence[PostingRequest]) -> tuple[Posting, ...]:
        """Pick a shard for each platform account (a fresh pick on every attempt)."""
        resolved = []
        for p in postings:
            account = p.account
            if isinstance(account, PlatformAccount):
                account = account.shard_id(self.rng.randrange(self.platform_shards))
            resolved.append(Posting(account_id=account, currency=p.currency, amount=p.amount))
        return tuple(resolved)

    @staticmethod
    def _accounts(found: Mapping[str, Account], postings: Iterable[Posting]) -> dict[str, Account]:
        accounts = dict(found)
        for p in postings:
            if p.account_id in accounts:
                continue
            if parse_platform_shard(p.account_id) is None:
                raise AccountNotFound(p.account_id)
            accounts[p.account_id] = Account.platform_shard(p.account_id)
        return accounts

    def _get(self, transaction_id: str) -> Transaction:
        txn = self.repository.read([], [transaction_id]).transactions.get(transaction_id)
        if txn is None:
            raise TransactionNotFound(f"transaction {transaction_id} does not exist")
        return txn

    @staticmethod
    def _replay(existing: Transaction, candidate: Transaction) -> Recorded:
        if not existing.same_request_as(candidate):
            raise TransactionExistsWithDifferentFields(
                f"transaction {existing.id} exists with other postings or type"
            )
        return Recorded(existing, created=False)

    def _back_off(self, attempt: int) -> None:
        # Full jitter: spreads retrying writers apart instead of re-colliding in lockstep.
        self.sleep(self.rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt)))
