"""Test helpers: a ledger on a moto table, plus a whole-table checker of every guarantee."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository
from chalicelib.domain.accounts import Account, OwnerType, PlatformAccount, PlatformKind
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.services.ledger import LedgerService, PostingRequest

_deserialize = TypeDeserializer().deserialize


def scan(table: str) -> list[dict]:
    """Every item of the table, as plain Python values (numbers come back as Decimal)."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    items: list[dict] = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items += [{k: _deserialize(v) for k, v in raw.items()} for raw in page["Items"]]
    return items


@dataclass
class LedgerWorld:
    table: str
    ledger: LedgerService
    repository: DynamoLedgerRepository
    funding: dict[str, PlatformAccount] = field(default_factory=dict)

    @classmethod
    def create(cls, table: str, *, shards: int = 4, seed: int = 7) -> LedgerWorld:
        repository = DynamoLedgerRepository()
        ledger = LedgerService(
            repository,
            platform_shards=shards,
            rng=random.Random(seed),
            sleep=lambda _seconds: None,
        )
        return cls(table=table, ledger=ledger, repository=repository)

    def open_user_account(self, currency: str = "USD", owner: str | None = None) -> str:
        account_id = f"acct_{uuid.uuid4().hex[:12]}"
        owner = owner or f"user_{uuid.uuid4().hex[:8]}"
        self.ledger.open_accounts(
            [Account.open(account_id, currency, OwnerType.USER, owner, now_iso())]
        )
        return account_id

    def fund(self, account_id: str, amount: int, currency: str = "USD", key: str = "") -> str:
        """A deposit from Stripe clearing into ``account_id``; returns the transaction id."""
        txn_id = derive_transaction_id("test-deposit", account_id, key or uuid.uuid4().hex)
        self.ledger.record(
            transaction_id=txn_id,
            type=TransactionType.DEPOSIT,
            postings=[
                PostingRequest(
                    PlatformAccount(PlatformKind.STRIPE_CLEARING, currency), currency, -amount
                ),
                PostingRequest(account_id, currency, amount),
            ],
        )
        return txn_id

    def transfer(
        self,
        source: str,
        target: str,
        amount: int,
        currency: str = "USD",
        key: str = "",
        pending: bool = False,
    ):
        return self.ledger.record(
            transaction_id=derive_transaction_id("test-transfer", source, key or uuid.uuid4().hex),
            type=TransactionType.TRANSFER,
            postings=[
                PostingRequest(source, currency, -amount),
                PostingRequest(target, currency, amount),
            ],
            pending=pending,
        )

    def account(self, account_id: str) -> Account:
        found = self.repository.get_account(account_id)
        assert found is not None, account_id
        return found

    def check_guarantees(self) -> None:
        check_guarantees(self.table)


def check_guarantees(table: str) -> None:
    """Assert every DESIGN.md guarantee that the stored data can show, over the whole table."""
    items = scan(table)
    accounts = {i["account_id"]: i for i in items if i["item_type"] == "account"}
    transactions = {i["transaction_id"]: i for i in items if i["item_type"] == "transaction"}
    entries: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        if item["item_type"] == "entry":
            entries[item["account_id"]].append(item)

    # 1. Balanced: each transaction sums to zero per currency; amounts are integers (9).
    for txn in transactions.values():
        sums: dict[str, int] = defaultdict(int)
        for p in txn["postings"]:
            assert p["amount"] == int(p["amount"])
            assert p["amount"] != 0
            sums[p["currency"]] += int(p["amount"])
        assert all(v == 0 for v in sums.values()), (txn["transaction_id"], dict(sums))

    # 2. Conservation: the trial balance is zero per currency, for posted and for pending.
    posted: dict[str, int] = defaultdict(int)
    pending_out: dict[str, int] = defaultdict(int)
    pending_in: dict[str, int] = defaultdict(int)
    for a in accounts.values():
        posted[a["currency"]] += int(a["posted"])
        pending_out[a["currency"]] += int(a["pending_out"])
        pending_in[a["currency"]] += int(a["pending_in"])
        # available is stored for DynamoDB's own overdraft condition: it must be exact.
        assert int(a["available"]) == int(a["posted"]) - int(a["pending_out"]), a["account_id"]
        # 3. No overdraft, unless forced and flagged.
        if a["overdraft_forbidden"] and not a.get("forced_negative"):
            assert int(a["available"]) >= 0, a["account_id"]
    assert all(v == 0 for v in posted.values()), dict(posted)
    for code in set(pending_out) | set(pending_in):
        assert pending_out[code] == pending_in[code], (code, dict(pending_out), dict(pending_in))

    # 8. Holds: pending amounts equal the open holds exactly.
    held_out: dict[str, int] = defaultdict(int)
    held_in: dict[str, int] = defaultdict(int)
    for txn in transactions.values():
        if txn["status"] == "pending":
            for p in txn["postings"]:
                amount = int(p["amount"])
                if amount < 0:
                    held_out[p["account_id"]] += -amount
                else:
                    held_in[p["account_id"]] += amount
    for account_id, a in accounts.items():
        assert int(a["pending_out"]) == held_out[account_id], account_id
        assert int(a["pending_in"]) == held_in[account_id], account_id

    # 7. Consistent history: gapless seq, exact balance_after, balance = sum of entries,
    #    and every entry belongs to a posted transaction with a matching posting.
    for account_id, a in accounts.items():
        lines = sorted(entries[account_id], key=lambda e: e["SK"])
        assert [int(e["seq"]) for e in lines] == list(range(1, len(lines) + 1)), account_id
        assert int(a["last_seq"]) == len(lines), account_id
        running = 0
        for e in lines:
            running += int(e["amount"])
            assert int(e["balance_after"]) == running, (account_id, e["seq"])
            txn = transactions[e["transaction_id"]]
            assert txn["status"] == "posted", e["transaction_id"]
            assert any(
                p["account_id"] == account_id and int(p["amount"]) == int(e["amount"])
                for p in txn["postings"]
            )
        assert running == int(a["posted"]), account_id
    assert set(entries) <= set(accounts)

    # 6. Reversals link both ways, at most once, with opposite postings.
    for txn in transactions.values():
        if txn.get("reverses"):
            original = transactions[txn["reverses"]]
            assert original["reversed_by"] == txn["transaction_id"]
            assert sorted(
                (p["account_id"], -int(p["amount"])) for p in original["postings"]
            ) == sorted((p["account_id"], int(p["amount"])) for p in txn["postings"])
        if txn.get("reversed_by"):
            assert transactions[txn["reversed_by"]]["reverses"] == txn["transaction_id"]
    # Posted transactions have exactly one entry per posting.
    by_txn: dict[str, int] = defaultdict(int)
    for lines in entries.values():
        for e in lines:
            by_txn[e["transaction_id"]] += 1
    for txn in transactions.values():
        expected = len(txn["postings"]) if txn["status"] == "posted" else 0
        assert by_txn[txn["transaction_id"]] == expected, txn["transaction_id"]


def verified(user):  # type: ignore[no-untyped-def]
    """The user with their email marked verified, as the operators' migration does (tests whose
    subject is not email verification need recipients that can receive money)."""
    from dataclasses import replace

    from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
    from chalicelib.domain.users import AuditEvent

    event = AuditEvent(
        id=f"evt_test_verify_{user.id}",
        at=user.created_at,
        actor_id=None,
        action="auth.email_verified",
        ip=None,
        target=user.id,
        details={"by": "test"},
    )
    DynamoAuthRepository().mark_email_verified(user, event)
    return replace(user, email_verified=True)


def lose_the_first_answer(monkeypatch: Any, *, after: int = 0) -> list[int]:
    """Fault injection: the next atomic write (``AtomicWrite.send``), or the one after ``after``
    others went through, commits, then its answer is lost (a reset connection), as DynamoDB's
    answer can be after it committed. Returns a list that holds one element once that happened."""
    from botocore.exceptions import ConnectionClosedError

    from chalicelib.adapters.dynamo.transact import AtomicWrite

    real_send = AtomicWrite.send
    lost: list[int] = []
    passed: list[int] = []

    def send_then_lose_the_answer(self: Any) -> None:
        real_send(self)
        if len(passed) < after:
            passed.append(1)
            return
        if not lost:
            lost.append(1)
            raise ConnectionClosedError(endpoint_url="http://dynamodb")

    monkeypatch.setattr(AtomicWrite, "send", send_then_lose_the_answer)
    return lost
