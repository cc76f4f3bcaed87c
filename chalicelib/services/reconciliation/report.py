"""A reconciliation report (API.md ``report``) and the shape of one mismatch in it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OK, MISMATCH = "ok", "mismatch"


@dataclass
class Report:
    date: str
    status: str
    transactions_checked: int
    accounts_checked: int
    trial_balance: dict[str, str]
    mismatches: list[dict[str, Any]]
    stripe: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The API.md ``report``."""
        return {
            "date": self.date,
            "status": self.status,
            "transactions_checked": self.transactions_checked,
            "accounts_checked": self.accounts_checked,
            "trial_balance": dict(self.trial_balance),
            "mismatches": [dict(m) for m in self.mismatches],
            "stripe": {
                "matched": self.stripe["matched"],
                "unmatched_ledger": list(self.stripe["unmatched_ledger"]),
                "unmatched_stripe": list(self.stripe["unmatched_stripe"]),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            date=data["date"],
            status=data["status"],
            transactions_checked=int(data["transactions_checked"]),
            accounts_checked=int(data["accounts_checked"]),
            trial_balance=dict(data["trial_balance"]),
            mismatches=list(data["mismatches"]),
            stripe=dict(data["stripe"]),
        )


def mismatch(check: str, detail: str, **subject: Any) -> dict[str, Any]:
    """One line of ``mismatches``: the check that failed, what it is about, and why."""
    return {"check": check, **subject, "detail": detail}


def no_stripe() -> dict[str, Any]:
    """The report's ``stripe`` part of a run that did not look at Stripe."""
    return {"matched": 0, "unmatched_ledger": [], "unmatched_stripe": []}
