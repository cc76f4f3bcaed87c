"""Random sequences of transfers, holds, posts, voids, reversals and replays on the real
repository (moto); every guarantee is checked against the whole table after each step, and
each balance against a model kept by the test."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import replace

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from chalicelib.adapters.dynamo import models
from chalicelib.config import get_settings
from chalicelib.domain.errors import (
    AlreadyReversed,
    HoldNotPending,
    InsufficientFunds,
    NotReversible,
    TransactionExistsWithDifferentFields,
)
from chalicelib.domain.transactions import TransactionStatus, TransactionType
from chalicelib.services.ledger import LedgerService, PostingRequest
from infra.local.table import create_table
from tests.support import LedgerWorld, check_guarantees

amounts = st.integers(min_value=1, max_value=50_00)


class LedgerMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")

    def __init__(self) -> None:
        super().__init__()
        self.table = f"ledger-stateful-{uuid.uuid4().hex[:8]}"
        create_table(boto3.client("dynamodb", region_name="us-east-1"), self.table)
        models.bind(replace(get_settings(), table_name=self.table))
        self.world = LedgerWorld.create(self.table, shards=3)
        self.world.ledger = LedgerService(
            self.world.repository,
            platform_shards=3,
            rng=random.Random(0),
            sleep=lambda _s: None,
        )
        self.posted: dict[str, int] = defaultdict(int)
        self.pending_out: dict[str, int] = defaultdict(int)
        self.holds: list[str] = []
        self.done: list[tuple[str, str, str, int]] = []  # (txn id, source, target, amount)
        self.reversed: set[str] = set()
        self.reversals: set[str] = set()

    def teardown(self) -> None:
        boto3.client("dynamodb", region_name="us-east-1").delete_table(TableName=self.table)

    @initialize(target=accounts)
    def first_account(self):
        return self.world.open_user_account()

    @rule(target=accounts)
    def open_account(self):
        return self.world.open_user_account()

    @rule(account=accounts, amount=amounts)
    def deposit(self, account, amount):
        self.world.fund(account, amount)
        self.posted[account] += amount

    def _available(self, account: str) -> int:
        return self.posted[account] - self.pending_out[account]

    @rule(source=accounts, recipient=accounts, amount=amounts, pending=st.booleans())
    def transfer(self, source, recipient, amount, pending):
        target = recipient
        if source == target:
            return
        key = uuid.uuid4().hex
        try:
            recorded = self.world.transfer(source, target, amount, key=key, pending=pending)
        except InsufficientFunds:
            assert self._available(source) < amount
            return
        assert self._available(source) >= amount
        txn_id = recorded.transaction.id
        if pending:
            self.pending_out[source] += amount
            self.holds.append(txn_id)
        else:
            self.posted[source] -= amount
            self.posted[target] += amount
            self.done.append((txn_id, source, target, amount))
        # A retry of the same request is a replay: same transaction, nothing moves.
        again = self.world.transfer(source, target, amount, key=key, pending=pending)
        assert (again.created, again.transaction.id) == (False, txn_id)

    @rule(data=st.data(), post=st.booleans())
    def resolve_hold(self, data, post):
        if not self.holds:
            return
        txn_id = data.draw(st.sampled_from(self.holds))
        hold = self.world.repository.get_transaction(txn_id)
        source, target = (p.account_id for p in sorted(hold.postings, key=lambda p: p.amount))
        amount = -min(p.amount for p in hold.postings)
        (self.world.ledger.post_pending if post else self.world.ledger.void_pending)(txn_id)
        self.holds.remove(txn_id)
        self.pending_out[source] -= amount
        if post:
            self.posted[source] -= amount
            self.posted[target] += amount
            self.done.append((txn_id, source, target, amount))
        try:
            self.world.ledger.post_pending(txn_id)
            raise AssertionError("a hold was resolved twice")
        except HoldNotPending:
            pass

    @rule(data=st.data(), force=st.booleans())
    def reverse(self, data, force):
        if not self.done:
            return
        txn_id, source, target, amount = data.draw(st.sampled_from(self.done))
        try:
            reversal = self.world.ledger.reverse(txn_id, allow_overdraft=force)
        except NotReversible:
            assert txn_id in self.reversals
            return
        except AlreadyReversed:
            assert txn_id in self.reversed
            return
        except InsufficientFunds:
            assert not force
            assert self._available(target) < amount
            return
        assert txn_id not in self.reversed
        self.reversed.add(txn_id)
        self.posted[target] -= amount
        self.posted[source] += amount
        self.done.append((reversal.id, target, source, amount))
        self.reversals.add(reversal.id)
        try:
            self.world.ledger.reverse(reversal.id)
            raise AssertionError("a reversal was reversed")
        except NotReversible:
            pass

    @rule(data=st.data())
    def replay_with_other_amount(self, data):
        if not self.done:
            return
        txn_id, source, target, amount = data.draw(st.sampled_from(self.done))
        stored = self.world.repository.get_transaction(txn_id)
        if stored.type is not TransactionType.TRANSFER:
            return
        try:
            self.world.ledger.record(
                transaction_id=txn_id,
                type=TransactionType.TRANSFER,
                postings=[
                    PostingRequest(source, "USD", -(amount + 1)),
                    PostingRequest(target, "USD", amount + 1),
                ],
            )
            raise AssertionError("a reused id with other postings was accepted")
        except TransactionExistsWithDifferentFields:
            pass

    @invariant()
    def every_guarantee_holds(self):
        check_guarantees(self.table)
        stored = self.world.repository.read(list(self.posted)).accounts
        for account_id, posted in self.posted.items():
            a = stored[account_id]
            assert (a.posted, a.pending_out) == (posted, self.pending_out[account_id])
            if not a.forced_negative:
                assert a.available >= 0
        for txn_id in self.holds:
            assert self.world.repository.get_transaction(txn_id).status is TransactionStatus.PENDING


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def setup_module() -> None:
    # One moto mock for the whole machine run; each example makes (and drops) its own table.
    global _mock
    from moto import mock_aws

    _mock = mock_aws()
    _mock.start()


def teardown_module() -> None:
    _mock.stop()
