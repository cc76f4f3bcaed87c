"""Risk in DynamoDB: the rule set (``RISKRULES``), each user's velocity counter (``RISK#<user>``)
and the reviews (``REVIEW#<id>``, in the review queue index GSI2 ``REVIEWS``), their keys and the
conditions of every write. Implements ``services.risk.RiskRepository``.

* the rule set is replaced with a put on the condition that its version is still the one the
  change was based on (``RulesVersionConflict`` otherwise), with its audit event in the same write;
* a counter is rewritten, in the same write as the money it counts, on the condition that its
  version is still the one the verdict was computed from (``RiskCounterChanged`` otherwise, which
  the ledger engine retries after assessing the operation again);
* a review is created with its hold (``attribute_not_exists``) and decided on the condition that
  it is still ``open`` (``ReviewNotOpen``), in the same write as the posting or voiding of its hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from pynamodb.exceptions import TransactWriteError

from chalicelib.adapters.dynamo import cursors, keys, read_ahead
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import ReviewItem, RiskCounterItem, RiskRulesItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.adapters.dynamo.withdrawal_repository import write_together
from chalicelib.domain.errors import (
    ReviewNotOpen,
    RiskCounterChanged,
    RulesVersionConflict,
    VersionConflict,
)
from chalicelib.domain.risk import (
    Counter,
    Operation,
    Review,
    ReviewStatus,
    RuleSet,
    rules_from_json,
    rules_to_json,
)
from chalicelib.domain.users import AuditEvent

# A quiet user's counter disappears (TTL) this long after its last write; its recipients are then
# all new again, which can only raise a new_recipients_over count.
COUNTER_TTL_SECONDS = 90 * 24 * 3600


def _review_item(r: Review) -> ReviewItem:
    return ReviewItem(
        keys.review_pk(r.id),
        keys.REVIEW_SK,
        item_type=ReviewItem.ITEM_TYPE,
        GSI2PK=keys.REVIEWS_GSI_PK,
        GSI2SK=keys.reviews_gsi_sk(r.created_at, r.id),
        review_id=r.id,
        status=r.status.value,
        user_id=r.user_id,
        operation=r.operation.value,
        amount=r.amount,
        currency=r.currency,
        rule=r.rule,
        rule_kind=r.rule_kind,
        created_at=r.created_at,
        transaction_id=r.transaction_id,
        review_expires_at=r.expires_at,
    )


def _review(item: ReviewItem) -> Review:
    return Review(
        id=item.review_id,
        status=ReviewStatus(item.status),
        user_id=item.user_id,
        operation=Operation(item.operation),
        amount=int(item.amount),
        currency=item.currency,
        rule=item.rule,
        rule_kind=item.rule_kind,
        created_at=item.created_at,
        transaction_id=item.transaction_id,
        expires_at=item.review_expires_at,
        decided_by=item.decided_by,
        decided_at=item.decided_at,
        reason=item.reason,
    )


class DynamoRiskRepository:
    """``services.risk.RiskRepository`` on the ledger table."""

    # -- rules ----------------------------------------------------------------------------------
    @staticmethod
    def want_rules() -> None:
        """Read the rule set with the request's first batch read (``read_ahead``)."""
        read_ahead.want(keys.RISK_RULES_PK, keys.RISK_RULES_SK)

    @staticmethod
    def rules() -> RuleSet:
        """The rule set as stored now (version 0 and no rules when never set)."""
        raw = read_ahead.get_raw(keys.RISK_RULES_PK, keys.RISK_RULES_SK)
        if raw is None:
            return RuleSet(0)
        item = RiskRulesItem.from_raw_data(raw)
        return RuleSet(
            version=int(item.version),
            rules=rules_from_json(item.rules),
            updated_at=item.updated_at,
            updated_by=item.updated_by,
        )

    @staticmethod
    def replace_rules(before: RuleSet, after: RuleSet, event: AuditEvent) -> None:
        """Store ``after`` if the stored set is still ``before``'s version, with ``event``.

        Raises:
            RulesVersionConflict: another change was stored first; nothing is written.
        """
        item = RiskRulesItem(
            keys.RISK_RULES_PK,
            keys.RISK_RULES_SK,
            item_type=RiskRulesItem.ITEM_TYPE,
            version=after.version,
            rules=rules_to_json(after.rules),
            updated_at=after.updated_at,
            updated_by=after.updated_by,
        )
        condition = (
            RiskRulesItem.PK.does_not_exist()
            if before.version == 0
            else RiskRulesItem.version == before.version
        )
        write = AtomicWrite()
        write.put(item, condition, RulesVersionConflict(f"the rules are past {before.version}"))
        write.append_audit(event)
        try:
            write.send_or_raise_tag()
        except (TransactWriteError, VersionConflict) as exc:  # a concurrent write of the set
            raise RulesVersionConflict("the rules changed meanwhile") from exc

    # -- counters -------------------------------------------------------------------------------
    @staticmethod
    def want_counter(user_id: str) -> None:
        read_ahead.want(keys.risk_counter_pk(user_id), keys.RISK_COUNTER_SK)

    @staticmethod
    def counter(user_id: str) -> Counter:
        raw = read_ahead.get_raw(keys.risk_counter_pk(user_id), keys.RISK_COUNTER_SK)
        if raw is None:
            return Counter(user_id)
        item = RiskCounterItem.from_raw_data(raw)
        return Counter.from_json(user_id, int(item.version), item.state)

    @staticmethod
    def counter_write(before: Counter, after: Counter) -> ExtraWrite:
        """``after`` stored on the condition that the stored counter is still ``before``."""
        item = RiskCounterItem(
            keys.risk_counter_pk(after.user_id),
            keys.RISK_COUNTER_SK,
            item_type=RiskCounterItem.ITEM_TYPE,
            user_id=after.user_id,
            version=after.version,
            state=after.to_json(),
            expires_at=int(time.time()) + COUNTER_TTL_SECONDS,
        )
        condition = (
            RiskCounterItem.PK.does_not_exist()
            if before.version == 0
            else RiskCounterItem.version == before.version
        )
        return ExtraWrite(
            model=item,
            condition=condition,
            error=RiskCounterChanged(f"the risk counter of {after.user_id} changed"),
        )

    @staticmethod
    def write(writes: Sequence[ExtraWrite]) -> None:
        """Side writes alone, atomically; a failed condition raises its write's error."""
        write_together(writes)

    # -- reviews --------------------------------------------------------------------------------
    @staticmethod
    def opened(review: Review) -> ExtraWrite:
        return ExtraWrite(
            model=_review_item(review),
            condition=ReviewItem.PK.does_not_exist(),
            error=VersionConflict(f"review {review.id} exists"),
        )

    @staticmethod
    def decided_writes(review: Review, event: AuditEvent) -> list[ExtraWrite]:
        """``review`` as decided, on the condition that it is still open, and its audit event."""
        actions = [
            ReviewItem.status.set(review.status.value),
            ReviewItem.decided_by.set(review.decided_by),
            ReviewItem.decided_at.set(review.decided_at),
        ]
        if review.reason is not None:
            actions.append(ReviewItem.reason.set(review.reason))
        return [
            ExtraWrite(
                model=ReviewItem(keys.review_pk(review.id), keys.REVIEW_SK),
                condition=ReviewItem.status == ReviewStatus.OPEN.value,
                error=ReviewNotOpen(f"review {review.id} was decided already"),
                actions=actions,
            ),
            audit_entry(event),
        ]

    @staticmethod
    def get(review_id: str) -> Review | None:
        try:
            item = ReviewItem.get(keys.review_pk(review_id), keys.REVIEW_SK, consistent_read=True)
        except ReviewItem.DoesNotExist:
            return None
        return _review(item)

    @staticmethod
    def open_between(oldest: str, newest: str) -> Iterator[Review]:
        """Reviews still open created from ``oldest`` to ``newest`` (inclusive)."""
        found = ReviewItem.review_index.query(
            keys.REVIEWS_GSI_PK,
            ReviewItem.GSI2SK.between(oldest, newest + "~"),
            filter_condition=ReviewItem.status == ReviewStatus.OPEN.value,
        )
        return (_review(item) for item in found)

    @staticmethod
    def page(
        status: ReviewStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Review], str | None]:
        """Up to ``limit`` reviews newest first, of one status or all, after ``cursor``.

        Raises:
            ValueError: a cursor this query did not return.
        """
        pk = keys.REVIEWS_GSI_PK
        start = None
        if cursor:
            start = cursors.decode(
                cursor,
                partition={"GSI2PK": pk, "SK": keys.REVIEW_SK},
                ranges={
                    "PK": (keys.REVIEW_PREFIX, keys.REVIEW_PREFIX + "~"),
                    "GSI2SK": ("", "~"),
                },
            )
        results = ReviewItem.review_index.query(
            pk,
            scan_index_forward=False,
            filter_condition=(ReviewItem.status == status.value) if status else None,
            limit=limit,
            last_evaluated_key=start,
            page_size=limit,
        )
        found = [_review(item) for item in results]
        last = results.last_evaluated_key
        return found, (cursors.encode(last) if last and len(found) == limit else None)
