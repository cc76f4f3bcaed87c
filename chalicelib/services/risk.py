"""Risk: the admin's rule set, the assessment of an operation before money moves, and the review
of the operations a rule holds (API.md, "Risk"; docs/risk.md).

One entry for every money path: ``record_assessed`` assesses the operation, refuses it
(``RiskDeclined``) when a ``block`` rule fires, and otherwise records its transaction through the
ledger engine with the user's counter update in the same ``TransactWriteItems``; when a
``review`` rule fires, the transaction is recorded as a hold (``available`` drops) with its open
review in that same write. The counter update is conditional on the counter's version: if
another operation of the user committed first, the write fails with ``RiskCounterChanged`` (a
``VersionConflict``), the engine retries, and its ``extra_for`` hook assesses the operation again
against the new counts before the next attempt; if the verdict changed (a daily limit is now
passed), the attempt is abandoned and the operation is recorded again under the new verdict. So
two parallel operations cannot both slip under a daily limit.

Card deposits move no money when they start, so they are only counted (``count_alone``): the
counter is written alone before the PaymentIntent exists, and ``review`` or ``block`` declines.

Rules are read through ``RulesCache``: kept in the process for ``RISK_RULES_TTL_SECONDS`` (10)
so the hot path does not read them; an empty set costs no counter read or write at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.domain.errors import (
    HoldNotPending,
    InvalidRequest,
    ReviewNotFound,
    ReviewNotOpen,
    RiskCounterChanged,
    RiskDeclined,
    RulesVersionConflict,
    VersionConflict,
)
from chalicelib.domain.holds import HoldExpiry, HoldOwner
from chalicelib.domain.risk import (
    ALLOW,
    Check,
    Counter,
    Decision,
    Operation,
    Review,
    ReviewStatus,
    RuleSet,
    Verdict,
    evaluate,
    parse_rules,
    review_id_for,
)
from chalicelib.domain.transactions import Transaction, TransactionType
from chalicelib.domain.users import AuditEvent, User
from chalicelib.services.ledger import LedgerService, PostingRequest, Recorded, SideWrite

logger = Logger(child=True)

METRIC_NAMESPACE = "Ledger"
MAX_ASSESSMENTS = 8
# How far back the expiry job looks past the review window (as the withdrawals' job does).
EXPIRY_LOOKBACK_DAYS = 30
STATUSES = tuple(s.value for s in ReviewStatus)


class RiskRepository(Protocol):
    """Rules, counters and reviews (``adapters.dynamo.risk_repository.DynamoRiskRepository``)."""

    def want_rules(self) -> None: ...
    def rules(self) -> RuleSet: ...
    def replace_rules(self, before: RuleSet, after: RuleSet, event: AuditEvent) -> None:
        """Raises RulesVersionConflict unless the stored set is still ``before``'s version."""
        ...

    def want_counter(self, user_id: str) -> None: ...
    def counter(self, user_id: str) -> Counter: ...
    def counter_write(self, before: Counter, after: Counter) -> SideWrite:
        """``after`` stored if the counter is still ``before`` (else RiskCounterChanged)."""
        ...

    def write(self, writes: Sequence[SideWrite]) -> None: ...
    def opened(self, review: Review) -> SideWrite: ...
    def decided_writes(self, review: Review, event: AuditEvent) -> list[SideWrite]:
        """``review`` as decided if it is still open (else ReviewNotOpen), and the event."""
        ...

    def get(self, review_id: str) -> Review | None: ...
    def open_between(self, oldest: str, newest: str) -> Iterable[Review]: ...
    def page(
        self, status: ReviewStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Review], str | None]: ...


class HoldDeadlines(Protocol):
    """Deadlines written with holds, enforced by the hold sweeper (``services/holds.py``;
    ``adapters.dynamo.hold_expiry_repository.DynamoHoldExpiries``)."""

    def expiry_write(self, expiry: HoldExpiry) -> SideWrite: ...


@dataclass
class RulesCache:
    """The rule set, read at most once per ``ttl_seconds`` per process (0: every time)."""

    repository: RiskRepository
    ttl_seconds: float
    monotonic: Callable[[], float] = time.monotonic
    _rules: RuleSet | None = None
    _read_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def stale(self) -> bool:
        return self._rules is None or self.monotonic() - self._read_at >= self.ttl_seconds

    def current(self) -> RuleSet:
        if self.stale:
            self.remember(self.repository.rules())
        assert self._rules is not None
        return self._rules

    def remember(self, rules: RuleSet) -> None:
        with self._lock:
            if self._rules is None or rules.version >= self._rules.version or self.stale:
                self._rules, self._read_at = rules, self.monotonic()


@dataclass
class Risk:
    """What assessing and reviewing need: the store, the cached rules and the review window.

    ``on_decision``: per operation, the writes another lifecycle adds to a review's decision
    (e.g. a payment request turning ``paid`` when its held payment is approved), written in the
    same write as the decision and the posting or voiding of the hold (docs/risk.md)."""

    repository: RiskRepository
    cache: RulesCache
    review_hours: int = 72
    clock: Callable[[], str] = now_iso
    on_decision: dict[Operation, Callable[[Review], Sequence[SideWrite]]] = field(
        default_factory=dict
    )
    # Where a review's hold gets its deadline (the review's expires_at), for the hold sweeper;
    # None: the hourly expire_reviews job alone ends it.
    deadlines: HoldDeadlines | None = None


# -- metrics ------------------------------------------------------------------------------------
def emit(name: str, rule: str | None, operation: str) -> None:
    """One CloudWatch EMF line (stdout; Lambda ships it), per rule and operation:
    ``RiskBlocked``, ``RiskReviewOpened``, ``RiskReviewApproved``, ``RiskReviewRejected``,
    ``RiskReviewExpired``."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=METRIC_NAMESPACE,
        default_dimensions={"rule": rule or "none"},
    ) as metric:
        metric.add_dimension("operation", operation)


# -- rules --------------------------------------------------------------------------------------
def current_rules(risk: Risk) -> RuleSet:
    """The rule set as stored now (an admin reads the truth, not the cache)."""
    rules = risk.repository.rules()
    risk.cache.remember(rules)
    return rules


def replace_rules(
    risk: Risk, admin: User, raw_rules: Any, based_on: int | None, ip: str | None
) -> RuleSet:
    """Replace the whole rule set, audited with the old and the new rules in the same write.

    ``based_on``: the version the admin's change starts from; without it, the version read
    here. Raises InvalidRequest (with details), RulesVersionConflict (another change came first).
    """
    rules = parse_rules(raw_rules)
    before = risk.repository.rules()
    if based_on is not None and based_on != before.version:
        raise RulesVersionConflict(
            f"the rules are at version {before.version}, not {based_on}; read them again"
        )
    at = risk.clock()
    after = before.replaced(rules, at, admin.id)
    event = AuditEvent.new(
        "risk.rules_replaced",
        at=at,
        actor_id=admin.id,
        target="risk_rules",
        ip=ip,
        old_version=str(before.version),
        new_version=str(after.version),
        old_rules=json.dumps(before.to_json(), sort_keys=True),
        new_rules=json.dumps(after.to_json(), sort_keys=True),
    )
    risk.repository.replace_rules(before, after, event)
    risk.cache.remember(after)
    return after


# -- assessment ---------------------------------------------------------------------------------
def read_ahead(risk: Risk, user_id: str) -> None:
    """Name what assessing ``user_id``'s operation will read, for the request's first batch
    read: the rules when the cache is stale, the counter unless the rules are known empty."""
    if risk.cache.stale:
        risk.repository.want_rules()
        risk.repository.want_counter(user_id)
    elif not risk.cache.current().empty:
        risk.repository.want_counter(user_id)


@dataclass(frozen=True)
class Assessment:
    check: Check
    verdict: Verdict
    counter: Counter | None = None  # None: no rules, nothing counted

    def writes(self, risk: Risk) -> list[SideWrite]:
        """The counter with this operation added, on the condition it is still as read."""
        if self.counter is None or self.verdict.decision is Decision.BLOCK:
            return []
        after = self.counter.with_operation(self.check)
        return [risk.repository.counter_write(self.counter, after)]


def assess(risk: Risk, check: Check) -> Assessment:
    """The verdict of the current rules on ``check`` against the user's counter as stored now."""
    rules = risk.cache.current()
    if rules.empty:
        return Assessment(check, ALLOW)
    counter = risk.repository.counter(check.user_id)
    return Assessment(check, evaluate(rules, check, counter), counter)


def _declined(assessment: Assessment) -> RiskDeclined:
    rule = assessment.verdict.rule_id or "none"
    emit("RiskBlocked", rule, assessment.check.operation.value)
    logger.warning(
        "risk rule declined an operation",
        rule=rule,
        user_id=assessment.check.user_id,
        operation=assessment.check.operation.value,
    )
    return RiskDeclined(rule)


class _Reassess(Exception):
    """The verdict changed between the engine's attempts: record again under the new one."""


@dataclass(frozen=True)
class Guarded:
    recorded: Recorded
    verdict: Verdict
    review: Review | None = None  # the open review holding the transaction, if any


ExtraFor = Callable[[Transaction, Verdict, Review | None], Sequence[SideWrite]]


def record_assessed(
    ledger: LedgerService,
    risk: Risk,
    check: Check,
    *,
    transaction_id: str,
    type: TransactionType,
    postings: Sequence[PostingRequest],
    memo: str = "",
    metadata: dict[str, str] | None = None,
    pending: bool = False,
    lifecycle_review: bool = False,
    extra_for: ExtraFor | None = None,
) -> Guarded:
    """Assess ``check`` and record its transaction (``LedgerService.record``) accordingly.

    * ``block``: raises ``RiskDeclined``; nothing is written.
    * ``review``: the transaction is recorded as a hold with an open review (``Guarded.review``)
      in the same write, unless ``lifecycle_review``: the operation is a hold its own lifecycle
      reviews (a withdrawal), so no second review is opened and ``extra_for`` names the rule.
    * ``allow``: recorded as asked (``pending``).

    The user's counter is updated in the same write, on the condition that it did not change;
    ``extra_for(transaction, verdict, review)`` adds the caller's own items (its replay record,
    its lifecycle item) on every attempt. A replay (the transaction exists) writes nothing and
    returns the stored review, if there is one.

    Raises RiskDeclined, and whatever ``LedgerService.record`` raises.
    """
    for _ in range(MAX_ASSESSMENTS):
        assessment = assess(risk, check)
        verdict = assessment.verdict
        if verdict.decision is Decision.BLOCK:
            raise _declined(assessment)
        held = verdict.decision is Decision.REVIEW
        review = None
        if held and not lifecycle_review and verdict.rule is not None:
            review = Review.opened(check, verdict.rule, transaction_id, risk.review_hours)
        current = [assessment]

        def writes(
            txn: Transaction,
            current: list[Assessment] = current,
            review: Review | None = review,
        ) -> list[SideWrite]:
            if len(current) > 1:  # the engine retries: assess again against the new counts
                fresh = assess(risk, check)
                if fresh.verdict != current[0].verdict:
                    raise _Reassess
                current[0] = fresh
            current.append(current[0])
            out = current[0].writes(risk)
            if review is not None:
                out.append(risk.repository.opened(review))
                if risk.deadlines is not None:
                    deadline = HoldExpiry(
                        transaction_id, review.expires_at, HoldOwner.REVIEW, review.id
                    )
                    out.append(risk.deadlines.expiry_write(deadline))
            if extra_for is not None:
                out.extend(extra_for(txn, current[0].verdict, review))
            return out

        try:
            recorded = ledger.record(
                transaction_id=transaction_id,
                type=type,
                postings=postings,
                memo=memo,
                metadata=metadata,
                pending=pending or review is not None,
                extra_for=writes,
            )
        except _Reassess:
            continue
        if not recorded.created:
            stored = risk.repository.get(review_id_for(transaction_id))
            return Guarded(recorded, verdict, stored)
        if review is not None:
            emit("RiskReviewOpened", review.rule, check.operation.value)
        elif held:
            emit("RiskReviewOpened", verdict.rule_id, check.operation.value)
        return Guarded(recorded, verdict, review)
    raise VersionConflict("the risk counter kept changing; nothing was written")


def count_alone(risk: Risk, check: Check) -> None:
    """Count an operation that moves no money yet (a card deposit starting): the counter is
    written alone, conditionally, assessed again if it changed. Anything but ``allow``
    declines (``RiskDeclined``): there is no money to hold."""
    for _ in range(MAX_ASSESSMENTS):
        assessment = assess(risk, check)
        if assessment.verdict.decision is not Decision.ALLOW:
            raise _declined(assessment)
        writes = assessment.writes(risk)
        if not writes:
            return
        try:
            risk.repository.write(writes)
        except RiskCounterChanged:
            continue
        return
    raise VersionConflict("the risk counter kept changing; nothing was written")


# -- reviews ------------------------------------------------------------------------------------
def _found(risk: Risk, review_id: str) -> Review:
    review = risk.repository.get(review_id)
    if review is None:
        raise ReviewNotFound(f"review {review_id} not found")
    return review


def _event(action: str, actor: str, r: Review, ip: str | None, **details: str) -> AuditEvent:
    return AuditEvent.new(
        action,
        at=now_iso(),
        actor_id=actor,
        target=r.id,
        ip=ip,
        transaction_id=r.transaction_id,
        rule=r.rule,
        amount=str(r.amount),
        currency=r.currency,
        user_id=r.user_id,
        **details,
    )


@dataclass(frozen=True)
class Decided:
    review: Review
    transaction: Transaction  # the hold, posted or voided


def _resolve(ledger: LedgerService, risk: Risk, decided: Review, event: AuditEvent) -> Decided:
    """Post (approved) or void the review's hold, with the review's decision, in one write."""
    writes = risk.repository.decided_writes(decided, event)
    lifecycle = risk.on_decision.get(decided.operation)
    if lifecycle is not None:
        writes = [*writes, *lifecycle(decided)]
    try:
        if decided.posts_hold:
            txn = ledger.post_pending(decided.transaction_id, extra=writes)
        else:
            txn = ledger.void_pending(decided.transaction_id, extra=writes)
    except HoldNotPending as exc:
        raise ReviewNotOpen(f"review {decided.id} was decided already") from exc
    emit(f"RiskReview{decided.status.value.capitalize()}", decided.rule, decided.operation.value)
    return Decided(decided, txn)


def approve(
    ledger: LedgerService, risk: Risk, admin: User, review_id: str, ip: str | None
) -> Decided:
    """The held money moves: the hold is posted. Raises ReviewNotFound, ReviewNotOpen."""
    review = _found(risk, review_id)
    decided = review.approved(admin.id, now_iso())
    return _resolve(ledger, risk, decided, _event("risk.review_approved", admin.id, review, ip))


def reject(
    ledger: LedgerService, risk: Risk, admin: User, review_id: str, reason: str, ip: str | None
) -> Decided:
    """The hold is released. Raises ReviewNotFound, InvalidRequest (reason), ReviewNotOpen."""
    review = _found(risk, review_id)
    decided = review.rejected(admin.id, now_iso(), reason)
    event = _event("risk.review_rejected", admin.id, review, ip, reason=decided.reason or "")
    return _resolve(ledger, risk, decided, event)


def expire_review(ledger: LedgerService, risk: Risk, review_id: str) -> bool:
    """Expire one review now (the hold sweeper found its deadline passed): ``expired``, hold
    voided, audited, in one write. False if it was decided already (nothing written)."""
    review = risk.repository.get(review_id)
    if review is None or review.status is not ReviewStatus.OPEN:
        return False
    try:
        decided = review.expired(now_iso())
        _resolve(ledger, risk, decided, _event("risk.review_expired", "system", review, None))
    except ReviewNotOpen:
        return False
    return True


def expire_stale(ledger: LedgerService, risk: Risk, now: str | None = None) -> list[str]:
    """Expire every review still open ``review_hours`` after it was opened: status
    ``expired``, hold voided, audited, in one write each. Safe to run again and alongside an
    admin's decision (whichever writes first wins). Returns the ids expired by this run."""
    moment = parse_iso(now or now_iso())
    cutoff = to_iso(moment - timedelta(hours=risk.review_hours))
    oldest = to_iso(moment - timedelta(hours=risk.review_hours, days=EXPIRY_LOOKBACK_DAYS))
    expired = []
    for review in risk.repository.open_between(oldest, cutoff):
        try:
            decided = review.expired(now_iso())
            _resolve(ledger, risk, decided, _event("risk.review_expired", "system", review, None))
        except ReviewNotOpen:
            continue  # decided meanwhile
        expired.append(review.id)
    if expired:
        logger.info("risk reviews expired", count=len(expired))
    return expired


@dataclass(frozen=True)
class ReviewPage:
    reviews: list[Review]
    next_cursor: str | None


def review_queue(risk: Risk, status: str | None, limit: int, cursor: str | None) -> ReviewPage:
    """Reviews newest first, optionally of one status.

    Raises InvalidRequest (an unknown status), ValueError (a cursor this query did not return).
    """
    if status is not None and status not in STATUSES:
        raise InvalidRequest(
            "query parameters are not valid",
            [{"field": "status", "message": f"one of {', '.join(STATUSES)}"}],
        )
    wanted = ReviewStatus(status) if status else None
    found, next_cursor = risk.repository.page(wanted, max(1, min(limit, 100)), cursor)
    return ReviewPage(found, next_cursor)
