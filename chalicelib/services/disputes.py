"""Disputes (chargebacks) of card deposits, from Stripe's ``charge.dispute.*`` events
(``services/stripe_events.py`` routes them here).

* ``charge.dispute.created``: the disputed amount is held on the user's wallet (a pending
  ``adjustment``: wallet -> Stripe clearing), so it cannot be spent while the bank decides. If the
  user has already spent part of it, only what is ``available`` is held (a user account never goes
  below zero except by an admin's forced rollback, DESIGN.md guarantee 3); the dispute records the
  shortfall, which is the platform's exposure, and the audit event names it.
* ``charge.dispute.closed``: ``lost`` posts the hold (the money has left Stripe); ``won`` and
  every other closing status release it (``chalicelib/domain/disputes.py`` states the rules).

Which deposit: the dispute's PaymentIntent is re-fetched from Stripe and its metadata names the
deposit (and the user), exactly as for a payment; the deposit is read through the deposits'
repository (``DisputedDeposits``). The dispute's own fields (amount, status) are taken from the
signed event: a closed dispute's status is final, and localstripe has no disputes to fetch.
Exactly once: the hold's transaction id is derived from the dispute id, the dispute item is
written with ``attribute_not_exists``, closing is conditional on ``open``, and each event's inbox
item is in the same write as its effect. Out of order: a ``closed`` that arrives first opens the
dispute itself, then closes it; the late ``created`` then finds it and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.stripe_gateway import PaymentGateway, WebhookEvent
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.deposits import Deposit, DepositStatus
from chalicelib.domain.disputes import Dispute, closing_status, held_for
from chalicelib.domain.errors import (
    AlreadyReversed,
    HoldNotPending,
    InsufficientFunds,
    InvalidState,
    TransactionAlreadyExists,
    TransactionExistsWithDifferentFields,
    VersionConflict,
    WebhookEventSeen,
)
from chalicelib.domain.transactions import TransactionType
from chalicelib.domain.users import AuditEvent
from chalicelib.services.inbox import DUPLICATE, Inbox
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite

CREATED_EVENT = "charge.dispute.created"
CLOSED_EVENT = "charge.dispute.closed"
PROVIDER = "stripe"  # the inbox's name for Stripe's events, and the audit actor of what it reports
UNMATCHED, OPENED = "unmatched", "dispute_opened"
MAX_ATTEMPTS = 5


class DisputeRepository(Protocol):
    def get(self, dispute_id: str) -> Dispute | None:
        """The dispute (strongly consistent), or None."""
        ...

    def write(self, writes: Sequence[SideWrite]) -> None:
        """Side writes alone, atomically (no money moves); a failed condition raises its
        write's error."""
        ...

    def add(self, dispute: Dispute) -> SideWrite:
        """A new dispute (InvalidState if it exists)."""
        ...

    def close(self, dispute: Dispute) -> SideWrite:
        """The closed dispute (InvalidState unless it is still open)."""
        ...

    def audit(self, event: AuditEvent) -> SideWrite:
        """The audit event, append-only, in the write of what it records."""
        ...


class DisputedDeposits(Protocol):
    """What disputes need of the deposits' repository."""

    def get(self, deposit_id: str) -> Deposit | None: ...

    def mark_disputed(
        self, deposit_id: str, dispute_id: str, *, rolled_back: bool, at: str
    ) -> SideWrite:
        """The deposit marked disputed; unless ``rolled_back``, AlreadyReversed if an admin
        rolled it back meanwhile."""
        ...


def handle(
    ledger: LedgerService,
    gateway: PaymentGateway,
    event: WebhookEvent,
    *,
    disputes: DisputeRepository,
    deposits: DisputedDeposits,
    inbox: Inbox,
) -> str:
    """Apply a ``charge.dispute.created`` / ``.closed`` event; returns the outcome."""
    desk = _Desk(ledger, gateway, disputes, deposits, inbox)
    obj = event.object
    dispute_id, intent_id = event.object_id, obj.get("payment_intent")
    if not dispute_id or not isinstance(intent_id, str):
        return inbox.record(PROVIDER, event, UNMATCHED, dispute_id)
    if event.type == CREATED_EVENT:
        if disputes.get(dispute_id) is not None:
            return inbox.record(PROVIDER, event, DUPLICATE, dispute_id)
        return desk.open(event, marker=True) or DUPLICATE
    if (
        disputes.get(dispute_id) is None
        and desk.open(event, marker=False) is None
        and disputes.get(dispute_id) is None  # a concurrent `created` may have opened it meanwhile
    ):
        return inbox.record(PROVIDER, event, UNMATCHED, dispute_id)
    return desk.close(event)


def _audit(action: str, dispute: Dispute, shortfall: int) -> AuditEvent:
    return AuditEvent.new(
        action,
        at=now_iso(),
        actor_id=PROVIDER,
        target=dispute.id,
        ip=None,
        deposit_id=dispute.deposit_id,
        user_id=dispute.user_id,
        amount=str(dispute.amount),
        held_amount=str(dispute.held_amount),
        currency=dispute.currency,
        shortfall=str(shortfall),
    )


class _Desk:
    """One event's collaborators, so the steps need not pass them along."""

    def __init__(
        self,
        ledger: LedgerService,
        gateway: PaymentGateway,
        disputes: DisputeRepository,
        deposits: DisputedDeposits,
        inbox: Inbox,
    ) -> None:
        self.ledger, self.gateway, self.inbox = ledger, gateway, inbox
        self.disputes, self.deposits = disputes, deposits

    def open(self, event: WebhookEvent, *, marker: bool) -> str | None:
        """Hold what the wallet can cover of the disputed amount; None if no deposit matches."""
        obj = event.object
        dispute_id = str(event.object_id)
        intent = self.gateway.retrieve_payment_intent(str(obj["payment_intent"]))
        deposit = self.deposits.get(intent.metadata.get("deposit_id", ""))
        if (
            deposit is None
            or deposit.status is not DepositStatus.SUCCEEDED
            or deposit.payment_intent_id != intent.id
            or deposit.user_id != intent.metadata.get("user_id")
        ):
            if marker:
                self.inbox.record(PROVIDER, event, UNMATCHED, dispute_id)
                return UNMATCHED
            return None
        code = deposit.currency
        amount = int(obj.get("amount") or deposit.credited_amount or 0)
        wallet = wallet_id(OwnerType.USER, deposit.user_id, code)
        clearing = PlatformAccount(PlatformKind.STRIPE_CLEARING, code)
        rolled_back = bool(deposit.rolled_back_by)
        for _ in range(MAX_ATTEMPTS):
            account = self.ledger.repository.read([wallet]).accounts.get(wallet)
            available = account.available if account else 0
            now = now_iso()
            dispute = Dispute.opened(
                dispute_id,
                deposit_id=deposit.id,
                user_id=deposit.user_id,
                payment_intent_id=intent.id,
                amount=amount,
                held=held_for(amount, available, rolled_back=rolled_back),
                currency=code,
                at=now,
            )
            extra = [
                self.disputes.add(dispute),
                self.disputes.audit(_audit("dispute.opened", dispute, dispute.shortfall)),
                self.deposits.mark_disputed(
                    deposit.id, dispute_id, rolled_back=rolled_back, at=now
                ),
            ]
            if marker:
                extra.append(self.inbox.entry(PROVIDER, event, OPENED, dispute_id))
            try:
                if dispute.transaction_id is not None:
                    held = dispute.held_amount
                    recorded = self.ledger.record(
                        transaction_id=dispute.transaction_id,
                        type=TransactionType.ADJUSTMENT,
                        postings=[
                            PostingRequest(wallet, code, -held),
                            PostingRequest(clearing, code, held),
                        ],
                        memo="card dispute hold",
                        metadata={
                            "dispute_id": dispute_id,
                            "deposit_id": deposit.id,
                            "payment_intent_id": intent.id,
                        },
                        pending=True,
                        extra=extra,
                    )
                    if not recorded.created:
                        # A racing event for this dispute held it first; this write was a replay
                        # and wrote none of the extras (no inbox item, no audit event of its own).
                        if marker:
                            return self.inbox.record(PROVIDER, event, DUPLICATE, dispute_id)
                        return None
                else:
                    self.disputes.write(extra)
            except InsufficientFunds:
                continue  # the user spent between our read and the write: hold what is left
            except AlreadyReversed:
                rolled_back = True  # an admin rolled the deposit back between read and write
                continue
            except (WebhookEventSeen, InvalidState, TransactionAlreadyExists):
                return None if not marker else DUPLICATE
            except TransactionExistsWithDifferentFields:
                # A racing event held a different amount first (the wallet changed between reads).
                if marker:
                    return self.inbox.record(PROVIDER, event, DUPLICATE, dispute_id)
                return None
            return OPENED
        raise VersionConflict(f"could not hold the disputed amount of {dispute_id}")

    def close(self, event: WebhookEvent) -> str:
        """``lost`` posts the hold (the money left Stripe); every other closing status voids it,
        so the user is never charged for a dispute the platform did not lose."""
        dispute = self.disputes.get(str(event.object_id))
        if dispute is None:
            return self.inbox.record(PROVIDER, event, UNMATCHED, event.object_id)
        status = closing_status(event.object.get("status"))
        try:
            closed = dispute.closed(status, now_iso())
        except InvalidState:
            return self.inbox.record(PROVIDER, event, DUPLICATE, dispute.id)
        outcome = f"dispute_{closed.status.value}"
        extra = [
            self.disputes.close(closed),
            self.disputes.audit(
                _audit(f"dispute.{closed.status.value}", dispute, closed.shortfall)
            ),
            self.inbox.entry(PROVIDER, event, outcome, dispute.id),
        ]
        try:
            if dispute.transaction_id:
                resolve = self.ledger.post_pending if closed.lost else self.ledger.void_pending
                resolve(dispute.transaction_id, extra=extra)
            else:
                self.disputes.write(extra)
        except WebhookEventSeen:
            return DUPLICATE
        except (HoldNotPending, InvalidState):
            return self.inbox.record(PROVIDER, event, DUPLICATE, dispute.id)
        return outcome
