"""What a user may read of the ledger: their own accounts, each account's history, and the
transactions they take part in (API.md, "Accounts and history").

Rules kept here:

* a user sees only accounts whose owner is that user; a transaction only when one of its postings
  is such an account;
* anything else answers exactly like an id that does not exist (``AccountNotFound`` /
  ``TransactionNotFound``), so ids cannot be probed for existence;
* a cursor this ledger did not hand out for that very list is refused (``InvalidRequest``).

Plain functions over the ledger repository; ``since`` / ``until`` are canonical ISO instants
(``chalicelib.adapters.clock.to_iso``), inclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chalicelib.domain.accounts import Account, OwnerType, wallet_id
from chalicelib.domain.errors import AccountNotFound, InvalidRequest, TransactionNotFound
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.transactions import Entry, Transaction

if TYPE_CHECKING:  # the adapter (and PynamoDB) loads with the repository, not with this module
    from chalicelib.adapters.dynamo.ledger_repository import EntryPage, TransactionPage

# Every id the ledger hands out is far shorter; a longer one cannot exist, and would only cost a
# DynamoDB validation error (a key is at most 2048 bytes).
MAX_ID_LENGTH = 128


class AccountsRepository(Protocol):
    def want_accounts(self, account_ids: Iterable[str]) -> None: ...
    def get_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]: ...
    def get_transaction(self, transaction_id: str) -> Transaction | None: ...
    def entries(
        self,
        account_id: str,
        *,
        limit: int = ...,
        cursor: str | None = ...,
        since: str | None = ...,
        until: str | None = ...,
        newest_first: bool = ...,
    ) -> EntryPage: ...
    def transactions_of_owner(
        self,
        owner_type: OwnerType,
        owner_id: str,
        *,
        limit: int = ...,
        cursor: str | None = ...,
        since: str | None = ...,
        until: str | None = ...,
    ) -> TransactionPage: ...


@dataclass(frozen=True)
class AccountHistory:
    """One page of an account's entries, with the account (whose currency formats them)."""

    account: Account
    entries: list[Entry]
    next_cursor: str | None


def wallet_ids(user_id: str) -> list[str]:
    """A user's accounts: one wallet per currency, opened at sign-up, with derived ids."""
    return [wallet_id(OwnerType.USER, user_id, code) for code in CURRENCIES]


def read_ahead_wallets(repository: AccountsRepository, user_id: str) -> None:
    """Name the user's wallets for the request's first batch read (``accounts_of_user``)."""
    repository.want_accounts(wallet_ids(user_id))


def read_ahead_account(repository: AccountsRepository, account_id: str) -> None:
    """Name an account for the request's first batch read (``account_of_user``)."""
    if len(account_id) <= MAX_ID_LENGTH:
        repository.want_accounts([account_id])


def accounts_of_user(repository: AccountsRepository, user_id: str) -> list[Account]:
    """The user's accounts, one per currency, sorted by currency code; read by key (the ids are
    derived), so in the same round trip as the caller when named ahead."""
    found = repository.get_accounts(wallet_ids(user_id))
    owned = [a for a in found.values() if _owned_by(a, user_id)]
    return sorted(owned, key=lambda account: account.currency)


def account_of_user(repository: AccountsRepository, user_id: str, account_id: str) -> Account:
    """The account, if the user owns it.

    Raises:
        AccountNotFound: no such account, or it belongs to someone else (the same answer).
    """
    account = None
    if len(account_id) <= MAX_ID_LENGTH:
        account = repository.get_accounts([account_id]).get(account_id)
    if account is None or not _owned_by(account, user_id):
        raise AccountNotFound(account_id)
    return account


def history_of_account(
    repository: AccountsRepository,
    user_id: str,
    account_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> AccountHistory:
    """One page of the account's entries, newest first.

    Raises:
        AccountNotFound: as ``account_of_user``.
        InvalidRequest: the cursor was not handed out for this account's entries.
    """
    account = account_of_user(repository, user_id, account_id)
    try:
        page = repository.entries(account.id, limit=limit, cursor=cursor, since=since, until=until)
    except ValueError as exc:
        raise InvalidRequest("cursor is not valid for this list") from exc
    return AccountHistory(account=account, entries=page.entries, next_cursor=page.next_cursor)


def transactions_of_user(
    repository: AccountsRepository,
    user_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> TransactionPage:
    """One page of the transactions the user takes part in, newest first, each with its current
    status (a hold shows ``pending`` until it is posted or voided).

    Raises:
        InvalidRequest: the cursor was not handed out for this user's transactions.
    """
    try:
        return repository.transactions_of_owner(
            OwnerType.USER, user_id, limit=limit, cursor=cursor, since=since, until=until
        )
    except ValueError as exc:
        raise InvalidRequest("cursor is not valid for this list") from exc


def accounts_of_facility(repository: AccountsRepository, facility_id: str) -> list[Account]:
    """The facility's accounts, one per currency (opened with it, derived ids), by currency."""
    ids = [wallet_id(OwnerType.FACILITY, facility_id, code) for code in CURRENCIES]
    found = repository.get_accounts(ids)
    owned = [
        a
        for a in found.values()
        if a.owner_type is OwnerType.FACILITY and a.owner_id == facility_id
    ]
    return sorted(owned, key=lambda account: account.currency)


def transactions_of_facility(
    repository: AccountsRepository,
    facility_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> TransactionPage:
    """One page of the transactions the facility takes part in, newest first (as
    ``transactions_of_user``).

    Raises:
        InvalidRequest: the cursor was not handed out for this facility's transactions.
    """
    try:
        return repository.transactions_of_owner(
            OwnerType.FACILITY, facility_id, limit=limit, cursor=cursor, since=since, until=until
        )
    except ValueError as exc:
        raise InvalidRequest("cursor is not valid for this list") from exc


def transaction_of_user(
    repository: AccountsRepository, user_id: str, transaction_id: str
) -> Transaction:
    """The transaction, if one of its postings is an account of the user.

    Raises:
        TransactionNotFound: no such transaction, or the user takes no part in it (the same
            answer).
    """
    txn = None
    if len(transaction_id) <= MAX_ID_LENGTH:
        txn = repository.get_transaction(transaction_id)
    if txn is None or not _takes_part(repository, txn, user_id):
        raise TransactionNotFound(f"transaction {transaction_id} does not exist")
    return txn


def _owned_by(account: Account, user_id: str) -> bool:
    return account.owner_type is OwnerType.USER and account.owner_id == user_id


def _takes_part(repository: AccountsRepository, txn: Transaction, user_id: str) -> bool:
    accounts = repository.get_accounts(p.account_id for p in txn.postings)
    return any(_owned_by(account, user_id) for account in accounts.values())
