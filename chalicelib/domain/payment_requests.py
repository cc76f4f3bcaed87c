"""Payment requests: a facility asks a user to pay it an amount (API.md, "Facilities").

Life of a payment request::

    open --pay (the payer)---------> paid       the money moves in the same write
      |--decline (the payer)-------> declined
      |--cancel (the facility)-----> cancelled
      |--expire (past expires_at)--> expired    shown at once, stored by the expiry job
      `--pay, held by a risk review--> open, held (review_id): nothing else moves it
            |--review approved-------> paid       the hold posted in the same write
            `--rejected or expired---> open again (attempt + 1), or expired if past expires_at

Rules kept here:

* the amount is positive minor units of the request's currency; ``expires_in`` is whole seconds
  from ``MIN_EXPIRES_IN`` (a minute) to ``MAX_EXPIRES_IN`` (90 days), 7 days when left out; the
  memo has at most ``MAX_MEMO_LENGTH`` characters;
* only an ``open`` request that has not reached ``expires_at`` is paid, declined or cancelled;
  ``paid``, ``declined``, ``cancelled`` and ``expired`` are final. A request still stored ``open``
  past ``expires_at`` *is* expired (``status_at``): every reader shows it so, and no move but
  ``expire`` leaves it;
* a request is paid at most once: its payment's transaction id is derived from the request id
  (``payment_transaction_id``), and the request turns ``paid`` in the same write as that money, on
  the condition that it is still open and not expired, so a pay racing a cancel, a decline or
  another pay cannot both happen;
* a request created with an Idempotency-Key has an id derived from the facility and the key, so
  the retry of its creation names the same request (``new``); ``creation_hash`` tells a retry
  from the same key reused for another request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from chalicelib.domain.errors import InvalidRequest, PaymentRequestNotOpen
from chalicelib.domain.money import format_amount
from chalicelib.domain.transactions import derive_transaction_id

MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 90 * 24 * 3600
DEFAULT_EXPIRES_IN = 7 * 24 * 3600
MAX_MEMO_LENGTH = 500
_ID = re.compile(r"pr_[0-9a-f]{32}")


class PaymentRequestStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


STATUSES = tuple(status.value for status in PaymentRequestStatus)


def is_payment_request_id(text: str) -> bool:
    """Whether ``text`` can name a payment request at all (anything else is found nowhere)."""
    return bool(_ID.fullmatch(text))


def payment_transaction_id(request_id: str, attempt: int = 0) -> str:
    """The id of the transaction of the request's ``attempt``-th payment: a second payment of one
    attempt cannot be written. An attempt ends only when a risk review of its payment is rejected
    or expires (``released``); the first attempt's id names the request alone."""
    if attempt == 0:
        return derive_transaction_id("payment_request", request_id)
    return derive_transaction_id("payment_request", request_id, str(attempt))


def creation_hash(payer_email: str, currency: str, amount: int, memo: str, expires_in: int) -> str:
    """What a creation request asked for, to tell its retry (same key, same request) from the same
    Idempotency-Key reused for another one."""
    material = "\x1f".join(
        (payer_email.strip().lower(), currency, str(amount), memo, str(expires_in))
    )
    return hashlib.sha256(material.encode()).hexdigest()


def checked_expires_in(expires_in: int | None) -> int:
    """Raises InvalidRequest: not whole seconds from MIN_EXPIRES_IN to MAX_EXPIRES_IN."""
    if expires_in is None:
        return DEFAULT_EXPIRES_IN
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise InvalidRequest("expires_in must be a whole number of seconds")
    if not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise InvalidRequest(
            f"expires_in must be from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} seconds",
            [{"field": "expires_in", "message": "out of range"}],
        )
    return expires_in


def checked_memo(memo: str) -> str:
    """Raises InvalidRequest: longer than MAX_MEMO_LENGTH."""
    if len(memo) > MAX_MEMO_LENGTH:
        raise InvalidRequest(
            f"memo has more than {MAX_MEMO_LENGTH} characters",
            [{"field": "memo", "message": "too long"}],
        )
    return memo


@dataclass(frozen=True)
class PaymentRequest:
    id: str
    facility_id: str
    payer_id: str
    payer_email: str
    currency: str
    amount: int  # positive minor units
    memo: str
    status: PaymentRequestStatus  # as stored: ``status_at`` is the status as of a moment
    created_at: str
    expires_at: str
    transaction_id: str | None = None  # the payment, once paid
    paid_at: str | None = None
    decided_at: str | None = None  # declined, cancelled or expired at
    # What the creation request asked for, when it had an Idempotency-Key (``creation_hash``).
    creation: str | None = None
    # The mark of the request that declined or cancelled it, when it had an Idempotency-Key: its
    # retry after a lost answer recognises its own decision (as withdrawals do).
    decided_request: str | None = None
    # Payment attempts ended by a rejected or expired risk review; names the next payment's id.
    attempt: int = 0
    # The risk review holding the payment ``transaction_id`` while the request is still open (a
    # held request); kept once that payment is approved and the request paid.
    review_id: str | None = None

    @classmethod
    def new(
        cls,
        *,
        facility_id: str,
        payer_id: str,
        payer_email: str,
        currency: str,
        amount: int,
        memo: str,
        expires_in: int,
        at: str,
        expires_at: str,
        idempotency_key: str | None,
    ) -> PaymentRequest:
        """An open request. With an Idempotency-Key its id is derived from the facility and
        the key (the retry names the same request); without one it is random."""
        if idempotency_key is not None:
            material = f"payment_request\x1f{facility_id}\x1f{idempotency_key}".encode()
            request_id = "pr_" + hashlib.sha256(material).hexdigest()[:32]
            creation: str | None = creation_hash(payer_email, currency, amount, memo, expires_in)
        else:
            request_id = "pr_" + secrets.token_hex(16)
            creation = None
        return cls(
            id=request_id,
            facility_id=facility_id,
            payer_id=payer_id,
            payer_email=payer_email,
            currency=currency,
            amount=amount,
            memo=memo,
            status=PaymentRequestStatus.OPEN,
            created_at=at,
            expires_at=expires_at,
            creation=creation,
        )

    # -- reading -----------------------------------------------------------------------------------
    def status_at(self, now: str) -> PaymentRequestStatus:
        """The status as of ``now``: stored ``open`` past ``expires_at`` is ``expired``, unless
        its payment is held for review (it stays open until the review is decided)."""
        if self.status is PaymentRequestStatus.OPEN and now >= self.expires_at and not self.held:
            return PaymentRequestStatus.EXPIRED
        return self.status

    def view(self, now: str) -> Mapping[str, Any]:
        """The request as the API shows it (and as the webhook events carry it), as of ``now``."""
        return {
            "id": self.id,
            "status": self.status_at(now).value,
            "amount": format_amount(self.amount, self.currency),
            "currency": self.currency,
            "payer_email": self.payer_email,
            "memo": self.memo,
            "facility_id": self.facility_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "transaction_id": self.transaction_id,
            "paid_at": self.paid_at,
            "decided_at": self.decided_at,
            "review_id": self.review_id,
        }

    def decided_by_request(self, status: PaymentRequestStatus, request: str | None) -> bool:
        """True when it is already ``status`` by the request marked ``request``: that request's
        own earlier decision, whose answer was lost after it committed."""
        return request is not None and self.status == status and self.decided_request == request

    @property
    def held(self) -> bool:
        """Open, with its payment held by a risk review (nothing else moves it meanwhile)."""
        return self.status is PaymentRequestStatus.OPEN and self.review_id is not None

    @property
    def next_transaction_id(self) -> str:
        """The id of the payment of the current attempt."""
        return payment_transaction_id(self.id, self.attempt)

    # -- moves: only from open, and only before expires_at ---------------------------------------
    def paid(self, at: str) -> PaymentRequest:
        """Paid now by the payment ``next_transaction_id``. Raises PaymentRequestNotOpen."""
        self._require_open(at)
        return replace(
            self,
            status=PaymentRequestStatus.PAID,
            transaction_id=self.next_transaction_id,
            paid_at=at,
        )

    def held_by(self, review_id: str, at: str) -> PaymentRequest:
        """Its payment ``next_transaction_id`` held for the review ``review_id``: still open.
        Raises PaymentRequestNotOpen."""
        self._require_open(at)
        return replace(self, transaction_id=self.next_transaction_id, review_id=review_id)

    def approved(self, at: str) -> PaymentRequest:
        """The held payment's review approved it: paid by that payment, whatever the time (the
        payer paid before ``expires_at``). Raises PaymentRequestNotOpen unless held."""
        if not self.held:
            raise PaymentRequestNotOpen(f"payment request {self.id} has no held payment")
        return replace(self, status=PaymentRequestStatus.PAID, paid_at=at)

    def released(self) -> PaymentRequest:
        """The held payment's review rejected it or expired: open again (or expired, if past
        ``expires_at``) for a next attempt. Raises PaymentRequestNotOpen unless held."""
        if not self.held:
            raise PaymentRequestNotOpen(f"payment request {self.id} has no held payment")
        return replace(self, transaction_id=None, review_id=None, attempt=self.attempt + 1)

    def declined(self, at: str, request: str | None = None) -> PaymentRequest:
        """The payer refuses it. Raises PaymentRequestNotOpen."""
        return self._decided(PaymentRequestStatus.DECLINED, at, request)

    def cancelled(self, at: str, request: str | None = None) -> PaymentRequest:
        """The facility takes it back. Raises PaymentRequestNotOpen."""
        return self._decided(PaymentRequestStatus.CANCELLED, at, request)

    def expired(self, at: str) -> PaymentRequest:
        """Stored as expired, once ``at`` is past ``expires_at``. Raises PaymentRequestNotOpen
        (not stored open, or not yet due)."""
        if self.status_at(at) is not PaymentRequestStatus.EXPIRED or (
            self.status is not PaymentRequestStatus.OPEN or self.held
        ):
            raise PaymentRequestNotOpen(f"payment request {self.id} is not open and due")
        return replace(self, status=PaymentRequestStatus.EXPIRED, decided_at=at)

    def _decided(
        self, status: PaymentRequestStatus, at: str, request: str | None
    ) -> PaymentRequest:
        self._require_open(at)
        return replace(
            self,
            status=status,
            decided_at=at,
            decided_request=request if request is not None else self.decided_request,
        )

    def _require_open(self, at: str) -> None:
        now = self.status_at(at)
        if now is not PaymentRequestStatus.OPEN:
            raise PaymentRequestNotOpen(f"payment request {self.id} is {now.value}, not open")
        if self.held:
            raise PaymentRequestNotOpen(f"payment request {self.id} has a payment held for review")
