"""The tamper-evident audit trail: days sealed into a hash chain, and verification naming the
first day that was changed behind the API's back (direct DynamoDB writes, as an intruder with
table access would make them)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.audit_repository import DynamoAuditRepository
from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.domain.errors import InvalidRequest, InvalidState
from chalicelib.domain.users import AuditEvent
from chalicelib.services import audit_chain

NOW = datetime(2026, 11, 23, 0, 15, tzinfo=UTC)
DAYS = ["2026-11-18", "2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"]


def at(day: str, second: int) -> str:
    return f"{day}T10:00:{second:02d}.000000Z"


def event(day: str, n: int, action: str = "auth.login", actor: str = "usr_1") -> AuditEvent:
    return AuditEvent(
        id=f"aud_{day}_{n:03d}",
        at=at(day, n),
        actor_id=actor,
        action=action,
        target=None,
        ip="203.0.113.7",
        details={"n": str(n)},
    )


@pytest.fixture
def trail(table):
    """Events on every day but 2026-11-20 (a quiet day), all five days sealed."""
    auth = DynamoAuthRepository()
    for day in DAYS:
        if day != "2026-11-20":
            for n in range(6):
                auth.append_audit(event(day, n))
    repository = DynamoAuditRepository()
    sealed = audit_chain.seal_through(repository, DAYS[-1], first_day=DAYS[0], now=lambda: NOW)
    assert [d.day for d in sealed] == DAYS
    return repository


def client():
    return boto3.client("dynamodb", region_name="us-east-1")


def key_of(e: AuditEvent) -> dict:
    return {"PK": {"S": keys.audit_pk(e.at, e.id)}, "SK": {"S": keys.audit_sk(e.at, e.id)}}


def test_a_sealed_untouched_trail_verifies_including_a_day_without_events(trail):
    quiet = trail.get_digest("2026-11-20")
    assert quiet is not None
    assert quiet.event_count == 0
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.days_checked, result.broken_day) == (True, 5, None)
    first = trail.get_digest(DAYS[0])
    assert first.previous_digest == audit_chain.GENESIS
    assert trail.get_digest(DAYS[1]).previous_digest == first.digest


def test_an_edited_event_is_named_by_its_day(trail, table):
    target = event("2026-11-21", 3)
    client().update_item(
        TableName=table,
        Key=key_of(target),
        UpdateExpression="SET actor_id = :someone",
        ExpressionAttributeValues={":someone": {"S": "usr_innocent"}},
    )
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.broken_day) == (False, "2026-11-21")
    assert "changed" in result.problem
    assert result.days_checked == 3  # the three days before it hold


def test_a_deleted_event_is_named_by_its_day(trail, table):
    client().delete_item(TableName=table, Key=key_of(event("2026-11-19", 0)))
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.broken_day) == (False, "2026-11-19")
    assert "missing" in result.problem


def test_an_inserted_event_is_named_by_its_day(trail):
    DynamoAuthRepository().append_audit(event("2026-11-20", 9, action="user.unsuspended"))
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.broken_day) == (False, "2026-11-20")
    assert "added" in result.problem


def test_an_edited_digest_is_named_by_its_day(trail, table):
    client().update_item(
        TableName=table,
        Key={"PK": {"S": keys.audit_digest_pk("2026-11-19")}, "SK": {"S": keys.AUDIT_DIGEST_SK}},
        UpdateExpression="SET event_count = :n",
        ExpressionAttributeValues={":n": {"N": "5"}},
    )
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.broken_day) == (False, "2026-11-19")
    assert "digest" in result.problem


def test_re_sealing_an_edited_day_breaks_the_link_of_the_next_day(trail, table):
    """An intruder edits an event and recomputes that day's digest consistently: the day checks
    out on its own, but the next day still points at the original digest."""
    day = "2026-11-19"
    client().delete_item(TableName=table, Key=key_of(event(day, 0)))
    count, hashed = audit_chain.events_hash(trail.events_of_day(day))
    sealed = trail.get_digest(day)
    forged = audit_chain.chain_digest(sealed.previous_digest, day, count, hashed)
    client().update_item(
        TableName=table,
        Key={"PK": {"S": keys.audit_digest_pk(day)}, "SK": {"S": keys.AUDIT_DIGEST_SK}},
        UpdateExpression="SET event_count = :n, events_hash = :h, digest = :d",
        ExpressionAttributeValues={
            ":n": {"N": str(count)},
            ":h": {"S": hashed},
            ":d": {"S": forged},
        },
    )
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.broken_day) == (False, "2026-11-20")
    assert "previous day" in result.problem


def test_a_deleted_digest_is_named(trail, table):
    client().delete_item(
        TableName=table,
        Key={"PK": {"S": keys.audit_digest_pk("2026-11-20")}, "SK": {"S": keys.AUDIT_DIGEST_SK}},
    )
    result = audit_chain.verify(trail, DAYS[0], DAYS[-1])
    assert (result.ok, result.broken_day) == (False, "2026-11-20")


def test_a_range_starting_mid_chain_checks_the_link_into_it(trail):
    result = audit_chain.verify(trail, "2026-11-21", "2026-11-22")
    assert (result.ok, result.days_checked) == (True, 2)


def test_days_after_the_head_are_reported_unsealed_not_vouched_for(trail):
    DynamoAuthRepository().append_audit(event("2026-11-23", 1))
    result = audit_chain.verify(trail, DAYS[0], "2026-11-23")
    assert (result.ok, result.days_checked, result.unsealed_from) == (True, 5, "2026-11-23")


def test_the_next_run_continues_the_chain_and_only_past_days_are_sealed(trail):
    with pytest.raises(InvalidRequest):
        audit_chain.seal_through(trail, "2026-11-23", now=lambda: NOW)
    later = NOW + timedelta(days=2)
    sealed = audit_chain.seal_through(trail, now=lambda: later)
    assert [d.day for d in sealed] == ["2026-11-23", "2026-11-24"]
    assert sealed[0].previous_digest == trail.get_digest("2026-11-22").digest
    assert audit_chain.seal_through(trail, now=lambda: later) == []
    assert audit_chain.verify(trail, DAYS[0], "2026-11-24").ok


def test_two_sealers_at_once_cannot_fork_the_chain(trail):
    later = NOW + timedelta(days=1)
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def run() -> None:
        start.wait()
        try:
            outcomes.append(str(len(audit_chain.seal_through(trail, now=lambda: later))))
        except InvalidState:
            outcomes.append("InvalidState")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Exactly one sealer writes the day. The others either lose the conditional write
    # (InvalidState) or start after it and find nothing left to seal ("0").
    assert len(outcomes) == 4
    assert outcomes.count("1") == 1, outcomes
    assert set(outcomes) <= {"0", "1", "InvalidState"}, outcomes
    assert audit_chain.verify(trail, DAYS[0], "2026-11-23").ok


def test_the_tables_order_of_a_day_is_the_order_the_chain_hashes_in():
    """A day's hash is taken in ``domain.audit.event_order``; the store merges its shards in its
    sort-key order. They must be one order, or a sealed day would no longer verify."""
    from chalicelib.domain.audit import event_order

    event = AuditEvent(
        id="aud_1",
        at="2026-12-02T10:00:00.000001Z",
        actor_id=None,
        action="x",
        target=None,
        ip=None,
        details={},
    )
    assert keys.audit_sk(event.at, event.id) == event_order(event)
