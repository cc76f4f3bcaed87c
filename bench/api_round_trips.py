"""DynamoDB round trips per HTTP call, through the real app (Chalice's test client, moto).

Counts the sequential DynamoDB API calls each request makes, by operation name, including the
access-token check and the idempotency record, and estimates capacity units from the request
shapes: every ledger item is under 1 KB (bench/ledger_round_trips.py measures the sizes), so a
strongly consistent read of one item costs 1 RCU (a query: 1 per 4 KB, here 1), a single-item
write 1 WCU, and each item of TransactWriteItems 2 WCU. Index writes are not included.

    .venv/bin/python bench/api_round_trips.py
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.offline import use_moto  # noqa: E402

use_moto("ledger-bench-api", STAGE="test", POWERTOOLS_LOG_LEVEL="ERROR")

import boto3  # noqa: E402
import pyotp  # noqa: E402
from chalice.test import Client  # noqa: E402
from moto import mock_aws  # noqa: E402

from app import app  # noqa: E402
from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.api.dependencies import get_auth_service  # noqa: E402
from chalicelib.auth import passwords  # noqa: E402
from chalicelib.domain.accounts import OwnerType, wallet_id  # noqa: E402
from infra.local.table import create_table  # noqa: E402
from tests.support import LedgerWorld, verified  # noqa: E402

PASSWORD = "correct horse battery"  # noqa: S105 - a benchmark user


def main() -> None:
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "ledger-bench-api")
        passwords.configure_for_tests()  # hashing cost is not what this measures
        calls: Counter = Counter()
        order: list[str] = []
        service = get_auth_service()
        client_ = models.LedgerItem._get_connection().connection.client

        units = Counter()

        def count(model, params, **_kwargs) -> None:
            calls[model.name] += 1
            order.append(model.name)
            request = json.loads(params["body"])
            if model.name in ("GetItem", "Query"):
                units["rcu"] += 1
            elif model.name == "BatchGetItem":
                units["rcu"] += sum(len(t["Keys"]) for t in request["RequestItems"].values())
            elif model.name in ("PutItem", "UpdateItem", "DeleteItem"):
                units["wcu"] += 1
            elif model.name == "TransactWriteItems":
                units["wcu"] += 2 * len(request["TransactItems"])

        client_.meta.events.register("before-call.dynamodb", count)

        with Client(app, stage_name="test", project_dir=str(ROOT)) as client:

            def call(name: str, method: str, path: str, body=None, headers=None) -> dict:
                calls.clear()
                order.clear()
                units.clear()
                response = client.http.request(
                    method,
                    path,
                    headers={"content-type": "application/json", **(headers or {})},
                    body=json.dumps(body).encode() if body is not None else b"",
                )
                by_name = ", ".join(f"{k} x{v}" for k, v in sorted(calls.items()))
                print(
                    f"{name:<30}{response.status_code:>7}{len(order):>6}"
                    f"{units['rcu']:>5}{units['wcu']:>5}  {by_name}"
                )
                return json.loads(response.body or b"{}")

            print(f"{'HTTP call':<30}{'status':>7}{'trips':>6}{'RCU':>5}{'WCU':>5}  calls")
            signup = {"email": "alice@example.com", "password": PASSWORD, "accept_terms": True}
            call("POST /v1/auth/signup", "POST", "/v1/auth/signup", signup)
            verified(service.sign_up("bob@example.com", PASSWORD, True, None))
            _, secret = service.create_admin("root@example.com", PASSWORD)
            credentials = {"email": "alice@example.com", "password": PASSWORD}
            login = call("POST /v1/auth/login", "POST", "/v1/auth/login", credentials)
            # Sign-in alerts (docs/risk.md): a known device, then a new one (audit and mail in
            # the login's own TransactWriteItems): the same round trips.
            call("POST /v1/auth/login (known)", "POST", "/v1/auth/login", credentials)
            new_device = {"user-agent": "bench-new-device/1.0"}
            call("POST /v1/auth/login (new)", "POST", "/v1/auth/login", credentials, new_device)
            code = pyotp.TOTP(secret).now()
            admin = {"email": "root@example.com", "password": PASSWORD, "totp_code": code}
            admin_login = call("POST /v1/auth/login (TOTP)", "POST", "/v1/auth/login", admin)
            token = {"authorization": f"Bearer {login['access_token']}"}
            call("GET /v1/me", "GET", "/v1/me", headers=token)
            alice = service.repository.find_user_by_email("alice@example.com")
            world = LedgerWorld.create("ledger-bench-api")
            world.fund(wallet_id(OwnerType.USER, alice.id, "USD"), 100_00)

            def keyed(key: str) -> dict:
                return {**token, "idempotency-key": key}

            transfer = {"amount": "1.00", "currency": "USD", "to_email": "bob@example.com"}
            call("POST /v1/transfers", "POST", "/v1/transfers", transfer, keyed("k1"))
            call("POST /v1/transfers (replay)", "POST", "/v1/transfers", transfer, keyed("k1"))
            short = {**transfer, "amount": "1000.00"}
            call("POST /v1/transfers (422)", "POST", "/v1/transfers", short, keyed("k2"))
            listed = call("GET /v1/accounts", "GET", "/v1/accounts", headers=token)
            usd = next(a["id"] for a in listed["data"] if a["currency"] == "USD")
            call("GET /v1/accounts/{id}", "GET", f"/v1/accounts/{usd}", headers=token)
            history = f"/v1/accounts/{usd}/entries"
            call("GET /v1/accounts/{id}/entries", "GET", history, headers=token)
            call("GET /v1/transactions", "GET", "/v1/transactions", headers=token)
            ask = {"from_currency": "USD", "to_currency": "BTC", "from_amount": "20.00"}
            quote = call("POST /v1/fx/quotes", "POST", "/v1/fx/quotes", ask, token)["quote"]
            swap = {"quote_id": quote["id"]}
            call("POST /v1/fx/swaps", "POST", "/v1/fx/swaps", swap, keyed("s1"))
            out = {"amount": "0.0001", "currency": "BTC", "destination": "bc1qexample0000000000"}
            call("POST /v1/withdrawals", "POST", "/v1/withdrawals", out, keyed("w1"))
            refresh = {"refresh_token": login["refresh_token"]}
            call("POST /v1/auth/refresh", "POST", "/v1/auth/refresh", refresh)

            # Card money: Stripe is the tests' in-memory fake (no network), events signed here.
            from chalicelib.api import deposits as deposits_api
            from tests.api.test_deposits import event, sign
            from tests.stripe_fake import FakeStripe

            stripe = FakeStripe()
            deposits_api.get_payment_gateway = lambda: stripe
            card = {"amount": "25.00", "currency": "USD"}
            d = call("POST /v1/deposits/card", "POST", "/v1/deposits/card", card, keyed("d1"))
            intent = d["deposit"]["payment_intent_id"]
            stripe.settle(intent)
            payload = event("evt_1", "payment_intent.succeeded", intent)
            signed = {"stripe-signature": sign(payload)}
            response = client.http.post(
                "/v1/webhooks/stripe",
                headers={"content-type": "application/json", **signed},
                body=payload,
            )
            assert response.status_code == 200
            calls.clear()
            admin_key = {
                "authorization": f"Bearer {admin_login['access_token']}",
                "idempotency-key": "r1",
            }
            refund = {"amount": "5.00", "reason": "bench"}
            path = f"/v1/admin/deposits/{d['deposit']['id']}/refunds"
            call("POST refund (Stripe succeeded)", "POST", path, refund, admin_key)


if __name__ == "__main__":
    main()
