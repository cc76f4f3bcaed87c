"""How the cost of a transfer and of a history page grows with the table, on moto in-process.

Opens 100 USD user accounts, funds them, and writes transfers between random accounts with the
real engine (``tests.support.LedgerWorld``: a transaction, two entries and two timeline items per
transfer) until the table holds about 1,000 items; measures one transfer and one history page
(``DynamoLedgerRepository.entries``, the query behind ``GET /v1/accounts/{id}/entries``: 20
entries, newest first); then writes transfers up to ``--transactions`` (about 50,000 items for the
default 10,000) and measures both again. The goal: the cost at 50k items is within 1.2x of the
cost at 1k, because ``infra.local.moto_dynamodb.install()`` makes transactions cost O(items of
the transaction) and queries O(partition), and tracks no items (RSS stays flat).

With ``--stock``, the same two costs are also measured with moto's own code
(``moto_dynamodb.stock()``) at 1k items and at about 5,000 items: stock moto deep-copies the whole
table once per item of a transaction, so going further is too slow. Those copies are ``Table``
models, which moto tracks forever (``install()`` untracks ``Item`` only); the bench drops them
after each stock measurement and says how many there were, so the RSS figures stay about the
project's moto.

The history page is read from one account that each of the first 25 transfers involves and no
later one does: it returns a full page of 20 entries from the same partition (26 entries) at both
points, so the ratio shows what the table's size costs. At the large point a page of the busiest
account (~240 entries, the partition a query walks) is measured too: what history costs.

Each cost is timed with ``time.perf_counter`` (wall) and ``time.process_time`` (this process's
CPU). A shared machine (other processes, or the host under the VM) can slow everything down by
1.5x for seconds at a time, which CPU time does not see either; so each run of an operation is
followed by a fixed piece of pure-Python work, timed too (``ref ms``), and the ratios are also
given divided by the reference's ratio. The 1-minute load average is printed at each point.

Figures only, no assertions. Run from the project root:
``.venv/bin/python bench/moto_scale.py [--stock] [--transactions 10000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.offline import use_moto  # noqa: E402

TABLE = "ledger-bench-scale"
use_moto(TABLE)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.dynamodb.models import dynamodb_backends  # noqa: E402
from moto.dynamodb.models.dynamo_type import Item  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.config import get_settings  # noqa: E402
from infra.local import moto_dynamodb  # noqa: E402
from infra.local.table import create_table  # noqa: E402
from tests.support import LedgerWorld  # noqa: E402

ACCOUNTS = 100
FUNDING = 10_000_000  # minor units per account: no transfer below can overdraw
MAX_AMOUNT = 1_000
REPEATS = 50  # per measurement, with the project's moto
STOCK_REPEATS = 10  # per measurement, with stock moto (seconds each at 5k items)
PAGE = 20
SMALL_ITEMS = 1_000
STOCK_ITEMS = 5_000
PROGRESS_EVERY = 2_000
HOT_TRANSFERS = 25  # the first transfers, and only they, involve the history account
SEED = 20_260_101


_REFERENCE_RNG = random.Random(0)
REFERENCE_DATA = {f"k{i}": [_REFERENCE_RNG.random() for _ in range(5)] for i in range(150)}
REFERENCE_WORDS = [str(_REFERENCE_RNG.random()) for _ in range(1_500)]


def reference() -> None:
    """A fixed ~1 ms of pure-Python work: how fast the machine is right now."""
    json.loads(json.dumps(REFERENCE_DATA))
    sorted(REFERENCE_WORDS)


def rss_mb() -> float:
    """The process's resident set (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Cost:
    label: str
    median_ms: float
    p95_ms: float
    cpu_ms: float  # median of this process's CPU time
    ref_ms: float  # median of the reference work timed after each run
    calls: str
    repeats: int
    note: str = ""

    def line(self) -> str:
        return (
            f"  {self.label:<44}{self.median_ms:>10.2f}{self.p95_ms:>10.2f}{self.cpu_ms:>10.2f}"
            f"{self.ref_ms:>8.2f}{self.repeats:>6}  {self.calls}{self.note}"
        )


HEADER = (
    f"  {'operation':<44}{'median ms':>10}{'p95 ms':>10}{'CPU ms':>10}{'ref ms':>8}{'runs':>6}"
    "  DynamoDB calls per run"
)


class Bench:
    def __init__(self, raw, world: LedgerWorld, accounts: list[str]) -> None:
        self.raw = raw
        self.world = world
        self.accounts = accounts
        self.hot = accounts[0]  # the account whose history page is read
        self.others = accounts[1:]
        self.rng = random.Random(SEED)
        self.transfers = 0
        self.rss_before_release = 0.0
        self.calls: Counter[str] = Counter()
        client = models.MODELS[0]._get_connection().connection.client  # shared by all models
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model, **_kwargs) -> None:
        self.calls[model.name] += 1

    def items(self) -> int:
        return self.raw.describe_table(TableName=TABLE)["Table"]["ItemCount"]

    def transfer(self) -> None:
        if self.transfers < HOT_TRANSFERS:
            other = self.rng.choice(self.others)
            pair = (self.hot, other) if self.transfers % 2 else (other, self.hot)
        else:
            pair = tuple(self.rng.sample(self.others, 2))
        self.world.transfer(*pair, self.rng.randint(1, MAX_AMOUNT))
        self.transfers += 1

    def page(self, account: str | None = None) -> int:
        """One page of the account's history, as ``GET /v1/accounts/{id}/entries`` reads it."""
        page = self.world.repository.entries(account or self.hot, limit=PAGE, newest_first=True)
        return len(page.entries)

    def history(self, account: str | None = None) -> int:
        """How many entries the account has (its partition holds them and the account)."""
        return self.world.account(account or self.hot).last_seq

    def fill_to_items(self, target: int, check_every: int = 1) -> None:
        while self.items() < target:
            for _ in range(check_every):
                self.transfer()

    def fill_to_transfers(self, target: int) -> None:
        started, done = time.perf_counter(), self.transfers
        while self.transfers < target:
            self.transfer()
            if self.transfers % PROGRESS_EVERY == 0:
                rate = (self.transfers - done) / (time.perf_counter() - started)
                print(
                    f"  {self.transfers:>6,} transfers  {self.items():>7,} items  "
                    f"{rate:6.1f} transfers/s  RSS {rss_mb():6.1f} MB",
                    flush=True,
                )

    def measure(self, label: str, action: Callable[[], object], repeats: int) -> Cost:
        seconds: list[float] = []
        cpu: list[float] = []
        ref: list[float] = []
        results: list[object] = []
        self.calls.clear()
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            results.append(action())
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            started = time.perf_counter()
            reference()
            ref.append(time.perf_counter() - started)
        calls = ", ".join(f"{name} x{count / repeats:g}" for name, count in self.calls.items())
        sizes = {r for r in results if isinstance(r, int)}
        note = f"  ({'/'.join(map(str, sorted(sizes)))} entries per page)" if sizes else ""
        return Cost(
            label,
            statistics.median(seconds) * 1000,
            statistics.quantiles(seconds, n=20, method="inclusive")[-1] * 1000,
            statistics.median(cpu) * 1000,
            statistics.median(ref) * 1000,
            calls,
            repeats,
            note,
        )

    def point(self, title: str, repeats: int = REPEATS, busy: bool = False) -> list[Cost]:
        print(
            f"\n{title}: {self.items():,} items, {self.transfers:,} transfers, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        costs = [
            self.measure("transfer (project's moto)", self.transfer, repeats),
            self.measure(
                f"history page (project's moto, {self.history()} entries)", self.page, repeats
            ),
        ]
        if busy:
            account = max(self.others, key=self.history)
            label = f"history page (project's moto, {self.history(account)} entries)"
            costs.append(self.measure(label, lambda: self.page(account), repeats))
        print(HEADER)
        for cost in costs:
            print(cost.line(), flush=True)
        return costs

    def stock_point(self, repeats: int = STOCK_REPEATS) -> tuple[Cost, Cost]:
        items = self.items()
        with moto_dynamodb.stock():
            costs = (
                self.measure("transfer (stock moto)", self.transfer, repeats),
                self.measure(
                    f"history page (stock moto, {self.history()} entries)", self.page, repeats
                ),
            )
        self.rss_before_release = rss_mb()
        print(f"  stock moto at {items:,} items, load average {os.getloadavg()[0]:.2f}:")
        for cost in costs:
            print(cost.line(), flush=True)
        copies = release_table_copies()
        print(
            f"  stock moto's transactions left {copies} deep copies of the table in "
            f"Table.instances_tracked (RSS {self.rss_before_release:.1f} MB); "
            f"released them: RSS {rss_mb():.1f} MB",
            flush=True,
        )
        return costs


def tracked() -> int:
    return len(Item.instances_tracked)


def release_table_copies() -> int:
    """Drop the tables stock moto deep-copied for rollback: ``Table`` is a tracked moto model
    (``install()`` untracks ``Item`` only), so each copy stays in ``Table.instances_tracked``."""
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    live = {id(table) for table in backend.tables.values()}
    before = len(Table.instances_tracked)
    Table.instances_tracked[:] = [t for t in Table.instances_tracked if id(t) in live]
    gc.collect()
    return before - len(Table.instances_tracked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000, help="transfers to write")
    parser.add_argument("--stock", action="store_true", help="also measure stock moto (slow)")
    args = parser.parse_args()
    began = time.perf_counter()
    moto_dynamodb.install()
    rss = {"start": rss_mb()}
    print(f"moto DynamoDB at scale: {ACCOUNTS} USD accounts, {args.transactions:,} transfers")
    print(f"RSS at start: {rss['start']:.1f} MB")

    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_table(raw, TABLE)
        os.environ["TABLE_NAME"] = TABLE
        get_settings.cache_clear()
        models.bind(get_settings())
        world = LedgerWorld.create(TABLE)
        accounts = [world.open_user_account() for _ in range(ACCOUNTS)]
        for account in accounts:
            world.fund(account, FUNDING)
        bench = Bench(raw, world, accounts)

        bench.fill_to_items(SMALL_ITEMS)
        small = bench.point("at ~1k items")
        rss["1k"] = rss_mb()
        print(f"  RSS {rss['1k']:.1f} MB, Item.instances_tracked {tracked()}")
        stock_small = stock_mid = None
        if args.stock:
            stock_small = bench.stock_point()
            bench.fill_to_items(STOCK_ITEMS, check_every=50)
            print(f"\nat ~5k items: {bench.items():,} items, {bench.transfers:,} transfers")
            stock_mid = bench.stock_point()

        print(
            f"\nwriting transfers up to {args.transactions:,} (progress every {PROGRESS_EVERY:,}):"
        )
        fill_started, fill_from, rss["fill"] = time.perf_counter(), bench.transfers, rss_mb()
        bench.fill_to_transfers(args.transactions)
        fill_seconds = time.perf_counter() - fill_started
        rss["end"], filled = rss_mb(), bench.transfers
        written = bench.transfers - fill_from
        print(
            f"  wrote {written:,} transfers in {fill_seconds:.1f} s "
            f"({written / max(fill_seconds, 1e-9):.1f} transfers/s)"
        )
        large = bench.point(f"at ~{round(bench.items() / 1000)}k items", busy=True)
        print(f"  RSS {rss['end']:.1f} MB, Item.instances_tracked {tracked()}")
        items_tracked, tables_tracked = tracked(), len(Table.instances_tracked)
        large_items = bench.items()

    names = ("transfer", f"history page of {PAGE}")
    print(f"\nratio {round(large_items / 1000)}k/1k items, project's moto (goal: within 1.2x)")
    for name, one, other in zip(names, small, large[: len(names)], strict=True):
        machine = other.ref_ms / one.ref_ms
        print(
            f"  {name:<22} median {other.median_ms / one.median_ms:5.2f}x   "
            f"p95 {other.p95_ms / one.p95_ms:5.2f}x   CPU {other.cpu_ms / one.cpu_ms:5.2f}x   "
            f"reference {machine:5.2f}x   median / reference "
            f"{other.median_ms / one.median_ms / machine:5.2f}x"
        )
    if len(large) > len(names):
        busy = large[len(names)]
        entries = busy.label.split(", ")[-1].rstrip(")")
        machine = busy.ref_ms / small[1].ref_ms
        print(
            f"  (the busiest account's page, {entries}, walks a bigger partition: median "
            f"{busy.median_ms / small[1].median_ms:.2f}x the 1k page, "
            f"{busy.median_ms / small[1].median_ms / machine:.2f}x by the reference)"
        )
    if stock_small and stock_mid:
        print("stock moto (for comparison)")
        for name, one, other, ours in zip(names, stock_small, stock_mid, small, strict=True):
            print(
                f"  {name:<22} median 5k/1k {other.median_ms / one.median_ms:5.2f}x   "
                f"stock/project at 1k {one.median_ms / ours.median_ms:6.1f}x"
            )
    print(
        f"\nRSS: start {rss['start']:.1f} MB, at 1k items {rss['1k']:.1f} MB, "
        f"after {filled:,} transfers {rss['end']:.1f} MB; "
        f"Item.instances_tracked {items_tracked}, Table.instances_tracked {tables_tracked}"
    )
    print(
        f"RSS while writing those {written:,} transfers: {rss['fill']:.1f} -> {rss['end']:.1f} MB "
        f"({rss['end'] - rss['fill']:+.1f} MB)"
    )
    print(f"runtime {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
