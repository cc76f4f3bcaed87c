"""CPU time of the embedded DynamoDB server per call, by kind of call, over HTTP.

    .venv/bin/python bench/moto_server.py [--calls 400]

Starts the local stack's DynamoDB server (``python -m infra.local.stack --serve dynamodb PORT``,
a free 127.0.0.1 port), creates the ledger table, opens 50 account-like items, then sends
``--calls`` calls of each kind from one boto3 client, one at a time, after 20 warm-up calls:

- ``GetItem`` of one item;
- ``BatchGetItem`` of three items;
- ``TransactWriteItems`` of five items, shaped like a transfer: two conditional updates
  (``ADD``/``SET`` with a balance condition) and three conditional puts;
- ``Query`` of 20 items of one partition, newest first.

It prints, per kind, the server process's CPU time per call (user + system, from
``/proc/PID/stat``) and the wall time per call seen by the client. No timing is judged.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from infra.local.table import create_table  # noqa: E402

TABLE = "ledger-bench"
ACCOUNTS = 50
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def account(i: int) -> dict[str, Any]:
    return {"PK": {"S": f"ACC#{i % ACCOUNTS}"}, "SK": {"S": "META"}}


def calls(client: Any) -> dict[str, Callable[[int], Any]]:
    def update(i: int, amount: str, condition: str) -> dict[str, Any]:
        values = {":m": {"N": amount}, ":one": {"N": "1"}, ":now": {"S": str(i)}}
        if ":amt" in condition:
            values[":amt"] = {"N": amount.lstrip("-")}
        return {
            "Update": {
                "TableName": TABLE,
                "Key": account(i),
                "UpdateExpression": "ADD posted :m, version :one SET updated_at = :now",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    def put(i: int) -> dict[str, Any]:
        item = {
            "PK": {"S": f"ACC#{i % ACCOUNTS}"},
            "SK": {"S": f"E#{uuid.uuid4()}"},
            "amount": {"N": "1"},
            "GSI1PK": {"S": f"T#{i}"},
            "GSI1SK": {"S": "x"},
        }
        return {
            "Put": {
                "TableName": TABLE,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    return {
        "GetItem": lambda i: client.get_item(TableName=TABLE, Key=account(i)),
        "BatchGetItem x3": lambda i: client.batch_get_item(
            RequestItems={TABLE: {"Keys": [account(i + k) for k in range(3)]}}
        ),
        "TransactWriteItems x5": lambda i: client.transact_write_items(
            TransactItems=[
                update(i, f"-{1 + i % 7}", "attribute_exists(PK) AND posted >= :amt"),
                update(i + 1, f"{1 + i % 7}", "attribute_exists(PK)"),
                put(i),
                put(i + 1),
                put(i + 2),
            ]
        ),
        "Query 20": lambda i: client.query(
            TableName=TABLE,
            KeyConditionExpression="PK = :p AND begins_with(SK, :e)",
            ExpressionAttributeValues={":p": account(i)["PK"], ":e": {"S": "E#"}},
            Limit=20,
            ScanIndexForward=False,
        ),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls of each kind (400)")
    args = parser.parse_args(argv)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "infra.local.stack", "--serve", "dynamodb", str(port)], cwd=ROOT
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - the embedded DynamoDB ignores it
            config=Config(retries={"max_attempts": 1}),
        )
        create_table(client, TABLE)
        for i in range(ACCOUNTS):
            item = {**account(i), "posted": {"N": "1000000"}, "version": {"N": "0"}}
            client.put_item(TableName=TABLE, Item=item)
        print(f"{'call':24s} {'server CPU ms/call':>19s} {'wall ms/call':>13s}")
        for name, call in calls(client).items():
            for i in range(20):
                call(i)
            cpu_before, wall_before = cpu_ms(server.pid), time.perf_counter()
            for i in range(args.calls):
                call(i)
            wall = (time.perf_counter() - wall_before) * 1000 / args.calls
            cpu = (cpu_ms(server.pid) - cpu_before) / args.calls
            print(f"{name:24s} {cpu:19.2f} {wall:13.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
