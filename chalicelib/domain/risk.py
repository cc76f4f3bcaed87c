"""Risk rules, the per-user velocity counter they read, their verdict, and the review of a held
operation (API.md, "Risk"; docs/risk.md).

Rules are one versioned set an admin replaces as a whole. Each rule has an admin-chosen ``id``
(unique in the set), a ``kind`` and an ``action``:

* ``amount_over``: this one operation is over ``amount`` (of ``currency``);
* ``daily_amount_over``: the user's total of ``currency`` in the last 24 h, this operation
  included, is over ``amount``;
* ``daily_count_over``: more than ``count`` operations in the last 24 h, this one included (of
  ``currency`` when the rule names one, of every currency otherwise);
* ``new_recipients_over``: more than ``count`` distinct recipients first paid in the last 24 h,
  this operation's recipient included when it is new;
* ``account_younger_than``: the user signed up less than ``hours`` ago and the operation is over
  ``amount`` of ``currency`` (any operation, without an amount).

``user_id`` narrows a rule to one user; ``currency`` narrows every kind to that currency. The
action is ``review`` (the money is held until an admin decides) or ``block`` (nothing moves).
When several rules match, ``block`` wins over ``review``; among equals the first in the set names
the verdict.

The counter (``Counter``) keeps, per user, hourly buckets of amounts and counts per currency for
the last 24 hours, and when each recipient was first paid. "The last 24 h" is the current hour
and the 23 before it. It is versioned: the money's own write updates it on the condition that it
is still the version the verdict was computed from, so two racing operations cannot both slip
under a daily limit (the loser is assessed again against the winner's counts).

Life of a review::

    open --approve--> approved   (the hold is posted)
      |---reject----> rejected   (the hold is voided)
      `---expire----> expired    (not decided within RISK_REVIEW_HOURS; the hold is voided)

Only an ``open`` review is decided, in the same write as the posting or voiding of its hold.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from chalicelib.domain.errors import (
    InvalidAmount,
    InvalidRequest,
    ReviewNotOpen,
    UnsupportedCurrency,
)
from chalicelib.domain.money import currency, format_amount, parse_amount
from chalicelib.domain.transactions import derive_transaction_id

MAX_RULES = 100
MAX_COUNT = 1_000_000
MAX_HOURS = 24 * 3650
MAX_REASON_LENGTH = 500
WINDOW_HOURS = 24
# Recipients remembered per user (the most recently first paid); one forgotten and paid again
# counts as new again, which can only raise a ``new_recipients_over`` count, never lower it.
MAX_KNOWN_RECIPIENTS = 500
_RULE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class RuleKind(StrEnum):
    AMOUNT_OVER = "amount_over"
    DAILY_AMOUNT_OVER = "daily_amount_over"
    DAILY_COUNT_OVER = "daily_count_over"
    NEW_RECIPIENTS_OVER = "new_recipients_over"
    ACCOUNT_YOUNGER_THAN = "account_younger_than"


class RuleAction(StrEnum):
    REVIEW = "review"
    BLOCK = "block"


class Decision(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"


class Operation(StrEnum):
    """What is assessed; every kind counts in the same per-user totals."""

    TRANSFER = "transfer"
    PAYMENT = "payment"  # to a facility (POST /v1/transfers with to_facility_id)
    PAYMENT_REQUEST = "payment_request"
    WITHDRAWAL = "withdrawal"
    CARD_DEPOSIT = "card_deposit"


class ReviewStatus(StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


# Which optional fields each kind needs (True), takes (False) or refuses (absent).
# Per kind, the optional fields it uses, and whether each is required.
RULE_FIELDS: Mapping[RuleKind, Mapping[str, bool]] = {
    RuleKind.AMOUNT_OVER: {"currency": True, "amount": True},
    RuleKind.DAILY_AMOUNT_OVER: {"currency": True, "amount": True},
    RuleKind.DAILY_COUNT_OVER: {"currency": False, "count": True},
    RuleKind.NEW_RECIPIENTS_OVER: {"currency": False, "count": True},
    RuleKind.ACCOUNT_YOUNGER_THAN: {"currency": False, "amount": False, "hours": True},
}
_OPTIONAL = ("currency", "amount", "count", "hours", "user_id")


@dataclass(frozen=True)
class Rule:
    id: str
    kind: RuleKind
    action: RuleAction
    currency: str | None = None
    amount: int | None = None  # minor units of ``currency``
    count: int | None = None
    hours: int | None = None
    user_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as the API shows it (amounts as decimal strings); absent fields left out."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "action": self.action.value}
        if self.currency is not None:
            out["currency"] = self.currency
        if self.amount is not None and self.currency is not None:
            out["amount"] = format_amount(self.amount, self.currency)
        for name in ("count", "hours", "user_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def applies_to(self, check: Check) -> bool:
        if self.user_id is not None and self.user_id != check.user_id:
            return False
        return self.currency is None or self.currency == check.currency


@dataclass(frozen=True)
class RuleSet:
    version: int  # 0: never set
    rules: tuple[Rule, ...] = ()
    updated_at: str | None = None
    updated_by: str | None = None

    @property
    def empty(self) -> bool:
        return not self.rules

    def replaced(self, rules: Sequence[Rule], at: str, by: str) -> RuleSet:
        return RuleSet(self.version + 1, tuple(rules), at, by)

    def to_json(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self.rules]


def parse_rules(raw: Any) -> tuple[Rule, ...]:
    """The rules of a ``PUT /v1/admin/risk/rules`` body, every problem listed.

    Raises:
        InvalidRequest: with ``details`` naming each bad field (``rules.<i>.<field>``).
    """
    problems: list[dict[str, str]] = []
    if not isinstance(raw, list):
        raise InvalidRequest("rules must be a list", [{"field": "rules", "message": "a list"}])
    if len(raw) > MAX_RULES:
        raise InvalidRequest(
            "too many rules", [{"field": "rules", "message": f"at most {MAX_RULES} rules"}]
        )
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"rules.{index}"

        def bad(name: str, message: str, where: str = where) -> None:
            problems.append({"field": f"{where}.{name}" if name else where, "message": message})

        if not isinstance(item, dict):
            bad("", "each rule is an object")
            continue
        unknown = set(item) - {"id", "kind", "action", *_OPTIONAL}
        for name in sorted(unknown):
            bad(name, "unknown field")
        rule_id, kind, action = item.get("id"), item.get("kind"), item.get("action")
        if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
            bad("id", "1 to 64 letters, digits or _.:-")
            rule_id = None
        elif rule_id in seen:
            bad("id", f"{rule_id!r} is used by another rule of the set")
        else:
            seen.add(rule_id)
        if not isinstance(kind, str) or kind not in {k.value for k in RuleKind}:
            bad("kind", f"one of {', '.join(k.value for k in RuleKind)}")
            kind = None
        if not isinstance(action, str) or action not in {a.value for a in RuleAction}:
            bad("action", f"one of {', '.join(a.value for a in RuleAction)}")
            action = None
        fields: dict[str, Any] = {}
        wanted = RULE_FIELDS[RuleKind(kind)] if kind else {}
        for name in ("currency", "amount", "count", "hours"):
            present = item.get(name) is not None
            if kind and present and name not in wanted:
                bad(name, f"not used by {kind}")
            elif kind and not present and wanted.get(name):
                bad(name, f"required by {kind}")
        code = item.get("currency")
        if code is not None:
            try:
                fields["currency"] = currency(code).code
            except UnsupportedCurrency:
                bad("currency", "one of BTC, ETH, USD, USDT")
        if item.get("amount") is not None:
            if code is None:
                bad("amount", "an amount needs its currency")
            elif "currency" in fields:
                try:
                    fields["amount"] = parse_amount(item["amount"], fields["currency"])
                except InvalidAmount as exc:
                    bad("amount", str(exc))
        for name, top in (("count", MAX_COUNT), ("hours", MAX_HOURS)):
            value = item.get(name)
            if value is None:
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # 24.0 is the whole number JSON Schema says it is
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                low = 1 if name == "hours" else 0
                bad(name, f"a whole number from {low} to {top}")
            elif name == "hours" and value == 0:
                bad(name, f"a whole number from 1 to {top}")
            else:
                fields[name] = value
        user_id = item.get("user_id")
        if user_id is not None:
            if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
                bad("user_id", "a user id")
            else:
                fields["user_id"] = user_id
        if rule_id and kind and action:
            rules.append(Rule(id=rule_id, kind=RuleKind(kind), action=RuleAction(action), **fields))
    if problems:
        raise InvalidRequest("the rules are not valid", problems)
    return tuple(rules)


def rules_from_json(text: str) -> tuple[Rule, ...]:
    """Rules as stored (``rules_to_json``): minor units, checked when they were set."""
    return tuple(
        Rule(
            id=r["id"],
            kind=RuleKind(r["kind"]),
            action=RuleAction(r["action"]),
            currency=r.get("currency"),
            amount=int(r["amount"]) if r.get("amount") is not None else None,
            count=r.get("count"),
            hours=r.get("hours"),
            user_id=r.get("user_id"),
        )
        for r in json.loads(text or "[]")
    )


def rules_to_json(rules: Iterable[Rule]) -> str:
    stored = []
    for r in rules:
        item: dict[str, Any] = {"id": r.id, "kind": r.kind.value, "action": r.action.value}
        for name in ("currency", "count", "hours", "user_id"):
            if getattr(r, name) is not None:
                item[name] = getattr(r, name)
        if r.amount is not None:
            item["amount"] = str(r.amount)
        stored.append(item)
    return json.dumps(stored, separators=(",", ":"), sort_keys=True)


# -- the counter ----------------------------------------------------------------------------------
def hour_of(at: str) -> str:
    """The hour bucket of an ISO instant: ``YYYY-MM-DDTHH``."""
    return at[:13]


def _hours_ago(at: str, hours: int) -> str:
    moment = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
    return (moment - timedelta(hours=hours)).strftime("%Y-%m-%dT%H")


def recipient_key(recipient: str) -> str:
    """A short fixed-size key for a recipient (a wallet, a facility, an address)."""
    return hashlib.sha256(recipient.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Check:
    """One operation to assess."""

    user_id: str
    operation: Operation
    amount: int
    currency: str
    at: str
    recipient: str | None = None  # what the money goes to; None: a deposit
    user_created_at: str | None = None


@dataclass(frozen=True)
class Counter:
    """A user's last 24 h: ``hours[hour][currency] = [amount, count]`` and ``recipients[key] =
    hour first paid``. ``version`` 0: never stored (or expired)."""

    user_id: str
    version: int = 0
    hours: Mapping[str, Mapping[str, tuple[int, int]]] = field(default_factory=dict)
    recipients: Mapping[str, str] = field(default_factory=dict)

    def _recent(self, at: str) -> dict[str, Mapping[str, tuple[int, int]]]:
        # The current hour and the 24 before it: at least the last 24 h, never less (an
        # operation of 10:59 still counts at 10:00 the next day).
        oldest = _hours_ago(at, WINDOW_HOURS)
        return {h: v for h, v in self.hours.items() if h >= oldest}

    def amount_in_window(self, code: str, at: str) -> int:
        return sum(v.get(code, (0, 0))[0] for v in self._recent(at).values())

    def count_in_window(self, code: str | None, at: str) -> int:
        total = 0
        for per_currency in self._recent(at).values():
            for c, (_amount, count) in per_currency.items():
                if code is None or c == code:
                    total += count
        return total

    def is_new(self, recipient: str) -> bool:
        return recipient_key(recipient) not in self.recipients

    def new_recipients_in_window(self, at: str) -> int:
        oldest = _hours_ago(at, WINDOW_HOURS)
        return sum(1 for first in self.recipients.values() if first >= oldest)

    def with_operation(self, check: Check) -> Counter:
        """The counter after ``check`` (next version; hours older than the window dropped)."""
        hour = hour_of(check.at)
        hours = {h: dict(v) for h, v in self._recent(check.at).items()}
        bucket = hours.setdefault(hour, {})
        amount, count = bucket.get(check.currency, (0, 0))
        bucket[check.currency] = (amount + check.amount, count + 1)
        recipients = dict(self.recipients)
        if check.recipient is not None and self.is_new(check.recipient):
            recipients[recipient_key(check.recipient)] = hour
            if len(recipients) > MAX_KNOWN_RECIPIENTS:
                kept = sorted(recipients.items(), key=lambda kv: kv[1])[-MAX_KNOWN_RECIPIENTS:]
                recipients = dict(kept)
        return Counter(self.user_id, self.version + 1, hours, recipients)

    def to_json(self) -> str:
        return json.dumps(
            {
                "h": {h: {c: list(v) for c, v in per.items()} for h, per in self.hours.items()},
                "r": dict(self.recipients),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, user_id: str, version: int, text: str | None) -> Counter:
        data = json.loads(text or "{}")
        hours = {
            h: {c: (int(v[0]), int(v[1])) for c, v in per.items()}
            for h, per in data.get("h", {}).items()
        }
        return cls(user_id, version, hours, dict(data.get("r", {})))


# -- the verdict ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    decision: Decision
    rule: Rule | None = None

    @property
    def rule_id(self) -> str | None:
        return self.rule.id if self.rule is not None else None


ALLOW = Verdict(Decision.ALLOW)


def _older_than(created_at: str | None, at: str, hours: int) -> bool:
    if created_at is None:
        return True
    born = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    now = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return now - born >= timedelta(hours=hours)


def matches(rule: Rule, check: Check, counter: Counter) -> bool:
    """Whether ``rule`` fires for ``check``, given the user's counter before it."""
    if not rule.applies_to(check):
        return False
    at = check.at
    if rule.kind is RuleKind.AMOUNT_OVER:
        return check.amount > (rule.amount or 0)
    if rule.kind is RuleKind.DAILY_AMOUNT_OVER:
        return counter.amount_in_window(check.currency, at) + check.amount > (rule.amount or 0)
    if rule.kind is RuleKind.DAILY_COUNT_OVER:
        return counter.count_in_window(rule.currency, at) + 1 > (rule.count or 0)
    if rule.kind is RuleKind.NEW_RECIPIENTS_OVER:
        if check.recipient is None or not counter.is_new(check.recipient):
            return False
        return counter.new_recipients_in_window(at) + 1 > (rule.count or 0)
    if rule.kind is RuleKind.ACCOUNT_YOUNGER_THAN:
        young = not _older_than(check.user_created_at, at, rule.hours or 0)
        return young and (rule.amount is None or check.amount > rule.amount)
    return False


def evaluate(rules: RuleSet, check: Check, counter: Counter) -> Verdict:
    """The verdict of the rule set on ``check``: block beats review beats allow."""
    fired = [rule for rule in rules.rules if matches(rule, check, counter)]
    for action, decision in (
        (RuleAction.BLOCK, Decision.BLOCK),
        (RuleAction.REVIEW, Decision.REVIEW),
    ):
        for rule in fired:
            if rule.action is action:
                return Verdict(decision, rule)
    return ALLOW


# -- reviews --------------------------------------------------------------------------------------
def review_id_for(transaction_id: str) -> str:
    """The review of a held transaction: one per transaction, found again by a retry."""
    return "rev_" + derive_transaction_id("risk-review", transaction_id)[4:28]


def checked_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("a reason is required")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(f"reason has more than {MAX_REASON_LENGTH} characters")
    return reason.strip()


@dataclass(frozen=True)
class Review:
    id: str
    status: ReviewStatus
    user_id: str
    operation: Operation
    amount: int
    currency: str
    rule: str  # the id of the rule that asked for it
    rule_kind: str
    created_at: str
    transaction_id: str
    expires_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None

    @classmethod
    def opened(cls, check: Check, rule: Rule, transaction_id: str, review_hours: int) -> Review:
        expires = datetime.fromisoformat(check.at.replace("Z", "+00:00")) + timedelta(
            hours=review_hours
        )
        return cls(
            id=review_id_for(transaction_id),
            status=ReviewStatus.OPEN,
            user_id=check.user_id,
            operation=check.operation,
            amount=check.amount,
            currency=check.currency,
            rule=rule.id,
            rule_kind=rule.kind.value,
            created_at=check.at,
            transaction_id=transaction_id,
            expires_at=expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )

    def _decided(self, status: ReviewStatus, by: str, at: str, reason: str | None) -> Review:
        if self.status is not ReviewStatus.OPEN:
            raise ReviewNotOpen(f"review {self.id} is {self.status.value}")
        return replace(self, status=status, decided_by=by, decided_at=at, reason=reason)

    def approved(self, admin_id: str, at: str) -> Review:
        """Raises ReviewNotOpen: decided already, or past ``expires_at`` (the expiry job is about
        to release the hold; a late approval must not move the money)."""
        if self.status is ReviewStatus.OPEN and at >= self.expires_at:
            raise ReviewNotOpen(f"review {self.id} expired at {self.expires_at}")
        return self._decided(ReviewStatus.APPROVED, admin_id, at, None)

    def rejected(self, admin_id: str, at: str, reason: str) -> Review:
        return self._decided(ReviewStatus.REJECTED, admin_id, at, checked_reason(reason))

    def expired(self, at: str) -> Review:
        return self._decided(ReviewStatus.EXPIRED, "system", at, "not decided in time")

    @property
    def posts_hold(self) -> bool:
        return self.status is ReviewStatus.APPROVED
