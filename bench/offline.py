"""The environment every in-process benchmark sets before it imports the app: moto's fake
credentials (they never reach AWS), one region, a bench stage and table, and no endpoint
override, so every DynamoDB call lands in moto; and moto as the tests and the local stack run it
(``infra.local.moto_dynamodb``: serialized, O(items) transactions, O(partition) queries)."""

from __future__ import annotations

import os

FAKE = "testing"


def use_moto(table: str = "ledger-bench", **extra: str) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID=FAKE,
        AWS_SECRET_ACCESS_KEY=FAKE,
        AWS_SESSION_TOKEN=FAKE,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        STAGE="bench",
        TABLE_NAME=table,
    )
    os.environ.update(extra)
    os.environ.pop("DYNAMODB_ENDPOINT", None)
    from infra.local.moto_dynamodb import install

    install()
