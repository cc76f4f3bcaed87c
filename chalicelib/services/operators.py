"""What an operator (an admin signed in with MFA) does to the ledger and its users: roll back a
transaction, suspend and unsuspend a user, list users, read any transaction.

Rules kept here (API.md, "Admin"; DESIGN.md, "Flows: Rollback"):

* a rollback is a ``reversal`` transaction with the opposite postings, linked both ways
  (``reverses`` / ``reversed_by``) in the same ``TransactWriteItems`` as its audit event; the
  reversal's id is derived from the original's, and the link is written on the condition that
  the original is posted and not reversed yet, so two concurrent rollbacks cannot both succeed
  (``LedgerService.reverse``). Pending transactions are voided, not reversed; reversals are
  never reversed;
* without ``force`` a rollback that would overdraw a user or facility account is refused
  (``InsufficientFunds``); with ``force`` the account may go negative and is marked
  ``forced_negative``, for the reconciliation report and the account view to show;
* a rollback of a card deposit moves ledger money only: it never calls Stripe (a refund does);
* suspending or unsuspending is one conditional update of the user's status with its audit
  event; a suspended user's tokens stop working at once (``AuthService.authenticate``), their
  pending withdrawals stay in the review queue; an admin cannot suspend themselves.
"""

from __future__ import annotations

from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.errors import (
    AlreadyReversed,
    CannotSuspendSelf,
    Forbidden,
    InvalidRequest,
    NotReversible,
    TransactionNotFound,
    UserNotFound,
)
from chalicelib.domain.transactions import (
    Transaction,
    derive_transaction_id,
    settled_with_provider,
)
from chalicelib.domain.users import AuditEvent, Role, User, UserPage, UserStatus
from chalicelib.services import deposits
from chalicelib.services.deposits import DepositRepository
from chalicelib.services.ledger import LedgerService

MAX_REASON_LENGTH = 500
MAX_EMAIL_FILTER_LENGTH = 254
MAX_ID_LENGTH = 128
ROLLBACK_ACTION = "transaction.rollback"
SUSPEND_ACTION = "user.suspended"
UNSUSPEND_ACTION = "user.unsuspended"
ROLE_ACTION = "user.role_changed"


class UserRepository(Protocol):
    """The users an operator manages (``adapters.dynamo.auth_repository.DynamoAuthRepository``);
    each change is written with its audit event in one transaction."""

    def get_user(self, user_id: str) -> User | None: ...
    def set_status(self, user: User, to: UserStatus, event: AuditEvent) -> User:
        """Suspend or unsuspend, only from the other status; returns the user as written.
        Raises InvalidState."""
        ...

    def set_role(self, user: User, role: Role, event: AuditEvent) -> User:
        """Change the role on the condition that it is still the one read. Raises
        InvalidState."""
        ...

    def list_users(self, email_prefix: str, limit: int, cursor: str | None) -> UserPage:
        """Users by lower-case email prefix ("" for everyone). Raises ValueError (cursor)."""
        ...


def reason_text(reason: object) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text or len(text) > MAX_REASON_LENGTH:
        raise InvalidRequest(
            f"reason must have 1 to {MAX_REASON_LENGTH} characters",
            [{"field": "reason", "message": "blank or too long"}],
        )
    return text


def _event(action: str, admin: User, target: str, ip: str | None, **details: str) -> AuditEvent:
    return AuditEvent.new(action, at=now_iso(), actor_id=admin.id, target=target, ip=ip, **details)


# -- transactions -------------------------------------------------------------------------------
def get_transaction(ledger: LedgerService, transaction_id: str) -> Transaction:
    """Any transaction, whoever takes part in it. Raises TransactionNotFound."""
    found = None
    if 0 < len(transaction_id) <= MAX_ID_LENGTH:
        found = ledger.repository.read([], [transaction_id]).transactions.get(transaction_id)
    if found is None:
        raise TransactionNotFound(f"transaction {transaction_id} does not exist")
    return found


def rollback(
    ledger: LedgerService,
    card_deposits: DepositRepository,
    admin: User,
    transaction_id: str,
    *,
    reason: str,
    force: bool,
    ip: str | None,
    request_mark: str | None = None,
) -> Transaction:
    """Reverse a posted transaction, audited in the same write; returns the reversal.

    ``request_mark`` (``api.idempotency.request_mark``) is stored on the reversal: the same
    request sent again after its answer was lost (the reversal committed) gets that reversal
    back, where any other request gets ``AlreadyReversed``.

    Raises (in order): InvalidRequest (reason), TransactionNotFound, NotReversible (settled
    with a provider: a refund, a completed withdrawal, a dispute; pending, voided, or a
    reversal), AlreadyReversed, InsufficientFunds (unless ``force``),
    VersionConflict.
    """
    reason = reason_text(reason)
    if not 0 < len(transaction_id) <= MAX_ID_LENGTH:
        raise TransactionNotFound(f"transaction {transaction_id} does not exist")
    reversal_id = derive_transaction_id("reversal", transaction_id)
    event = _event(
        ROLLBACK_ACTION,
        admin,
        transaction_id,
        ip,
        reason=reason,
        force=str(force).lower(),
        reversal_id=reversal_id,
    )
    extra = [ledger.repository.audit(event)]
    original = ledger.repository.read([], [transaction_id]).transactions.get(transaction_id)
    settled = settled_with_provider(original) if original is not None else None
    if settled is not None:
        raise NotReversible(f"{transaction_id} is {settled}; correct it with an adjustment")
    if original is not None:
        guard = deposits.rollback_guard(card_deposits, original, reversal_id)
        if guard is not None:
            extra.append(guard)
    metadata = {"reason": reason, "rolled_back_by": admin.id, "force": str(force).lower()}
    if request_mark:
        metadata["request"] = request_mark
    try:
        return ledger.reverse(
            transaction_id,
            memo=f"rollback: {reason}",
            metadata=metadata,
            allow_overdraft=force,
            extra=extra,
        )
    except AlreadyReversed:
        earlier = ledger.repository.read([], [reversal_id]).transactions.get(reversal_id)
        if request_mark and earlier is not None and earlier.metadata.get("request") == request_mark:
            return earlier  # this request's own reversal, whose first answer was lost
        raise


# -- users --------------------------------------------------------------------------------------
def _user(users: UserRepository, user_id: str) -> User:
    found = users.get_user(user_id) if 0 < len(user_id) <= MAX_ID_LENGTH else None
    if found is None:
        raise UserNotFound(f"user {user_id} does not exist")
    return found


def suspend(users: UserRepository, admin: User, user_id: str, reason: str, ip: str | None) -> User:
    """Suspend a user: no login, refresh or protected call from now on, old tokens included.

    Raises (in order): InvalidRequest (reason), UserNotFound, CannotSuspendSelf, InvalidState
    (already suspended).
    """
    reason = reason_text(reason)
    user = _user(users, user_id)
    if user.id == admin.id:
        raise CannotSuspendSelf("an admin cannot suspend their own account")
    event = _event(SUSPEND_ACTION, admin, user.id, ip, reason=reason)
    return users.set_status(user, UserStatus.SUSPENDED, event)


def unsuspend(users: UserRepository, admin: User, user_id: str, ip: str | None) -> User:
    """Let a suspended user in again. Raises UserNotFound, InvalidState (not suspended)."""
    user = _user(users, user_id)
    previous = user.suspension_reason or ""
    event = _event(UNSUSPEND_ACTION, admin, user.id, ip, previous_reason=previous)
    return users.set_status(user, UserStatus.ACTIVE, event)


def set_role(users: UserRepository, admin: User, user_id: str, role: str, ip: str | None) -> User:
    """Make a user an admin or a user again, audited with the old and the new role. The role is
    read on every request, so it takes effect at once; a new admin still needs MFA (and a
    login with a TOTP code) for admin routes. Setting the role a user has changes nothing.

    Raises (in order): InvalidRequest (role), UserNotFound, Forbidden (one's own role),
    InvalidState (the role changed meanwhile).
    """
    try:
        wanted = Role(role)
    except ValueError as exc:
        raise InvalidRequest(
            "role must be user or admin", [{"field": "role", "message": "user or admin"}]
        ) from exc
    user = _user(users, user_id)
    if user.id == admin.id:
        raise Forbidden("an admin cannot change their own role")
    if user.role is wanted:
        return user
    event = _event(ROLE_ACTION, admin, user.id, ip, old=user.role.value, new=wanted.value)
    return users.set_role(user, wanted, event)


def list_users(
    users: UserRepository, email: str | None, limit: int, cursor: str | None
) -> UserPage:
    """Users by email (case-insensitive prefix match when ``email`` is given), paginated.

    Raises:
        InvalidRequest: the filter is too long, or the cursor is not one this list returned.
    """
    prefix = (email or "").strip()
    if len(prefix) > MAX_EMAIL_FILTER_LENGTH:
        raise InvalidRequest(
            "email filter is too long", [{"field": "email", "message": "too long"}]
        )
    try:
        return users.list_users(prefix, limit, cursor)
    except ValueError as exc:
        raise InvalidRequest(
            "cursor is not valid",
            [{"field": "cursor", "message": "is not a cursor this list returned"}],
        ) from exc
