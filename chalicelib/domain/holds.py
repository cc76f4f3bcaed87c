"""When a hold expires, and who ends it then (DESIGN.md, guarantee 8: "every hold ends: each has
an owner that ends it or an expiry that a sweeper enforces").

A hold that must not outlive a deadline is written with a ``HoldExpiry`` in the same write. The
hold sweeper (``services/holds.py``) voids it once the deadline passed, through its owner's
lifecycle when it has one (a risk review turns ``expired``, a withdrawal ``expired``), so the
owner's status changes in the same write as the release; a hold without an owner is voided
alone, with an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HoldOwner(StrEnum):
    NONE = ""
    REVIEW = "review"
    WITHDRAWAL = "withdrawal"


@dataclass(frozen=True)
class HoldExpiry:
    transaction_id: str
    expires_at: str  # ISO instant: the hold is voided by the first sweep after it
    owner: HoldOwner = HoldOwner.NONE
    owner_id: str = ""  # the review's or the withdrawal's id
