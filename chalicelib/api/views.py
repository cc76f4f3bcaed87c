"""How ledger objects look on the wire (API.md, "Accounts and history"): amounts as decimal
strings in major units, signed where money leaves an account; one function per object, building
the object's model of ``chalicelib.api.responses``."""

from __future__ import annotations

from chalicelib.api import responses
from chalicelib.domain.accounts import Account
from chalicelib.domain.money import format_amount
from chalicelib.domain.transactions import Entry, Transaction
from chalicelib.domain.users import User


def account_view(account: Account) -> responses.Account:
    code = account.currency
    return responses.Account(
        id=account.id,
        currency=code,
        posted=format_amount(account.posted, code),
        available=format_amount(account.available, code),
        pending_outgoing=format_amount(account.pending_out, code),
        pending_incoming=format_amount(account.pending_in, code),
        overdrawn_by_force=account.forced_negative,
        # Marks an operator must see: ``forced_negative`` once a forced rollback overdrew it.
        flags=["forced_negative"] if account.forced_negative else [],
        created_at=account.created_at,
    )


def entry_view(entry: Entry, currency: str) -> responses.Entry:
    return responses.Entry(
        transaction_id=entry.transaction_id,
        type=entry.type.value,
        amount=format_amount(entry.amount, currency),
        balance_after=format_amount(entry.balance_after, currency),
        created_at=entry.created_at,
        memo=entry.memo,
        seq=entry.seq,
    )


def transaction_view(txn: Transaction) -> responses.Transaction:
    return responses.Transaction(
        id=txn.id,
        type=txn.type.value,
        status=txn.status.value,
        created_at=txn.created_at,
        resolved_at=txn.resolved_at,
        postings=[
            responses.Posting(
                account_id=p.account_id,
                currency=p.currency,
                amount=format_amount(p.amount, p.currency),
            )
            for p in txn.postings
        ],
        reverses=txn.reverses,
        reversed_by=txn.reversed_by,
        memo=txn.memo,
        metadata=dict(txn.metadata),
        forced=txn.forced,
    )


def user_view(user: User) -> responses.User:
    return responses.User(
        id=user.id,
        email=user.email,
        role=user.role.value,
        status=user.status.value,
        terms_accepted_at=user.terms_accepted_at,
        mfa_enabled=user.mfa_enabled,
        email_verified=user.email_verified,
        created_at=user.created_at,
    )


def managed_user_view(user: User) -> responses.ManagedUser:
    """A user as an admin sees one: the user's view and the suspension."""
    return responses.ManagedUser(
        **user_view(user).model_dump(),
        suspended_at=user.suspended_at,
        suspended_by=user.suspended_by,
        suspension_reason=user.suspension_reason,
    )
