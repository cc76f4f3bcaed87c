"""DynamoDB round trips of one HTTP transfer with and without risk rules (the real app, Chalice's
test client, moto), counted as bench/api_round_trips.py counts them.

    .venv/bin/python bench/risk_round_trips.py

Rows: no rules at all; rules set and cached in the process (the common hot path: the counter is
read in the request's first BatchGetItem and written in the money's TransactWriteItems); rules
set and the cache stale (the rule set joins that same first read); a transfer a rule holds for
review (202); one a rule declines (422). ``items`` is the number of items read or written.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.offline import use_moto  # noqa: E402

use_moto("ledger-bench-risk", STAGE="test", POWERTOOLS_LOG_LEVEL="ERROR")

import boto3  # noqa: E402
import pyotp  # noqa: E402
from chalice.test import Client  # noqa: E402
from moto import mock_aws  # noqa: E402

from app import app  # noqa: E402
from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.api.dependencies import get_auth_service, get_risk  # noqa: E402
from chalicelib.auth import passwords  # noqa: E402
from chalicelib.domain.accounts import OwnerType, wallet_id  # noqa: E402
from infra.local.table import create_table  # noqa: E402
from tests.support import LedgerWorld, verified  # noqa: E402

PASSWORD = "correct horse battery"  # noqa: S105 - a benchmark user


def main() -> None:
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "ledger-bench-risk")
        passwords.configure_for_tests()
        service = get_auth_service()
        calls: list[str] = []
        items = Counter()
        client_ = models.LedgerItem._get_connection().connection.client

        def count(model, params, **_kwargs) -> None:
            calls.append(model.name)
            request = json.loads(params["body"])
            if model.name == "BatchGetItem":
                items[model.name] += sum(len(t["Keys"]) for t in request["RequestItems"].values())
            elif model.name == "TransactWriteItems":
                items[model.name] += len(request["TransactItems"])
            else:
                items[model.name] += 1

        client_.meta.events.register("before-call.dynamodb", count)
        alice = verified(service.sign_up("alice@example.com", PASSWORD, True, None))
        verified(service.sign_up("bob@example.com", PASSWORD, True, None))
        _, secret = service.create_admin("root@example.com", PASSWORD)
        LedgerWorld.create("ledger-bench-risk").fund(
            wallet_id(OwnerType.USER, alice.id, "USD"), 1000_00
        )
        token = service.login("alice@example.com", PASSWORD, None, None).access_token
        admin = service.login(
            "root@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
        ).access_token

        with Client(app, stage_name="test", project_dir=str(ROOT)) as client:

            def request(method: str, path: str, bearer: str, body: dict, key: str | None):
                headers = {"content-type": "application/json", "authorization": f"Bearer {bearer}"}
                if key:
                    headers["idempotency-key"] = key
                return client.http.request(
                    method, path, headers=headers, body=json.dumps(body).encode()
                )

            def transfer(name: str, key: str, amount: str = "1.00") -> None:
                calls.clear()
                items.clear()
                body = {"amount": amount, "currency": "USD", "to_email": "bob@example.com"}
                response = request("POST", "/v1/transfers", token, body, key)
                detail = ", ".join(f"{k} {v}" for k, v in sorted(items.items()))
                print(f"{name:<44}{response.status_code:>7}{len(calls):>7}  {detail}")

            print(f"{'POST /v1/transfers':<44}{'status':>7}{'trips':>7}  items per call")
            transfer("no rules", "k0")
            transfer("no rules (again)", "k1")
            rules = {
                "rules": [
                    {
                        "id": "day",
                        "kind": "daily_amount_over",
                        "action": "review",
                        "currency": "USD",
                        "amount": "500",
                    },
                    {
                        "id": "cap",
                        "kind": "amount_over",
                        "action": "block",
                        "currency": "USD",
                        "amount": "800",
                    },
                    {"id": "fan", "kind": "new_recipients_over", "action": "review", "count": 10},
                ]
            }
            response = request("PUT", "/v1/admin/risk/rules", admin, rules, None)
            assert response.status_code == 200, response.body
            transfer("3 rules, cached", "k2")
            transfer("3 rules, cached (again)", "k3")
            get_risk().cache._read_at = -1e9  # the TTL ran out
            transfer("3 rules, cache stale", "k4")
            transfer("3 rules, held for review (202)", "k5", "600.00")
            transfer("3 rules, declined (422)", "k6", "900.00")


if __name__ == "__main__":
    main()
