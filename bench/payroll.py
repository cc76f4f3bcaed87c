"""DynamoDB round trips and capacity of a 100-item payroll batch (``POST /v1/facility/payouts``),
through the real app (Chalice's test client) on moto, in-process.

Counts every DynamoDB call of the request (the API key check, the idempotency record, the
recipients, the reservation, the items, the completion) and prices each from item sizes with the
rules of ``bench/ledger_round_trips.py`` (moto reports no ConsumedCapacity for transactions; see
docs/benchmarks.md). Two batches of 100 items to 100 verified users are paid:

* with one worker, priced call by call (exact: calls never overlap);
* with ``WORKERS`` workers (the deployed setting), counted per thread: the critical path is the
  request thread's calls plus the busiest worker's, i.e. the sequential round trips a client
  waits for; write conflicts between workers would show as extra calls.

Then the replay of the first request (same Idempotency-Key) and ``GET`` of the batch.

    .venv/bin/python bench/payroll.py [--items 100]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.ledger_round_trips import (  # noqa: E402 (it sets up moto: import it first)
    TABLE,
    gsi_write_units,
    item_size,
    key_of,
    read_units,
    write_units,
)
from bench.offline import use_moto  # noqa: E402

use_moto(TABLE, STAGE="test", POWERTOOLS_LOG_LEVEL="ERROR")

import boto3  # noqa: E402
import pyotp  # noqa: E402
from chalice.test import Client  # noqa: E402
from moto import mock_aws  # noqa: E402

from app import app  # noqa: E402
from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.api.dependencies import get_auth_service  # noqa: E402
from chalicelib.auth import passwords  # noqa: E402
from chalicelib.domain.accounts import OwnerType, wallet_id  # noqa: E402
from chalicelib.services import payroll as payroll_service  # noqa: E402
from infra.local.table import create_table  # noqa: E402
from tests.support import LedgerWorld, verified  # noqa: E402

PASSWORD = "correct horse battery"  # noqa: S105 - benchmark users


class Meter:
    """Every DynamoDB call of the current measurement: by name, by thread, and priced."""

    def __init__(self, raw, *, price: bool) -> None:
        self.raw = raw  # unhooked: looks at the table around writes
        self.price = price
        self.active = False
        self.lock = threading.Lock()
        self.local = threading.local()
        self.reset()

    def reset(self) -> None:
        self.calls: Counter = Counter()
        self.by_thread: Counter = Counter()
        self.rcu = Decimal(0)
        self.wcu = 0
        self.gsi_wcu = 0
        self.largest: Counter = Counter()

    def table(self) -> dict:
        pages = self.raw.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True)
        return {key_of(item): item for page in pages for item in page["Items"]}

    def hook(self, client) -> None:
        client.meta.events.register("before-call.dynamodb", self.before)
        client.meta.events.register("after-call.dynamodb", self.after)

    def before(self, model, params, **_kwargs) -> None:
        if not self.active:
            return
        name = threading.current_thread().name
        with self.lock:
            self.calls[model.name] += 1
            self.by_thread["worker" if name.startswith("payroll") else "request"] += 1
            self.by_thread[name] += 1
        self.local.params = json.loads(params["body"])
        if self.price and model.name in ("TransactWriteItems", "PutItem", "UpdateItem"):
            self.local.table = self.table()

    def after(self, model, parsed, **_kwargs) -> None:
        if not (self.active and self.price):
            return
        params = self.local.params
        name = model.name
        if name == "GetItem":
            self.rcu += read_units(parsed.get("Item"), bool(params.get("ConsistentRead")))
        elif name == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                found = {key_of(i): i for i in parsed.get("Responses", {}).get(table, [])}
                for key in request["Keys"]:
                    item = found.get(key_of(key))
                    self.rcu += read_units(item, bool(request.get("ConsistentRead")))
        elif name == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            units = Decimal(max(1, math.ceil(size / 4096)))
            self.rcu += units if params.get("ConsistentRead") else units / 2
        elif name in ("TransactWriteItems", "PutItem", "UpdateItem"):
            before, after = self.local.table, self.table()
            if name == "TransactWriteItems":
                bodies = [next(iter(a.values())) for a in params["TransactItems"]]
            else:
                bodies = [params]
            for body in bodies:
                key = key_of(body.get("Item") or body["Key"])
                old, new = before.get(key), after.get(key)
                self.wcu += (2 if name == "TransactWriteItems" else 1) * write_units(old, new)
                self.gsi_wcu += gsi_write_units(old, new)
                kind = (new or old or {}).get("item_type", {}).get("S", "?")
                self.largest[kind] = max(self.largest[kind], item_size(new or old))
        else:
            raise NotImplementedError(f"no pricing rule for {name}")

    def measure(self, action):
        self.reset()
        self.active = True
        started = time.perf_counter()
        try:
            result = action()
        finally:
            self.active = False
        return result, time.perf_counter() - started

    def snapshot(self) -> Meter:
        copy = Meter.__new__(Meter)
        copy.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("lock", "local")})
        copy.calls, copy.by_thread = Counter(self.calls), Counter(self.by_thread)
        copy.largest = Counter(self.largest)
        return copy

    @property
    def critical_path(self) -> int:
        workers = [n for k, n in self.by_thread.items() if k.startswith("payroll")]
        return self.by_thread["request"] + max(workers, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    items = parser.parse_args().items
    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_table(raw, TABLE)
        passwords.configure_for_tests()  # hashing cost is not what this measures
        auth = get_auth_service()
        _, secret = auth.create_admin("root@example.com", PASSWORD)
        staff = [
            verified(auth.sign_up(f"staff{n:03d}@example.com", PASSWORD, True, None))
            for n in range(items)
        ]
        world = LedgerWorld.create(TABLE)
        with Client(app, stage_name="test", project_dir=str(ROOT)) as client:

            def call(method: str, path: str, headers: dict, body=None):
                response = client.http.request(
                    method,
                    path,
                    headers={"content-type": "application/json", **headers},
                    body=json.dumps(body).encode() if body is not None else b"",
                )
                return response.status_code, json.loads(response.body or b"{}")

            code = pyotp.TOTP(secret).now()
            login = {"email": "root@example.com", "password": PASSWORD, "totp_code": code}
            _, tokens = call("POST", "/v1/auth/login", {}, login)
            admin = {"authorization": f"Bearer {tokens['access_token']}"}
            _, made = call("POST", "/v1/admin/facilities", admin, {"name": "Bench clinic"})
            facility = made["facility"]["id"]
            keys_path = f"/v1/admin/facilities/{facility}/api-keys"
            _, key = call("POST", keys_path, admin, {"name": "payroll", "scopes": ["payouts"]})
            world.fund(wallet_id(OwnerType.FACILITY, facility, "USD"), 10_000_000)
            api_key = {"authorization": f"Bearer {key['secret']}"}
            body = {
                "currency": "USD",
                "items": [
                    {"to_email": s.email, "amount": "12.34", "memo": f"December, {s.email}"}
                    for s in staff
                ],
            }
            meter = Meter(raw, price=True)
            meter.hook(models.LedgerItem._get_connection().connection.client)

            def pay(idempotency_key: str):
                headers = {**api_key, "idempotency-key": idempotency_key}

                def run():
                    status, answer = call("POST", "/v1/facility/payouts", headers, body)
                    assert status == 201, answer
                    assert answer["payout"]["status"] == "completed", answer
                    return answer["payout"]["id"]

                return run

            rows = []
            deployed = payroll_service.WORKERS
            payroll_service.WORKERS = 1
            first, seconds = meter.measure(pay("bench-1"))
            rows.append(("POST, 1 worker", meter.snapshot(), seconds))
            _, seconds = meter.measure(pay("bench-1"))
            rows.append(("POST replay (same key)", meter.snapshot(), seconds))
            path = f"/v1/facility/payouts/{first}"
            _, seconds = meter.measure(lambda: call("GET", path, api_key))
            rows.append(("GET /v1/facility/payouts/{id}", meter.snapshot(), seconds))
            _, seconds = meter.measure(lambda: call("GET", "/v1/facility/payouts", api_key))
            rows.append(("GET /v1/facility/payouts", meter.snapshot(), seconds))
            payroll_service.WORKERS = deployed
            meter.price = False  # calls overlap: counted per thread, not priced
            _, seconds = meter.measure(pay("bench-n"))
            rows.append((f"POST, {deployed} workers", meter.snapshot(), seconds))
        report(items, rows)


def report(items: int, rows) -> None:
    print(f"A payroll batch of {items} items to {items} verified users (moto, in-process)")
    header = (
        f"{'request':<34}{'calls':>6}{'critical':>9}{'RCU':>7}{'WCU':>7}{'GSI WCU':>9}"
        f"{'moto s':>8}  calls by name"
    )
    print(header)
    print("-" * len(header))
    for label, meter, seconds in rows:
        by_name = ", ".join(f"{n} x{c}" for n, c in sorted(meter.calls.items()))
        priced = meter.price
        print(
            f"{label:<34}{sum(meter.calls.values()):>6}{meter.critical_path:>9}"
            f"{(str(meter.rcu) if priced else '-'):>7}{(str(meter.wcu) if priced else '-'):>7}"
            f"{(str(meter.gsi_wcu) if priced else '-'):>9}{seconds:>8.2f}  {by_name}"
        )
    priced = rows[0][1]
    parallel = rows[-1][1]
    workers = {k: n for k, n in parallel.by_thread.items() if k.startswith("payroll")}
    print(f"calls per worker thread ({len(workers)} workers):", sorted(workers.values()))
    print()
    print("critical: sequential round trips a client waits for (request thread + busiest worker)")
    print("RCU: strongly consistent ceil(size/4KB) per item (1 for a miss); a Query by its bytes.")
    print("WCU: 2 x ceil(max(before, after)/1KB) per transactional item, 1 x for a single write.")
    print("GSI WCU: index writes (GSI2 projects all), not doubled.")
    print(
        "largest item written, per type (bytes):",
        ", ".join(f"{k} {v}" for k, v in sorted(priced.largest.items())),
    )
    print("moto s: wall time on moto, which serializes every call (not a latency figure).")


if __name__ == "__main__":
    main()
