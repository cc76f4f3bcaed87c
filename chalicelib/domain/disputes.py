"""A dispute (chargeback) of a card deposit: what it holds on the wallet, and how it ends.

Life of a dispute: ``open`` (the disputed amount, or what the wallet can cover of it, is held)
-> closed with Stripe's closing status: ``lost`` posts the hold (the money has left Stripe);
``won`` and every other closing status (``warning_closed``: an inquiry that never withdrew funds;
``charge_refunded``...) release it, so the user is never charged for a dispute the platform did
not lose.

Guarantees, each checked here and again by the DynamoDB condition of the write that applies it
(``adapters/dynamo/dispute_repository.py``):

* **No overdraft** (DESIGN.md, guarantee 3): ``0 <= held_amount <= amount`` and ``held_amount``
  never exceeds the wallet's ``available`` when the dispute opens; what could not be held is the
  platform's exposure, ``shortfall = amount - held_amount``. A deposit an admin rolled back holds
  nothing (the money already left the wallet).
* **Exactly once**: a dispute opens once (its hold's transaction id is derived from the dispute
  id) and closes once (only from ``open``: ``InvalidState``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.errors import InvalidAmount, InvalidState
from chalicelib.domain.transactions import derive_transaction_id


class DisputeStatus(StrEnum):
    OPEN = "open"
    # Stripe's statuses of a dispute, as its closing event reports them.
    WON = "won"
    LOST = "lost"
    WARNING_CLOSED = "warning_closed"
    CHARGE_REFUNDED = "charge_refunded"
    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    CLOSED = "closed"  # a closing event that named no status Stripe documents


def closing_status(text: str | None) -> DisputeStatus:
    """The status a ``charge.dispute.closed`` event reports (``closed`` if none is named)."""
    try:
        status = DisputeStatus(text or DisputeStatus.CLOSED)
    except ValueError:
        return DisputeStatus.CLOSED
    return DisputeStatus.CLOSED if status is DisputeStatus.OPEN else status


def hold_transaction_id(dispute_id: str) -> str:
    return derive_transaction_id("dispute", dispute_id)


def held_for(amount: int, available: int, *, rolled_back: bool) -> int:
    """What a new dispute holds: the disputed amount, as far as the wallet covers it."""
    if rolled_back:
        return 0  # an admin already took the deposit back from the wallet
    return max(0, min(amount, available))


@dataclass(frozen=True)
class Dispute:
    id: str
    deposit_id: str
    user_id: str
    payment_intent_id: str
    amount: int  # disputed, minor units
    held_amount: int  # what the wallet could cover when the dispute opened
    currency: str
    status: DisputeStatus
    transaction_id: str | None  # the hold; none when nothing could be held
    created_at: str
    closed_at: str | None = None

    @classmethod
    def opened(
        cls,
        dispute_id: str,
        *,
        deposit_id: str,
        user_id: str,
        payment_intent_id: str,
        amount: int,
        held: int,
        currency: str,
        at: str,
    ) -> Dispute:
        """Raises InvalidAmount unless ``0 <= held <= amount``."""
        if not 0 <= held <= amount:
            raise InvalidAmount(f"dispute {dispute_id} cannot hold {held} of {amount}")
        return cls(
            id=dispute_id,
            deposit_id=deposit_id,
            user_id=user_id,
            payment_intent_id=payment_intent_id,
            amount=amount,
            held_amount=held,
            currency=currency,
            status=DisputeStatus.OPEN,
            transaction_id=hold_transaction_id(dispute_id) if held else None,
            created_at=at,
        )

    @property
    def shortfall(self) -> int:
        """What the platform loses beyond the hold: nothing unless the dispute is lost."""
        if self.status is DisputeStatus.OPEN or self.lost:
            return self.amount - self.held_amount
        return 0

    @property
    def lost(self) -> bool:
        """Only a lost dispute takes the held money; every other closing releases it."""
        return self.status is DisputeStatus.LOST

    def closed(self, status: DisputeStatus, at: str) -> Dispute:
        """Raises InvalidState unless the dispute is open (it closes once)."""
        if self.status is not DisputeStatus.OPEN:
            raise InvalidState(f"dispute {self.id} is closed")
        if status is DisputeStatus.OPEN:
            status = DisputeStatus.CLOSED
        return replace(self, status=status, closed_at=at)
