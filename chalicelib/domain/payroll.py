"""Payroll payouts: a facility pays its staff, many users in one batch (API.md, "Facilities").

Life of a batch::

    (none) --reserve the payable total, store the batch--> processing
    processing --every payable item paid or failed, the rest returned--> completed
                                                                     | partially_completed

Rules kept here (and again by the store, in the same writes; docs/facilities.md, "Payroll
payouts"):

* all or nothing on funds: the batch is stored in the same write as one ``funding`` transaction
  that moves the total of the items it can pay (``reserved``) from the facility's account to the
  platform's payroll transit account; that debit is overdraft-checked like any other, so two
  batches that together exceed the facility's ``available`` cannot both be stored;
* an item whose recipient is unknown or unverified fails at once (``recipient_not_found``) and is
  not reserved: its amount never leaves the facility;
* each payable item is decided once: paid (its own transaction, id derived from the batch and the
  item's index, from the transit account to the recipient's wallet) or failed, never both, never
  twice; the item's outcome is written in the same write as its money;
* the batch completes once every payable item is decided; what was reserved and not paid goes back
  to the facility in one ``return`` transaction, written with the batch's final state and its
  ``payout.completed`` event; after it the transit account holds nothing of the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from chalicelib.domain.transactions import derive_transaction_id

MAX_ITEMS = 500
MAX_MEMO_LENGTH = 500
RECIPIENT_NOT_FOUND = "recipient_not_found"


class PayrollStatus(StrEnum):
    PROCESSING = "processing"
    COMPLETED = "completed"  # every item paid
    PARTIALLY_COMPLETED = "partially_completed"  # some item failed


class ItemStatus(StrEnum):
    PENDING = "pending"  # payable, not decided yet (only while the batch is processing)
    PAID = "paid"
    FAILED = "failed"


class PayrollIncomplete(Exception):
    """A batch cannot complete while a payable item is undecided (a bug if ever raised)."""


def is_payroll_id(text: str) -> bool:
    """Shaped like an id ``derive_payroll_id`` makes (anything else names no batch)."""
    return len(text) == 31 and text.startswith("po_") and all(c in _HEX for c in text[3:])


_HEX = frozenset("0123456789abcdef")


def derive_payroll_id(facility_id: str, idempotency_key: str) -> str:
    """The batch of a facility's request: its retry (same Idempotency-Key) names the same batch,
    so a crashed batch is found and finished instead of paid again."""
    material = f"payroll\x1f{facility_id}\x1f{idempotency_key}".encode()
    return "po_" + hashlib.sha256(material).hexdigest()[:28]


def request_fingerprint(currency: str, lines: tuple[tuple[str, int, str], ...]) -> str:
    """What a retry must repeat to be the same request (currency and every item, in order)."""
    material = "\x1e".join([currency, *("\x1f".join(map(str, line)) for line in lines)])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ItemOutcome:
    """How one payable item was decided (stored as its own small item)."""

    index: int
    status: ItemStatus
    transaction_id: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class PayrollItem:
    index: int
    to_email: str
    amount: int  # positive minor units
    memo: str
    recipient_id: str | None  # the verified user at creation; None: recipient_not_found
    status: ItemStatus
    error_code: str | None = None
    transaction_id: str | None = None

    @property
    def payable(self) -> bool:
        return self.recipient_id is not None


@dataclass(frozen=True)
class Payroll:
    id: str
    facility_id: str
    currency: str
    status: PayrollStatus
    items: tuple[PayrollItem, ...]
    created_at: str
    request_hash: str
    completed_at: str | None = None

    @classmethod
    def new(
        cls,
        payroll_id: str,
        facility_id: str,
        currency: str,
        lines: tuple[tuple[str, int, str], ...],
        recipients: Mapping[str, str],
        at: str,
    ) -> Payroll:
        """A batch as first stored: items whose email ``recipients`` (lower-case email -> verified
        user id) does not know fail at once; the others are pending."""
        items = []
        for index, (email, amount, memo) in enumerate(lines):
            recipient = recipients.get(email.strip().lower())
            items.append(
                PayrollItem(
                    index=index,
                    to_email=email,
                    amount=amount,
                    memo=memo,
                    recipient_id=recipient,
                    status=ItemStatus.PENDING if recipient else ItemStatus.FAILED,
                    error_code=None if recipient else RECIPIENT_NOT_FOUND,
                )
            )
        return cls(
            id=payroll_id,
            facility_id=facility_id,
            currency=currency,
            status=PayrollStatus.PROCESSING,
            items=tuple(items),
            created_at=at,
            request_hash=request_fingerprint(currency, lines),
        )

    # -- amounts ----------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Every item's amount: what the facility asked to pay."""
        return sum(i.amount for i in self.items)

    @property
    def reserved(self) -> int:
        """What the funding transaction moved out of the facility: the payable items' total."""
        return sum(i.amount for i in self.items if i.payable)

    @property
    def paid_total(self) -> int:
        return sum(i.amount for i in self.items if i.status is ItemStatus.PAID)

    @property
    def returned(self) -> int:
        """Reserved and not paid: what the return transaction gives back to the facility."""
        return self.reserved - self.paid_total

    @property
    def payable_items(self) -> tuple[PayrollItem, ...]:
        return tuple(i for i in self.items if i.payable)

    # -- transaction ids (exactly once) -----------------------------------------------------------
    @property
    def funding_transaction_id(self) -> str:
        return derive_transaction_id("payroll-funding", self.id)

    @property
    def return_transaction_id(self) -> str:
        return derive_transaction_id("payroll-return", self.id)

    def item_transaction_id(self, index: int) -> str:
        return derive_transaction_id("payroll-item", self.id, str(index))

    # -- moves ------------------------------------------------------------------------------------
    def settled(self, outcomes: Mapping[int, ItemOutcome], at: str) -> Payroll:
        """The batch once every payable item is decided: completed when all items were paid,
        partially_completed otherwise.

        Raises:
            PayrollIncomplete: a payable item has no outcome (or the batch is not processing).
        """
        if self.status is not PayrollStatus.PROCESSING:
            raise PayrollIncomplete(f"{self.id} is {self.status.value}")
        items = []
        for item in self.items:
            if not item.payable:
                items.append(item)
                continue
            outcome = outcomes.get(item.index)
            if outcome is None or outcome.status is ItemStatus.PENDING:
                raise PayrollIncomplete(f"{self.id}: item {item.index} is not decided")
            items.append(
                replace(
                    item,
                    status=outcome.status,
                    transaction_id=outcome.transaction_id,
                    error_code=outcome.error_code,
                )
            )
        all_paid = all(i.status is ItemStatus.PAID for i in items)
        return replace(
            self,
            items=tuple(items),
            status=PayrollStatus.COMPLETED if all_paid else PayrollStatus.PARTIALLY_COMPLETED,
            completed_at=at,
        )

    def with_outcomes(self, outcomes: Mapping[int, ItemOutcome]) -> Payroll:
        """The batch as it stands while processing: decided items show their outcome."""
        items = tuple(
            replace(
                item,
                status=outcomes[item.index].status,
                transaction_id=outcomes[item.index].transaction_id,
                error_code=outcomes[item.index].error_code,
            )
            if item.payable and item.index in outcomes
            else item
            for item in self.items
        )
        return replace(self, items=items)
