"""Withdrawals: a user's request to send crypto out of their wallet, and its review.

Life of a withdrawal::

    pending_review --approve--> processing --complete--> completed
         |                          `------fail------> failed
         |--cancel (the user)--> cancelled
         |--reject (an admin)--> rejected
         `--expire (not reviewed in time)--> expired

Rules kept here:

* the amount is positive minor units of the withdrawal's currency; the destination is 8 to 128
  letters, digits or ``:._-``; a currency's minimum and daily limit, when it has them, hold;
* only a ``pending_review`` withdrawal is decided (approved, cancelled, rejected, expired); only a
  ``processing`` one is settled (completed, failed); ``completed``, ``failed``, ``cancelled``,
  ``rejected`` and ``expired`` are final;
* the hold on the amount stays while the withdrawal is ``pending_review`` or ``processing``; it is
  posted by ``completed`` and released by every other final status (``releases_hold``), and a
  released amount is given back to the day's total when that total still counts.

Each transition is written on the condition that the stored status is still the one it left, in
the same write as the hold's change, so two decisions can never both happen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.errors import (
    AmountBelowMinimum,
    InvalidRequest,
    WithdrawalLimitExceeded,
    WithdrawalNotPendingReview,
    WithdrawalNotProcessing,
)
from chalicelib.domain.money import format_amount
from chalicelib.domain.transactions import derive_transaction_id

MAX_REASON_LENGTH = 500
_DESTINATION = re.compile(r"[A-Za-z0-9:._-]{8,128}")


class WithdrawalStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    PROCESSING = "processing"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"
    EXPIRED = "expired"  # left in pending_review past the review window; hold released


@dataclass(frozen=True)
class Withdrawal:
    id: str
    user_id: str
    currency: str
    amount: int  # positive minor units
    destination: str
    status: WithdrawalStatus
    transaction_id: str  # the hold
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    # The mark of the request that decided it (api.idempotency.request_mark), when it had an
    # Idempotency-Key: its retry after a lost answer recognises its own decision.
    decided_request: str | None = None
    # The risk rule that asked for this withdrawal's review (services/risk.py): the review is
    # the withdrawal's own, so a risk review opens no second hold (docs/risk.md).
    risk_rule: str | None = None

    @classmethod
    def requested(
        cls,
        *,
        user_id: str,
        currency: str,
        amount: int,
        destination: str,
        idempotency_key: str,
        at: str,
        minimum: int | None = None,
        daily_limit: int | None = None,
    ) -> Withdrawal:
        """A new withdrawal waiting for review; its id and its hold's id are derived from the
        user and the request's Idempotency-Key, so a retried request names the same withdrawal.

        Raises (in order):
            InvalidRequest: the destination is not a valid address.
            AmountBelowMinimum: below the currency's ``minimum``.
            WithdrawalLimitExceeded: more than the currency's ``daily_limit`` on its own.
        """
        if not isinstance(destination, str) or not _DESTINATION.fullmatch(destination):
            raise InvalidRequest(
                "destination must be 8 to 128 letters, digits or :._-",
                [{"field": "destination", "message": "not a valid address"}],
            )
        if minimum is not None and amount < minimum:
            raise AmountBelowMinimum(
                f"the minimum {currency} withdrawal is {format_amount(minimum, currency)}"
            )
        if daily_limit is not None and amount > daily_limit:
            raise WithdrawalLimitExceeded(
                f"the daily {currency} limit is {format_amount(daily_limit, currency)}"
            )
        transaction_id = derive_transaction_id("withdrawal", user_id, idempotency_key)
        return cls(
            id="wd_" + transaction_id.removeprefix("txn_"),
            user_id=user_id,
            currency=currency,
            amount=amount,
            destination=destination,
            status=WithdrawalStatus.PENDING_REVIEW,
            transaction_id=transaction_id,
            created_at=at,
        )

    @property
    def day(self) -> str:
        """The day (``yyyy-mm-dd``) whose total this withdrawal counts in."""
        return self.created_at[:10]

    @property
    def releases_hold(self) -> bool:
        """Whether reaching this status released the hold (every final status but completed)."""
        return self.status in _RELEASING

    def decided_by_request(self, status: WithdrawalStatus, request: str | None) -> bool:
        """True when it is already ``status`` by the request marked ``request``: this request's
        own earlier decision, whose answer was lost after it committed."""
        return request is not None and self.status == status and self.decided_request == request

    # -- decisions: only from pending_review -----------------------------------------------------
    def approved(self, by: str, at: str, request: str | None = None) -> Withdrawal:
        """Raises WithdrawalNotPendingReview."""
        return self._decided(WithdrawalStatus.PROCESSING, by, at, None, request)

    def cancelled(self, by: str, at: str, request: str | None = None) -> Withdrawal:
        """The user takes it back. Raises WithdrawalNotPendingReview."""
        return self._decided(WithdrawalStatus.CANCELLED, by, at, None, request)

    def rejected(self, by: str, at: str, reason: str, request: str | None = None) -> Withdrawal:
        """An admin refuses it. Raises InvalidRequest (reason), WithdrawalNotPendingReview."""
        return self._decided(WithdrawalStatus.REJECTED, by, at, checked_reason(reason), request)

    def expired(self, at: str, reason: str) -> Withdrawal:
        """Not reviewed in time. Raises WithdrawalNotPendingReview."""
        return self._decided(WithdrawalStatus.EXPIRED, "system", at, reason, None)

    def _decided(
        self,
        status: WithdrawalStatus,
        by: str,
        at: str,
        reason: str | None,
        request: str | None,
    ) -> Withdrawal:
        if self.status is not WithdrawalStatus.PENDING_REVIEW:
            raise WithdrawalNotPendingReview(
                f"withdrawal {self.id} is {self.status.value}, not pending review"
            )
        return replace(
            self,
            status=status,
            decided_by=by,
            decided_at=at,
            reason=reason if reason is not None else self.reason,
            decided_request=request if request is not None else self.decided_request,
        )

    # -- settlement by the crypto gateway: only from processing ----------------------------------
    def completed(self, at: str) -> Withdrawal:
        """The payout went out. Raises WithdrawalNotProcessing."""
        return self._settled(WithdrawalStatus.COMPLETED, at, None)

    def failed(self, at: str, reason: str | None) -> Withdrawal:
        """The payout did not go out (the gateway said so, or refused it too often); the reason
        is cut to ``MAX_REASON_LENGTH``. Raises WithdrawalNotProcessing."""
        return self._settled(
            WithdrawalStatus.FAILED, at, reason[:MAX_REASON_LENGTH] if reason else None
        )

    def _settled(self, status: WithdrawalStatus, at: str, reason: str | None) -> Withdrawal:
        if self.status is not WithdrawalStatus.PROCESSING:
            raise WithdrawalNotProcessing(
                f"withdrawal {self.id} is {self.status.value}, not processing"
            )
        return replace(self, status=status, decided_at=at, reason=reason if reason else self.reason)


_RELEASING = frozenset(
    {
        WithdrawalStatus.CANCELLED,
        WithdrawalStatus.REJECTED,
        WithdrawalStatus.EXPIRED,
        WithdrawalStatus.FAILED,
    }
)


def checked_reason(reason: object) -> str:
    """An admin's reason, stripped. Raises InvalidRequest: blank or over MAX_REASON_LENGTH."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not text or len(text) > MAX_REASON_LENGTH:
        raise InvalidRequest(
            f"reason must have 1 to {MAX_REASON_LENGTH} characters",
            [{"field": "reason", "message": "blank or too long"}],
        )
    return text
