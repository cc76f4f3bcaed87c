"""Rollbacks at the service level: racing rollbacks of one transaction, the refusals, and force.
The audit event is part of the reversal's own write: no reversal without it, and none with it
when the reversal is refused. moto's DynamoDB is serialized by infra.local.moto_lock."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.deposit_repository import DynamoDepositRepository
from chalicelib.adapters.dynamo.models import AuditItem
from chalicelib.domain.errors import (
    AlreadyReversed,
    InsufficientFunds,
    InvalidRequest,
    NotReversible,
    TransactionNotFound,
)
from chalicelib.domain.users import Role, User, UserStatus
from chalicelib.services import operators
from tests.integration.test_races import race
from tests.support import LedgerWorld, scan

ADMIN = User(
    id="usr_admin",
    email="admin@example.com",
    password_hash="x",
    role=Role.ADMIN,
    status=UserStatus.ACTIVE,
    terms_accepted_at="2026-11-23T00:00:00.000000Z",
    created_at="2026-11-23T00:00:00.000000Z",
    mfa_enabled=True,
)


def rollbacks() -> list[AuditItem]:
    return [
        i
        for i in AuditItem.scan(AuditItem.item_type == "audit")
        if i.action == operators.ROLLBACK_ACTION
    ]


def roll_back(ledger, transaction_id: str, *, force: bool = False):
    return operators.rollback(
        ledger,
        DynamoDepositRepository(),
        ADMIN,
        transaction_id,
        reason="wrong recipient",
        force=force,
        ip=None,
    )


def test_racing_rollbacks_of_one_transaction_reverse_it_exactly_once(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 50_00)
    sent = world.transfer(alice, bob, 20_00).transaction

    outcomes = race(8, world, lambda ledger: roll_back(ledger, sent.id).type.value)

    assert outcomes == ["AlreadyReversed"] * 7 + ["reversal"]
    reversals = [
        i for i in scan(world.table) if i["item_type"] == "transaction" and i.get("reverses")
    ]
    assert [r["reverses"] for r in reversals] == [sent.id]
    assert (world.account(alice).posted, world.account(bob).posted) == (50_00, 0)
    assert [e.target for e in rollbacks()] == [sent.id]  # one audit event, with the one reversal
    world.check_guarantees()


def test_racing_forced_rollbacks_still_reverse_once(world: LedgerWorld):
    alice, bob, carol = (world.open_user_account() for _ in range(3))
    world.fund(alice, 50_00)
    sent = world.transfer(alice, bob, 20_00).transaction
    world.transfer(bob, carol, 15_00)  # bob spent most of it

    outcomes = race(6, world, lambda ledger: roll_back(ledger, sent.id, force=True).type.value)

    assert outcomes == ["AlreadyReversed"] * 5 + ["reversal"]
    assert world.account(bob).posted == -15_00
    assert world.account(bob).forced_negative
    world.check_guarantees()


def test_a_reversal_and_a_pending_transaction_are_not_reversible(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 50_00)
    sent = world.transfer(alice, bob, 20_00).transaction
    reversal = roll_back(world.ledger, sent.id)
    with pytest.raises(NotReversible):
        roll_back(world.ledger, reversal.id)
    with pytest.raises(AlreadyReversed):
        roll_back(world.ledger, sent.id)
    hold = world.transfer(alice, bob, 5_00, pending=True).transaction
    with pytest.raises(NotReversible):
        roll_back(world.ledger, hold.id)
    world.ledger.void_pending(hold.id)
    with pytest.raises(NotReversible):  # voided: nothing to reverse either
        roll_back(world.ledger, hold.id)
    with pytest.raises(TransactionNotFound):
        roll_back(world.ledger, "txn_missing")
    assert len(rollbacks()) == 1
    world.check_guarantees()


def test_spent_money_is_refused_without_force_and_flagged_with_it(world: LedgerWorld):
    alice, bob, carol = (world.open_user_account() for _ in range(3))
    world.fund(alice, 50_00)
    sent = world.transfer(alice, bob, 20_00).transaction
    world.transfer(bob, carol, 15_00)
    before = scan(world.table)

    with pytest.raises(InsufficientFunds):
        roll_back(world.ledger, sent.id)
    assert scan(world.table) == before  # nothing written, not even the audit event

    reversal = roll_back(world.ledger, sent.id, force=True)
    assert reversal.forced
    bob_after = world.account(bob)
    assert (bob_after.posted, bob_after.available, bob_after.forced_negative) == (
        -15_00,
        -15_00,
        True,
    )
    assert not world.account(alice).forced_negative
    (event,) = rollbacks()
    assert event.details.as_dict()["force"] == "true"
    world.check_guarantees()


def test_a_reason_is_required(world: LedgerWorld):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_00)
    sent = world.transfer(alice, bob, 1_00).transaction
    deposits = DynamoDepositRepository()
    with pytest.raises(InvalidRequest):
        operators.rollback(world.ledger, deposits, ADMIN, sent.id, reason=" ", force=False, ip=None)
    assert rollbacks() == []


def test_an_audit_event_is_never_overwritten_and_the_action_fails_with_it(
    world: LedgerWorld, monkeypatch
):
    """Append-only (``audit_entry``): an event whose id is taken fails the whole write, so the
    reversal is not written and the earlier event stays as it was."""
    from chalicelib.domain.errors import VersionConflict
    from chalicelib.domain.users import AuditEvent

    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 50_00)
    sent = world.transfer(alice, bob, 20_00).transaction
    earlier = AuditEvent(
        id="aud_taken",
        at="2026-11-23T00:00:00.000000Z",
        actor_id="x",
        action="a",
        target=None,
        ip=None,
    )
    AuditItem.from_domain(earlier).save()
    monkeypatch.setattr(AuditEvent, "new", classmethod(lambda cls, action, **_: earlier))

    with pytest.raises(VersionConflict):
        roll_back(world.ledger, sent.id)

    assert rollbacks() == []
    assert [i.action for i in AuditItem.scan(AuditItem.item_type == "audit")] == ["a"]
    assert (world.account(alice).posted, world.account(bob).posted) == (30_00, 20_00)
