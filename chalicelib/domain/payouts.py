"""Payout requests: what the crypto gateway must send for an approved withdrawal.

Life of a payout request::

    requested --handed to the gateway--> sent --the gateway's webhook--> completed | failed
        `---------------the gateway's webhook, before it was marked sent-------^

Rules kept here:

* one payout request per withdrawal, written with its approval, for the withdrawal's amount,
  currency and destination; the withdrawal id is the gateway's idempotency key, so asking the
  gateway twice still sends one payout;
* while ``requested`` it is in the "still to send" queue; one sender at a time holds a claim on
  it (``claimed_until``, unix seconds) and a claim that outlives its sender expires;
* a payout is only handed over while its withdrawal is ``processing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PayoutStatus(StrEnum):
    REQUESTED = "requested"
    SENT = "sent"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class PayoutRequest:
    withdrawal_id: str
    currency: str
    amount: int  # positive minor units
    destination: str
    status: PayoutStatus
    requested_at: str
    sent_at: str | None = None
    claimed_until: int | None = None  # unix seconds: a sender is handing it over until then
    failed_attempts: int = 0  # hand-offs the gateway failed

    @classmethod
    def for_withdrawal(
        cls, withdrawal_id: str, currency: str, amount: int, destination: str, at: str
    ) -> PayoutRequest:
        return cls(
            withdrawal_id=withdrawal_id,
            currency=currency,
            amount=amount,
            destination=destination,
            status=PayoutStatus.REQUESTED,
            requested_at=at,
        )

    @property
    def still_to_send(self) -> bool:
        return self.status is PayoutStatus.REQUESTED

    def claimable(self, now: int) -> bool:
        """Still to send and nobody holds a live claim on it."""
        return self.still_to_send and (self.claimed_until is None or self.claimed_until < now)
