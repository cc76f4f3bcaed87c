"""Shared fixtures: an isolated moto DynamoDB with the real table definition, and the engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

# Tests never reach AWS: fake credentials, and moto intercepts every botocore call.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "STAGE": "test",
        "TABLE_NAME": "ledger-test",
        "POWERTOOLS_SERVICE_NAME": "ledger",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("DYNAMODB_ENDPOINT", None)

from chalicelib.adapters.dynamo import models
from chalicelib.config import get_settings
from infra.local.moto_dynamodb import install as patch_moto_dynamodb
from infra.local.table import create_table
from tests.support import LedgerWorld

patch_moto_dynamodb()


def _share_botocore_data() -> None:
    """Every botocore session of the tests reads the service models from one loader.

    PynamoDB opens a botocore session per connection and the tests bind new connections per
    table, so each test re-read and re-parsed DynamoDB's service model from disk: about 110 ms per
    client, half the time of tests/api/test_transfers.py and test_withdrawals.py (24 of 49 s).
    One shared (read-only, cached) loader: about 20 ms per client.
    """
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()
    original = botocore.session.Session.__init__

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self.register_component("data_loader", loader)

    botocore.session.Session.__init__ = __init__  # type: ignore[method-assign]


_share_botocore_data()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def table(aws: None) -> Iterator[str]:
    """A fresh table named after the test, created from infra/table.json, models bound to it."""
    name = f"ledger-test-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, name)
    os.environ["TABLE_NAME"] = name
    get_settings.cache_clear()
    models.bind(get_settings())
    yield name
    os.environ["TABLE_NAME"] = "ledger-test"
    get_settings.cache_clear()


@pytest.fixture
def world(table: str) -> LedgerWorld:
    return LedgerWorld.create(table)
