"""The risk domain without I/O: the rolling 24-hour window, new recipients, the verdict's
precedence and the review lifecycle (chalicelib/domain/risk.py)."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import InvalidRequest, ReviewNotOpen
from chalicelib.domain.risk import (
    MAX_KNOWN_RECIPIENTS,
    Check,
    Counter,
    Decision,
    Operation,
    Review,
    ReviewStatus,
    RuleSet,
    evaluate,
    parse_rules,
    rules_from_json,
    rules_to_json,
)

NOON = "2026-12-02T12:30:00.000000Z"


def check(amount: int, at: str = NOON, recipient: str | None = "user:b", **kw) -> Check:
    return Check("u1", Operation.TRANSFER, amount, "USD", at, recipient, **kw)


def rules(*raw: dict) -> RuleSet:
    return RuleSet(1, parse_rules(list(raw)))


def test_the_window_is_the_current_hour_and_the_24_before_it_never_less_than_24_h():
    counter = Counter("u1")
    for at in (
        "2026-12-01T11:59:59.000000Z",  # over 24 h before NOON (12:30 the next day): gone
        "2026-12-01T12:59:59.000000Z",  # 23 h 30 m before NOON: in the last 24 h, counted
        "2026-12-01T13:00:00.000000Z",
    ):
        counter = counter.with_operation(check(100, at))
    assert counter.amount_in_window("USD", NOON) == 200
    assert counter.count_in_window(None, NOON) == 2
    assert counter.version == 3
    # Old hours are dropped when the counter is written.
    later = counter.with_operation(check(1, "2026-12-02T13:00:00.000000Z"))
    assert sorted(later.hours) == ["2026-12-01T13", "2026-12-02T13"]
    assert sorted(later.with_operation(check(1, "2026-12-02T14:00:00.000000Z")).hours) == [
        "2026-12-02T13",
        "2026-12-02T14",
    ]


def test_daily_amount_over_counts_this_operation_too():
    day = rules({"id": "d", "kind": "daily_amount_over", "action": "block", "currency": "USD",
                 "amount": "10"})  # fmt: skip
    counter = Counter("u1").with_operation(check(600))
    assert evaluate(day, check(400), counter).decision is Decision.ALLOW  # 10.00: not over
    assert evaluate(day, check(401), counter).decision is Decision.BLOCK


def test_a_known_recipient_is_not_new_and_the_memory_is_bounded():
    fan = rules({"id": "f", "kind": "new_recipients_over", "action": "review", "count": 1})
    counter = Counter("u1").with_operation(check(1, recipient="user:b"))
    assert evaluate(fan, check(1, recipient="user:b"), counter).decision is Decision.ALLOW
    assert evaluate(fan, check(1, recipient="user:c"), counter).decision is Decision.REVIEW
    assert evaluate(fan, check(1, recipient=None), counter).decision is Decision.ALLOW
    many = Counter("u1")
    for n in range(MAX_KNOWN_RECIPIENTS + 5):
        many = many.with_operation(check(1, recipient=f"user:{n}"))
    assert len(many.recipients) == MAX_KNOWN_RECIPIENTS


def test_block_beats_review_and_the_first_rule_names_the_verdict():
    both = rules(
        {"id": "r1", "kind": "amount_over", "action": "review", "currency": "USD", "amount": "1"},
        {"id": "r2", "kind": "amount_over", "action": "review", "currency": "USD", "amount": "1"},
        {"id": "b1", "kind": "amount_over", "action": "block", "currency": "USD", "amount": "5"},
    )
    assert evaluate(both, check(200), Counter("u1")).rule.id == "r1"
    assert evaluate(both, check(600), Counter("u1")).rule.id == "b1"


def test_account_younger_than_uses_the_signup_time():
    young = rules({"id": "y", "kind": "account_younger_than", "action": "block", "hours": 24})
    fresh = check(1, user_created_at="2026-12-02T00:00:00.000000Z")
    old = check(1, user_created_at="2026-12-01T12:30:00.000000Z")
    assert evaluate(young, fresh, Counter("u1")).decision is Decision.BLOCK
    assert evaluate(young, old, Counter("u1")).decision is Decision.ALLOW


def test_rules_survive_storage_and_every_problem_is_listed():
    parsed = parse_rules([
        {"id": "a", "kind": "amount_over", "action": "block", "currency": "ETH",
         "amount": "0.000000000000000001", "user_id": "u1"},
        {"id": "b", "kind": "daily_count_over", "action": "review", "count": 0},
    ])  # fmt: skip
    assert rules_from_json(rules_to_json(parsed)) == parsed
    with pytest.raises(InvalidRequest) as caught:
        parse_rules([{"id": "a"}, {"id": "a", "kind": "amount_over", "action": "block"}])
    fields = [d["field"] for d in caught.value.details]
    assert fields == ["rules.0.kind", "rules.0.action", "rules.1.id", "rules.1.currency",
                      "rules.1.amount"]  # fmt: skip


def test_a_review_is_decided_once():
    rule = parse_rules([{"id": "r", "kind": "daily_count_over", "action": "review", "count": 0}])
    review = Review.opened(check(100), rule[0], "txn_1", 72)
    assert review.expires_at == "2026-12-05T12:30:00.000000Z"
    approved = review.approved("admin", NOON)
    assert approved.status is ReviewStatus.APPROVED
    assert approved.posts_hold
    for decide in (
        lambda: approved.rejected("admin", NOON, "late"),
        lambda: approved.expired(NOON),
        lambda: approved.approved("admin", NOON),
    ):
        with pytest.raises(ReviewNotOpen):
            decide()
    with pytest.raises(InvalidRequest):
        review.rejected("admin", NOON, "   ")


def test_a_review_past_its_expiry_cannot_be_approved_only_released():
    rule = parse_rules([{"id": "r", "kind": "daily_count_over", "action": "review", "count": 0}])
    review = Review.opened(check(100), rule[0], "txn_1", 72)
    with pytest.raises(ReviewNotOpen):
        review.approved("admin", review.expires_at)  # the expiry job is about to void the hold
    assert review.rejected("admin", review.expires_at, "late").status is ReviewStatus.REJECTED
    assert review.expired(review.expires_at).status is ReviewStatus.EXPIRED
