"""DynamoDB round trips and capacity units per ledger operation, on moto in-process.

Counts every API call the engine makes (botocore ``before-call`` / ``after-call`` events on the
clients of PynamoDB's connections) and prices it by DynamoDB's rules from the item sizes, because
moto reports no ConsumedCapacity for transactions. See docs/benchmarks.md for the assumptions.

Run from the project root: ``.venv/bin/python bench/ledger_round_trips.py``
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.offline import use_moto  # noqa: E402

use_moto()

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.adapters.clock import now_iso  # noqa: E402
from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository  # noqa: E402
from chalicelib.config import get_settings  # noqa: E402
from chalicelib.domain.accounts import Account, OwnerType, PlatformAccount, PlatformKind  # noqa: E402
from chalicelib.domain.transactions import TransactionType, derive_transaction_id  # noqa: E402
from chalicelib.services.ledger import LedgerService, PostingRequest  # noqa: E402
from infra.local.table import create_table, table_properties  # noqa: E402

TABLE = "ledger-bench"
USD = "USD"
STRIPE = PlatformAccount(PlatformKind.STRIPE_CLEARING, USD)
GSIS = [
    (tuple(k["AttributeName"] for k in gsi["KeySchema"]), gsi["Projection"]["ProjectionType"])
    for gsi in table_properties()["GlobalSecondaryIndexes"]
]
TARGET_TRANSFER_ROUND_TRIPS = 2
TRANSFER, DEPOSIT = TransactionType.TRANSFER, TransactionType.DEPOSIT


# -- DynamoDB item size and capacity rules -------------------------------------------------------
def number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0")
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in v.items())
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in v)
    if kind == "SS":
        return sum(len(e.encode()) for e in v)
    if kind == "NS":
        return sum(number_size(e) for e in v)
    return sum(len(e) for e in v)  # BS


def item_size(item: dict | None) -> int:
    return sum(len(name.encode()) + value_size(v) for name, v in (item or {}).items())


def key_of(item: dict) -> tuple[str, str]:
    return item["PK"]["S"], item["SK"]["S"]


def read_units(item: dict | None, consistent: bool) -> Decimal:
    """ceil(size / 4 KB), at least one unit even for a missing item; half when eventual."""
    units = Decimal(max(1, math.ceil(item_size(item) / 4096)))
    return units if consistent else units / 2


def write_units(before: dict | None, after: dict | None) -> int:
    """A write costs ceil(size / 1 KB) of the larger of the item before and after it."""
    return max(1, math.ceil(max(item_size(before), item_size(after)) / 1024))


def gsi_write_units(before: dict | None, after: dict | None) -> int:
    """Index writes: one put or update, two when an index key changes; a KEYS_ONLY index is
    written only when the item enters, leaves or moves within it."""
    units = 0
    for index_keys, projection in GSIS:
        old = tuple(str((before or {}).get(k)) for k in index_keys) if before else None
        new = tuple(str((after or {}).get(k)) for k in index_keys) if after else None
        in_old = before is not None and all(k in before for k in index_keys)
        in_new = after is not None and all(k in after for k in index_keys)
        if projection == "KEYS_ONLY" and in_old and in_new and old == new:
            continue
        if in_old and in_new and old != new:
            units += write_units(before, None) + write_units(None, after)
        elif (in_old or in_new) and before != after:
            units += write_units(before if in_old else None, after if in_new else None)
    return units


# -- call recording -------------------------------------------------------------------------------
@dataclass
class Operation:
    name: str
    calls: list[str] = field(default_factory=list)
    clients: set[str] = field(default_factory=set)
    rcu: Decimal = Decimal(0)
    wcu: int = 0
    gsi_wcu: int = 0
    max_in_flight: int = 0

    def __add__(self, other: Operation) -> Operation:
        return Operation(
            f"= {self.name.split()[0]} + {other.name.split()[0]}",
            self.calls + other.calls,
            self.clients | other.clients,
            self.rcu + other.rcu,
            self.wcu + other.wcu,
            self.gsi_wcu + other.gsi_wcu,
            max(self.max_in_flight, other.max_in_flight),
        )


class Recorder:
    """Hooks the botocore clients behind PynamoDB and prices every call of the current op."""

    def __init__(self, raw_client) -> None:
        self.raw = raw_client  # an unhooked client, to look at items before and after writes
        self.op: Operation | None = None
        self.in_flight = 0
        self.before: dict = {}
        self.params: dict = {}

    def hook(self, client, label: str) -> None:
        def before(**kwargs) -> None:
            self._before(client=label, **kwargs)

        client.meta.events.register("before-call.dynamodb", before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def table(self) -> dict:
        pages = self.raw.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True)
        return {key_of(item): item for page in pages for item in page["Items"]}

    def _before(self, client, model, params, **_kwargs) -> None:
        if self.op is None:
            return
        self.op.clients.add(f"{client}: {model.name}")
        self.params = json.loads(params["body"])  # the request as sent on the wire
        self.in_flight += 1
        self.op.max_in_flight = max(self.op.max_in_flight, self.in_flight)
        self.op.calls.append(model.name)
        if model.name == "TransactWriteItems":
            self.before = self.table()

    def _after(self, model, parsed, **_kwargs) -> None:
        if self.op is None:
            return
        params = self.params
        self.in_flight -= 1
        if model.name == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                found = {key_of(i): i for i in parsed.get("Responses", {}).get(table, [])}
                unprocessed = parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                skipped = {key_of(k) for k in unprocessed}
                for key in request["Keys"]:
                    if key_of(key) not in skipped:
                        consistent = bool(request.get("ConsistentRead"))
                        self.op.rcu += read_units(found.get(key_of(key)), consistent)
        elif model.name == "TransactWriteItems":
            after = self.table()
            for action in params["TransactItems"]:
                ((_kind, body),) = action.items()
                key = key_of(body.get("Item") or body["Key"])
                old, new = self.before.get(key), after.get(key)
                self.op.wcu += 2 * write_units(old, new)  # transactional: prepare + commit
                self.op.gsi_wcu += gsi_write_units(old, new)
        else:
            raise NotImplementedError(f"no pricing rule for {model.name}")

    def measure(self, name: str, action) -> Operation:
        self.op = Operation(name)
        try:
            action()
        finally:
            op, self.op = self.op, None
        return op


# -- scenario -----------------------------------------------------------------------------------
def main() -> None:
    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_table(raw, TABLE)
        get_settings.cache_clear()
        models.bind(get_settings())
        recorder = Recorder(raw)
        # models.bind shares one botocore client between the models: hook each client once.
        clients: dict[int, tuple] = {}
        for model in models.MODELS:
            client = model._get_connection().connection.client
            clients.setdefault(id(client), (client, []))[1].append(model.__name__)
        for client, names in clients.values():
            recorder.hook(client, "+".join(names))

        seed = 11
        ledger = LedgerService(DynamoLedgerRepository(), platform_shards=8, rng=random.Random(seed))
        alice, bob = "acct_bench_alice", "acct_bench_bob"
        ledger.open_accounts(
            [Account.open(a, USD, OwnerType.USER, a, now_iso()) for a in (alice, bob)]
        )

        def txn_id(key: str) -> str:
            return derive_transaction_id("bench", key)

        def transfer(key: str, amount: int, pending: bool = False):
            postings = [PostingRequest(alice, USD, -amount), PostingRequest(bob, USD, amount)]
            return lambda: ledger.record(
                transaction_id=txn_id(key), type=TRANSFER, postings=postings, pending=pending
            )

        def deposit(key: str, account: str, amount: int):
            postings = [PostingRequest(STRIPE, USD, -amount), PostingRequest(account, USD, amount)]

            def run():
                ledger.rng = random.Random(seed)  # every deposit picks the same shard
                ledger.record(transaction_id=txn_id(key), type=DEPOSIT, postings=postings)

            return run

        steps = [  # run in this order: funding first, then each operation on funded accounts
            ("deposit, new shard", deposit("d1", alice, 90_000)),
            ("deposit, existing shard", deposit("d2", bob, 5_000)),
            ("transfer", transfer("t", 1_250)),
            ("hold (a)", transfer("h1", 700, pending=True)),
            ("post hold (a)", lambda: ledger.post_pending(txn_id("h1"))),
            ("hold (b)", transfer("h2", 300, pending=True)),
            ("void hold (b)", lambda: ledger.void_pending(txn_id("h2"))),
            ("reversal of transfer", lambda: ledger.reverse(txn_id("t"))),
            ("replayed transfer", transfer("t", 1_250)),
        ]
        ops = [recorder.measure(name, action) for name, action in steps]
        sizes = Counter()
        for item in recorder.table().values():
            kind = item["item_type"]["S"]
            sizes[kind] = max(sizes[kind], item_size(item))

    dep_new, dep_old, xfer, hold_a, post, hold_b, void, rev, replay = ops
    holds = [hold_a, post, hold_a + post, hold_b, void, hold_b + void]
    report([xfer, *holds, rev, dep_new, dep_old, replay], sizes)


def report(results: list[Operation], sizes: Counter) -> None:
    print("DynamoDB round trips and capacity per ledger operation (moto, priced by item size)")
    header = (
        f"{'operation':<26}{'trips':>6}  {'calls by name':<42}{'RCU':>5}{'WCU':>5}{'GSI WCU':>9}"
    )
    print(header)
    print("-" * len(header))
    for op in results:
        by_name = ", ".join(f"{n} x{c}" for n, c in Counter(op.calls).items())
        print(
            f"{op.name:<26}{len(op.calls):>6}  {by_name:<42}{op.rcu:>5}{op.wcu:>5}{op.gsi_wcu:>9}"
        )
    print()
    print("RCU: strongly consistent, ceil(size/4KB) per item, 1 for a missing item.")
    print("WCU: TransactWriteItems, 2 x ceil(max(before, after)/1KB) per item.")
    print("GSI WCU: index writes, 1 x ceil(size/1KB), not doubled; KEYS_ONLY only on key changes.")
    print("largest item of each type (bytes):", ", ".join(f"{k} {v}" for k, v in sizes.items()))
    overlapping = [op.name for op in results if op.max_in_flight > 1]
    print(f"operations with overlapping calls: {overlapping or 'none (all calls sequential)'}")
    used = sorted(set().union(*(op.clients for op in results)))
    print(f"botocore clients used (label: the models sharing it): {'; '.join(used)}")
    transfer = next(op for op in results if op.name == "transfer")
    verdict = "PASS" if len(transfer.calls) <= TARGET_TRANSFER_ROUND_TRIPS else "FAIL"
    print(
        f"target: uncontended transfer <= {TARGET_TRANSFER_ROUND_TRIPS} sequential round trips: "
        f"{verdict} ({len(transfer.calls)})"
    )
    over = [
        f"{op.name} ({len(op.calls)})"
        for op in results
        if len(op.calls) > TARGET_TRANSFER_ROUND_TRIPS and not op.name.startswith("=")
    ]
    print(f"single operations over 2 round trips (informational): {', '.join(over) or 'none'}")


if __name__ == "__main__":
    main()
