"""Reconciliation cost: the same day's activity on top of a small and a large history.

For each history size (1,000 and 10,000 transactions over the ten days before the measured
day), on moto in-process:

1. write the history straight into the table (accounts, transactions, entries, consistent with
   each other: what the ledger would have written, without 10,000 moto transactions);
2. run the reconciliation of the history's last day once (the first run: it verifies every
   account from its first entry and checkpoints it);
3. write the measured day: the *same* 200 transactions (same seed) over the same 100 wallets;
4. run the reconciliation of that day and count its DynamoDB calls (botocore events on the
   models' client, which the reconciliation store shares), price the reads by DynamoDB's rules
   from the returned item sizes (moto reports no consumed capacity), and time it.

The measured run must not cost materially more on the larger history. See docs/benchmarks.md.

Run from the project root: ``.venv/bin/python bench/reconciliation.py``
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.offline import use_moto  # noqa: E402

use_moto(POWERTOOLS_SERVICE_NAME="ledger")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from bench.ledger_round_trips import item_size  # noqa: E402
from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.adapters.dynamo.models import AccountItem, EntryItem, TransactionItem  # noqa: E402
from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore  # noqa: E402
from chalicelib.config import get_settings  # noqa: E402
from chalicelib.domain.accounts import (  # noqa: E402
    Account,
    OwnerType,
    PlatformAccount,
    PlatformKind,
)
from chalicelib.domain.transactions import (  # noqa: E402
    Entry,
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from chalicelib.services import reconciliation as recon  # noqa: E402
from infra.local.table import create_table  # noqa: E402

USD = "USD"
DAY = "2026-03-11"
HISTORY_DAYS = [f"2026-03-{d:02d}" for d in range(1, 11)]
WALLETS = 100
SHARDS = 8
DAY_TRANSACTIONS = 200
HISTORIES = (1_000, 10_000)
CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, USD)
WRITES = {"PutItem", "BatchWriteItem", "UpdateItem", "TransactWriteItems", "DeleteItem"}


# -- writing a consistent ledger fast -------------------------------------------------------------
@dataclass
class FastLedger:
    """Plays the write path's bookkeeping in memory and writes the resulting items in batches."""

    client: object
    table: str
    accounts: dict[str, Account] = field(default_factory=dict)
    pending: list[dict] = field(default_factory=list)
    counter: int = 0

    def open(self, account: Account) -> None:
        self.accounts[account.id] = account.evolve(stored=True)

    def post(self, kind: TransactionType, postings: list[Posting], at: str) -> None:
        self.counter += 1
        txn = Transaction(
            id=f"txn_{self.counter:08d}",
            type=kind,
            status=TransactionStatus.POSTED,
            postings=tuple(postings),
            created_at=at,
        )
        self.pending.append(TransactionItem.from_domain(txn).serialize())
        for p in postings:
            before = self.accounts.get(p.account_id) or Account.platform_shard(p.account_id)
            seq = before.last_seq + 1
            after = before.evolve(
                posted=before.posted + p.amount,
                version=before.version + 1,
                last_seq=seq,
                last_entry_at=at,
                created_at=before.created_at or at,
                stored=True,
            )
            self.accounts[p.account_id] = after
            entry = Entry(p.account_id, seq, txn.id, kind, p.amount, after.posted, at)
            self.pending.append(EntryItem.from_domain(entry).serialize())
        if len(self.pending) >= 500:
            self.flush()

    def flush(self, with_accounts: bool = False) -> None:
        items = list(self.pending)
        if with_accounts:
            items += [AccountItem.from_domain(a).serialize() for a in self.accounts.values()]
        self.pending = []
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            self.client.batch_write_item(RequestItems={self.table: batch})


def wallet_ids() -> list[str]:
    return [f"acct_bench_{n:04d}" for n in range(WALLETS)]


def activity(ledger: FastLedger, count: int, days: list[str], rng: random.Random) -> None:
    """``count`` transactions spread over ``days``: a deposit for every fourth, else a transfer
    between two wallets that can afford it."""
    wallets = wallet_ids()
    per_day = math.ceil(count / len(days))
    for n in range(count):
        day = days[min(n // per_day, len(days) - 1)]
        second = n % per_day
        at = f"{day}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.000000Z"
        if n % 4 == 0:
            target = rng.choice(wallets)
            shard = CLEARING.shard_id(rng.randrange(SHARDS))
            amount = rng.randrange(1_000, 50_000)
            postings = [Posting(shard, USD, -amount), Posting(target, USD, amount)]
            ledger.post(TransactionType.DEPOSIT, postings, at)
            continue
        source, target = rng.sample(wallets, 2)
        amount = min(rng.randrange(100, 5_000), ledger.accounts[source].posted)
        if amount <= 0:
            continue
        postings = [Posting(source, USD, -amount), Posting(target, USD, amount)]
        ledger.post(TransactionType.TRANSFER, postings, at)


# -- counting --------------------------------------------------------------------------------------
@dataclass
class Meter:
    calls: Counter = field(default_factory=Counter)
    read_units: Decimal = Decimal(0)
    in_calls: float = 0.0  # seconds inside DynamoDB calls (the mock's own time, on moto)

    def attach(self, client) -> None:  # type: ignore[no-untyped-def]
        client.meta.events.register("provide-client-params.dynamodb", self._params)
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    @staticmethod
    def _params(params, context, **_kwargs) -> None:  # type: ignore[no-untyped-def]
        context["bench_index"] = params.get("IndexName")

    @staticmethod
    def _before(context, **_kwargs) -> None:  # type: ignore[no-untyped-def]
        context["bench_started"] = time.perf_counter()

    def _after(self, model, parsed, context, **_kwargs) -> None:  # type: ignore[no-untyped-def]
        self.in_calls += time.perf_counter() - context.get("bench_started", time.perf_counter())
        self.calls[model.name] += 1
        if model.name in ("Query", "Scan"):
            size = sum(item_size(i) for i in parsed.get("Items", []))
            units = Decimal(max(1, math.ceil(size / 4096)))
            # Index reads are eventually consistent: half price.
            self.read_units += units / 2 if context.get("bench_index") else units
        elif model.name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                for item in items:
                    self.read_units += Decimal(max(1, math.ceil(item_size(item) / 4096)))
        elif model.name == "GetItem":
            self.read_units += Decimal(max(1, math.ceil(item_size(parsed.get("Item")) / 4096)))

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())

    @property
    def reads(self) -> int:
        return sum(n for name, n in self.calls.items() if name not in WRITES)

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name in WRITES)


def partition_queries_in_moto() -> None:
    """moto answers a table query by walking *every* item of the table (DynamoDB reads only the
    partition), which would make this benchmark's wall time grow with history for moto's sake.
    Narrow moto's table query to the partition; index queries and scans are left as they are."""
    from moto.dynamodb.models.table import Table

    original = Table.query
    signature = inspect.signature(original)

    def query(self, hash_key, *args, **kwargs):  # type: ignore[no-untyped-def]
        index_name = signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name")
        if index_name or hash_key is None or not self.has_range_key:
            return original(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key, {})
        self.all_items = lambda: iter(list(partition.values()))
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query


def measure(history: int) -> tuple[recon.Report, Meter, float, recon.Report]:
    table = f"ledger-bench-{history}"
    os.environ["TABLE_NAME"] = table
    get_settings.cache_clear()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, table)
        models.bind(get_settings())
        store = DynamoReconciliationStore(table)
        ledger = FastLedger(store.client, table)
        for account_id in wallet_ids():
            ledger.open(
                Account.open(
                    account_id, USD, OwnerType.USER, account_id, "2026-03-01T00:00:00.000000Z"
                )
            )
        activity(ledger, history, HISTORY_DAYS, random.Random(history))
        ledger.flush(with_accounts=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the EMF metric line
            baseline = recon.run(HISTORY_DAYS[-1], store=store)

        # The measured day: the same transactions whatever the history (the wallets' balances
        # differ, so amounts are capped the same way: each wallet is topped up first).
        for account_id in wallet_ids():
            ledger.post(
                TransactionType.DEPOSIT,
                [
                    Posting(CLEARING.shard_id(0), USD, -1_000_000),
                    Posting(account_id, USD, 1_000_000),
                ],
                f"{DAY}T00:00:00.000000Z",
            )
        activity(ledger, DAY_TRANSACTIONS - WALLETS, [DAY], random.Random(2026))
        ledger.flush(with_accounts=True)

        meter = Meter()
        meter.attach(store.client)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            report = recon.run(DAY, store=store)
        elapsed = time.perf_counter() - started
    return report, meter, elapsed, baseline


def main() -> None:
    partition_queries_in_moto()
    rows = []
    for history in HISTORIES:
        report, meter, elapsed, baseline = measure(history)
        assert baseline.status == "ok", baseline.mismatches
        assert report.status == "ok", report.mismatches
        rows.append((history, report, meter, elapsed))
        print(
            f"history {history:>6} txns: day of {report.transactions_checked} txns, "
            f"{report.accounts_checked} accounts -> {meter.round_trips} round trips "
            f"({meter.reads} reads, {meter.writes} writes), ~{meter.read_units} RCU; "
            f"{elapsed:.2f} s wall, {elapsed - meter.in_calls:.2f} s outside DynamoDB calls; "
            f"calls={dict(sorted(meter.calls.items()))}"
        )
    (_, _, small, _), (_, _, large, _) = rows
    ratio = large.read_units / small.read_units
    print(f"read units, {HISTORIES[1]} vs {HISTORIES[0]} history: x{ratio:.2f}")
    assert large.reads <= small.reads * 1.1, "reads grew with history"


if __name__ == "__main__":
    main()
