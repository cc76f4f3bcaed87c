"""Adjustments: an operator's correction of one account, against the platform's adjustment
account of its currency (API.md, "Admin"; docs/runbooks/operations.md).

Rules kept here:

* the amount is signed, in the account's currency: positive puts money in, negative takes it
  out; never zero;
* at or above the four-eyes threshold (in USD-equivalent; an amount that cannot be valued in USD
  counts as above it), an adjustment waits for a second admin: ``pending_approval`` until another
  admin approves it; the admin who asked can never approve their own;
* an adjustment posts exactly once: its transaction id is derived from its id, and the approval
  is written with the money on the condition that the adjustment is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.errors import Forbidden, InvalidState
from chalicelib.domain.transactions import derive_transaction_id


class AdjustmentStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    POSTED = "posted"


@dataclass(frozen=True)
class Adjustment:
    id: str
    account_id: str
    currency: str
    amount: int  # signed minor units: positive into the account, negative out of it
    reason: str
    status: AdjustmentStatus
    requested_by: str
    requested_at: str
    approved_by: str | None = None
    approved_at: str | None = None

    @property
    def transaction_id(self) -> str:
        return adjustment_transaction_id(self.id)

    def approved(self, approver_id: str, at: str) -> Adjustment:
        """This adjustment approved by ``approver_id``.

        Raises:
            InvalidState: it is not waiting for approval.
            Forbidden: the approver is the admin who asked for it.
        """
        if self.status is not AdjustmentStatus.PENDING_APPROVAL:
            raise InvalidState(f"adjustment {self.id} is {self.status.value}, not pending approval")
        if approver_id == self.requested_by:
            raise Forbidden("an adjustment must be approved by another admin")
        return replace(
            self, status=AdjustmentStatus.POSTED, approved_by=approver_id, approved_at=at
        )


def adjustment_transaction_id(adjustment_id: str) -> str:
    return derive_transaction_id("adjustment", adjustment_id)


def needs_approval(usd_equivalent: int | None, threshold: int) -> bool:
    """Four eyes at or above ``threshold`` (USD minor units); ``None``: no USD value known."""
    return usd_equivalent is None or abs(usd_equivalent) >= threshold
