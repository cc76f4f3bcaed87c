"""DynamoDB round trips per HTTP call, through the real app (Chalice's test client, moto).

Counts the sequential DynamoDB API calls each request makes, by operation name, including the
access-token check and the idempotency record. Capacity units per engine operation are in
bench/ledger_round_trips.py; this script counts calls only.

    .venv/bin/python bench/api_round_trips.py
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STAGE": "test",
        "TABLE_NAME": "ledger-bench-api",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
)

import boto3  # noqa: E402
import pyotp  # noqa: E402
from chalice.test import Client  # noqa: E402
from moto import mock_aws  # noqa: E402

from app import app  # noqa: E402
from chalicelib.adapters.dynamo import models  # noqa: E402
from chalicelib.api.dependencies import get_auth_service, get_ledger_service  # noqa: E402
from chalicelib.auth import passwords  # noqa: E402
from chalicelib.domain.accounts import OwnerType  # noqa: E402
from infra.local.table import create_table  # noqa: E402
from tests.support import LedgerWorld  # noqa: E402

PASSWORD = "correct horse battery"  # noqa: S105 - a benchmark user


def main() -> None:
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "ledger-bench-api")
        passwords.configure_for_tests()  # hashing cost is not what this measures
        calls: Counter = Counter()
        order: list[str] = []
        service = get_auth_service()
        client_ = models.LedgerItem._get_connection().connection.client

        def count(model, **_kwargs) -> None:
            calls[model.name] += 1
            order.append(model.name)

        client_.meta.events.register("before-call.dynamodb", count)

        with Client(app, stage_name="test", project_dir=str(ROOT)) as client:

            def call(name: str, method: str, path: str, body=None, headers=None) -> dict:
                calls.clear()
                order.clear()
                response = client.http.request(
                    method,
                    path,
                    headers={"content-type": "application/json", **(headers or {})},
                    body=json.dumps(body).encode() if body is not None else b"",
                )
                row = {
                    "request": name,
                    "status": response.status_code,
                    "trips": len(order),
                    "calls": dict(calls),
                }
                print(
                    f"{name:<34}{response.status_code:>5}{len(order):>7}  "
                    + ", ".join(f"{k} x{v}" for k, v in sorted(calls.items()))
                )
                return json.loads(response.body or b"{}") | {"_row": row}

            print(f"{'HTTP call':<34}{'status':>5}{'trips':>7}  DynamoDB calls")
            call(
                "POST /v1/auth/signup",
                "POST",
                "/v1/auth/signup",
                {"email": "alice@example.com", "password": PASSWORD, "accept_terms": True},
            )
            service.sign_up("bob@example.com", PASSWORD, True, None)
            _, secret = service.create_admin("root@example.com", PASSWORD)
            login = call(
                "POST /v1/auth/login",
                "POST",
                "/v1/auth/login",
                {"email": "alice@example.com", "password": PASSWORD},
            )
            call(
                "POST /v1/auth/login (TOTP)",
                "POST",
                "/v1/auth/login",
                {
                    "email": "root@example.com",
                    "password": PASSWORD,
                    "totp_code": pyotp.TOTP(secret).now(),
                },
            )
            token = {"authorization": f"Bearer {login['access_token']}"}
            call("GET /v1/me", "GET", "/v1/me", headers=token)
            alice = service.repository.find_user_by_email("alice@example.com")
            usd = next(
                a.id
                for a in get_ledger_service().repository.accounts_of_owner(OwnerType.USER, alice.id)
                if a.currency == "USD"
            )
            LedgerWorld.create("ledger-bench-api").fund(usd, 100_00)
            transfer = {"amount": "1.00", "currency": "USD", "to_email": "bob@example.com"}
            call(
                "POST /v1/transfers",
                "POST",
                "/v1/transfers",
                transfer,
                {**token, "idempotency-key": "k1"},
            )
            call(
                "POST /v1/transfers (replay)",
                "POST",
                "/v1/transfers",
                transfer,
                {**token, "idempotency-key": "k1"},
            )
            call(
                "POST /v1/auth/refresh",
                "POST",
                "/v1/auth/refresh",
                {"refresh_token": login["refresh_token"]},
            )


if __name__ == "__main__":
    main()
