"""The ledger's DynamoDB repository: reads accounts and transactions, commits a ``Plan``.

``commit`` turns a domain plan into one ``TransactWriteItems`` call in which every guarantee is
checked again by DynamoDB itself, so that neither a race nor a bug in the domain can break it:

* each existing account: ``version = :read_version`` and, when an overdraft-forbidden account's
  available balance drops, ``available >= :drop`` (a second line of defence behind the domain's
  check, computed from the change itself; only a forced reversal skips it);
* each new platform shard: ``attribute_not_exists(PK)``;
* a new transaction and each entry: ``attribute_not_exists(PK)`` (exactly once, gapless seq);
* resolving a hold: ``status = pending``; linking a reversal: ``status = posted AND
  attribute_not_exists(reversed_by)``.

A cancelled write is translated into the domain error named after the condition that failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from chalicelib.adapters.dynamo import cursors, keys, read_ahead
from chalicelib.adapters.dynamo.models import (
    AccountItem,
    EntryItem,
    TimelineItem,
    TransactionItem,
)
from chalicelib.adapters.dynamo.transact import AtomicWrite, append_only_audit
from chalicelib.domain.accounts import Account, OwnerType
from chalicelib.domain.errors import (
    AlreadyReversed,
    HoldNotPending,
    InsufficientFunds,
    LedgerError,
    NotReversible,
    TransactionAlreadyExists,
    VersionConflict,
)
from chalicelib.domain.transactions import (
    AccountChange,
    Entry,
    Plan,
    Transaction,
    TransactionStatus,
)
from chalicelib.domain.users import AuditEvent

MAX_PAGE = 100


@dataclass
class Snapshot:
    accounts: dict[str, Account] = field(default_factory=dict)
    transactions: dict[str, Transaction] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtraWrite:
    """A service's own item written in the same transaction as the money (an inbox marker, a
    status change). If its condition fails, ``error`` is raised."""

    model: Model
    condition: Condition | None
    error: LedgerError
    actions: Sequence[Any] | None = None  # None: a put of ``model``; otherwise an update


def audit_entry(event: AuditEvent) -> ExtraWrite:
    """An audit event as part of the write of the action it records, append-only
    (``append_only_audit``)."""
    return ExtraWrite(*append_only_audit(event))


@dataclass(frozen=True)
class TransactionPage:
    transactions: list[Transaction]
    next_cursor: str | None


@dataclass(frozen=True)
class EntryPage:
    entries: list[Entry]
    next_cursor: str | None


class DynamoLedgerRepository:
    """Ledger persistence on the single table."""

    @staticmethod
    def audit(event: AuditEvent) -> ExtraWrite:
        """An audit event as part of the write of the action it records (``audit_entry``)."""
        return audit_entry(event)

    # -- reads ----------------------------------------------------------------------------------
    def read(self, account_ids: Iterable[str], transaction_ids: Iterable[str] = ()) -> Snapshot:
        """Strongly consistent read of accounts and transactions in one BatchGetItem round trip
        (more only if DynamoDB leaves keys unprocessed); missing items are absent."""
        wanted = [(keys.account_pk(a), keys.ACCOUNT_SK) for a in dict.fromkeys(account_ids)]
        wanted += [
            (keys.transaction_pk(t), keys.TRANSACTION_SK) for t in dict.fromkeys(transaction_ids)
        ]
        snapshot = Snapshot()
        for raw in read_ahead.get_many(wanted).values():
            item_type = raw.get("item_type", {}).get("S") if raw is not None else None
            if item_type == AccountItem.ITEM_TYPE:
                account = AccountItem.from_raw_data(raw).to_domain()
                snapshot.accounts[account.id] = account
            elif item_type == TransactionItem.ITEM_TYPE:
                txn = TransactionItem.from_raw_data(raw).to_domain()
                snapshot.transactions[txn.id] = txn
        return snapshot

    def want_accounts(self, account_ids: Iterable[str]) -> None:
        """Read these accounts in the request's first batch read (``read_ahead``)."""
        for account_id in account_ids:
            read_ahead.want(keys.account_pk(account_id), keys.ACCOUNT_SK)

    def get_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        return self.read(account_ids).accounts

    def get_account(self, account_id: str) -> Account | None:
        return self.get_accounts([account_id]).get(account_id)

    def get_transaction(self, transaction_id: str) -> Transaction | None:
        try:
            item = TransactionItem.get(
                keys.transaction_pk(transaction_id), keys.TRANSACTION_SK, consistent_read=True
            )
        except TransactionItem.DoesNotExist:
            return None
        return item.to_domain()

    def accounts_of_owner(self, owner_type: OwnerType, owner_id: str) -> list[Account]:
        """The owner's accounts by currency: ids from GSI1 (keys only), balances read by key."""
        pk = keys.owner_gsi_pk(owner_type.value, owner_id)
        ids = [keys.account_id_from_pk(item.PK) for item in AccountItem.owner_index.query(pk)]
        found = self.read(ids).accounts
        return [found[account_id] for account_id in ids if account_id in found]

    def entries(
        self,
        account_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        since: str | None = None,
        until: str | None = None,
        newest_first: bool = True,
    ) -> EntryPage:
        """One page of an account's history, newest first by default.

        ``since`` / ``until`` are canonical ISO instants (inclusive). The cursor is opaque and
        stable while new entries arrive: it names the last entry returned.
        """
        limit = max(1, min(limit, MAX_PAGE))
        low, high = keys.entry_time_bounds(since, until)
        pk = keys.account_pk(account_id)
        start_key = (
            cursors.decode(cursor, partition={"PK": pk}, ranges={"SK": (low, high)})
            if cursor
            else None
        )
        results = EntryItem.query(
            pk,
            EntryItem.SK.between(low, high),
            scan_index_forward=not newest_first,
            limit=limit,
            last_evaluated_key=start_key,
            consistent_read=True,
            page_size=limit,
        )
        entries = [item.to_domain() for item in results]
        last = results.last_evaluated_key
        next_cursor = cursors.encode(last) if last and len(entries) == limit else None
        return EntryPage(entries=entries, next_cursor=next_cursor)

    def transactions_of_owner(
        self,
        owner_type: OwnerType,
        owner_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> TransactionPage:
        """One page of the transactions an owner takes part in, newest first, read by key (so
        a hold shows its current status)."""
        limit = max(1, min(limit, MAX_PAGE))
        pk = keys.timeline_pk(owner_type.value, owner_id)
        low, high = keys.timeline_time_bounds(since, until)
        results = TimelineItem.query(
            pk,
            TimelineItem.SK.between(low, high),
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=(
                cursors.decode(cursor, partition={"PK": pk}, ranges={"SK": (low, high)})
                if cursor
                else None
            ),
            page_size=limit,
            consistent_read=True,
        )
        ids = [item.transaction_id for item in results]
        last = results.last_evaluated_key
        found = self.read([], ids).transactions
        return TransactionPage(
            transactions=[found[i] for i in ids if i in found],
            next_cursor=cursors.encode(last) if last and len(ids) == limit else None,
        )

    # -- writes ---------------------------------------------------------------------------------
    def open_accounts(self, accounts: Sequence[Account], extra: Sequence[ExtraWrite] = ()) -> None:
        """Create accounts (and any extra items) in one atomic write.

        Raises:
            TransactionAlreadyExists: an account id is taken (ids are meant to be unique).
        """
        write = AtomicWrite()
        for account in accounts:
            item = AccountItem.from_domain(account.evolve(stored=True))
            write.put(item, AccountItem.PK.does_not_exist(), ("account_exists", account.id))
        self._add_extra(write, extra)
        self._send(write)

    def commit(self, plan: Plan, extra: Sequence[ExtraWrite] = ()) -> None:
        """Write a plan atomically, with every guarantee re-checked by DynamoDB.

        Raises:
            TransactionAlreadyExists: the transaction id is taken (a replay, or a second
                reversal of the same transaction).
            HoldNotPending: the hold was posted or voided meanwhile.
            AlreadyReversed / NotReversible: the original changed meanwhile.
            VersionConflict: an account changed since it was read (retry after re-reading).
            InsufficientFunds: DynamoDB's own overdraft condition refused the debit.
        """
        write = AtomicWrite()
        txn_item = TransactionItem.from_domain(plan.transaction)
        if plan.is_new_transaction:
            write.put(txn_item, TransactionItem.PK.does_not_exist(), ("txn_new", None))
            for owner_type, owner_id in _participants(plan):
                timeline = TimelineItem.for_owner(owner_type, owner_id, plan.transaction)
                write.put(timeline, None, ("timeline", None))
        else:
            write.update(
                txn_item,
                [
                    TransactionItem.status.set(plan.transaction.status.value),
                    TransactionItem.resolved_at.set(plan.transaction.resolved_at),
                ],
                TransactionItem.status == TransactionStatus.PENDING.value,
                ("txn_resolve", plan.transaction.id),
            )
        for change in plan.changes:
            self._add_account_change(write, change, forced=plan.transaction.forced)
        for entry in plan.entries:
            write.put(EntryItem.from_domain(entry), EntryItem.SK.does_not_exist(), ("entry", None))
        if plan.links_reversal_of is not None:
            original = TransactionItem.from_domain(plan.links_reversal_of)
            write.update(
                original,
                [TransactionItem.reversed_by.set(plan.transaction.id)],
                (TransactionItem.status == TransactionStatus.POSTED.value)
                & TransactionItem.reversed_by.does_not_exist()
                & TransactionItem.reverses.does_not_exist(),
                ("link", plan.links_reversal_of.id),
            )
        self._add_extra(write, extra)
        self._send(write)

    @staticmethod
    def _add_account_change(write: AtomicWrite, change: AccountChange, *, forced: bool) -> None:
        after = AccountItem.from_domain(change.after.evolve(stored=True))
        if change.before.is_new:
            write.put(after, AccountItem.PK.does_not_exist(), ("account", change))
            return
        condition = AccountItem.version == change.before.version
        # Derived from the change itself, not from the domain's verdict, so that a domain bug
        # or a stale read cannot overdraw: only a forced reversal skips it.
        if change.after.overdraft_forbidden and change.available_drop and not forced:
            condition &= AccountItem.available >= change.available_drop
        write.update(
            after,
            [
                AccountItem.posted.set(change.after.posted),
                AccountItem.pending_out.set(change.after.pending_out),
                AccountItem.pending_in.set(change.after.pending_in),
                AccountItem.available.set(change.after.available),
                AccountItem.version.set(change.after.version),
                AccountItem.last_seq.set(change.after.last_seq),
                AccountItem.last_entry_at.set(change.after.last_entry_at),
                AccountItem.forced_negative.set(change.after.forced_negative),
            ],
            condition,
            ("account", change),
        )

    @staticmethod
    def _add_extra(write: AtomicWrite, extra: Sequence[ExtraWrite]) -> None:
        for item in extra:
            if item.actions is None:
                write.put(item.model, item.condition, ("extra", item.error))
            else:
                write.update(item.model, item.actions, item.condition, ("extra", item.error))

    def _send(self, write: AtomicWrite) -> None:
        try:
            write.send()
        except TransactWriteError as exc:
            raise _translate(exc, write.tags) from exc


def _participants(plan: Plan) -> list[tuple[str, str]]:
    """The users and facilities whose accounts the transaction touches (platform excluded)."""
    owners = {
        (c.after.owner_type.value, c.after.owner_id)
        for c in plan.changes
        if c.after.owner_type is not OwnerType.PLATFORM
    }
    return sorted(owners)


def _translate(exc: TransactWriteError, tags: list[Any]) -> Exception:
    """Name the rule behind a cancelled write; the most specific reason wins."""
    reasons = exc.cancellation_reasons or []
    errors: list[tuple[int, Exception]] = []
    for reason, (kind, subject) in zip(reasons, tags, strict=False):
        if reason is None:
            continue
        if reason.code == "TransactionConflict":
            errors.append((3, VersionConflict("another write to the same items was in progress")))
            continue
        if reason.code != "ConditionalCheckFailed":
            continue
        old = _plain(reason.raw_item)
        if kind == "txn_new":
            errors.append((0, TransactionAlreadyExists("transaction id already written")))
        elif kind == "txn_resolve":
            errors.append((1, HoldNotPending(subject, str(old.get("status", "missing")))))
        elif kind == "link":
            if old.get("reversed_by"):
                errors.append((1, AlreadyReversed(f"{subject} was already reversed")))
            else:
                errors.append((1, NotReversible(f"{subject} cannot be reversed")))
        elif kind == "extra":
            errors.append((2, subject))
        elif kind == "account_exists":
            errors.append((0, TransactionAlreadyExists(f"account {subject} already exists")))
        elif kind == "account":
            change: AccountChange = subject
            if old and int(old.get("version", -1)) == change.before.version:
                errors.append((4, InsufficientFunds(change.before.id)))
            else:
                errors.append((3, VersionConflict(f"account {change.before.id} changed")))
        else:  # an entry key taken: someone else wrote this seq first
            errors.append((3, VersionConflict("history entry already written")))
    if not errors:
        return exc
    return min(errors, key=lambda pair: pair[0])[1]


def _plain(raw: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Flatten a low-level DynamoDB item enough to read scalars."""
    if not raw:
        return {}
    return {name: next(iter(value.values())) for name, value in raw.items()}
