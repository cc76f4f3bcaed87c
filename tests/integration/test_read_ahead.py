"""``adapters/dynamo/read_ahead``: items named ahead come back in one batch read, each serves one
read only, and nothing is read ahead outside a request."""

from __future__ import annotations

from collections import Counter

import boto3
import pytest

from chalicelib.adapters.dynamo import read_ahead
from chalicelib.adapters.dynamo.models import LedgerItem


@pytest.fixture
def calls(table: str) -> Counter:
    counted: Counter = Counter()
    client = LedgerItem._get_connection().connection.client
    client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: counted.update([model.name])
    )
    return counted


def put(table: str, pk: str, value: str) -> None:
    item = {"PK": {"S": pk}, "SK": {"S": "X"}, "item_type": {"S": "t"}, "v": {"S": value}}
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=table, Item=item)


def value(raw: dict | None) -> str | None:
    return raw["v"]["S"] if raw is not None else None


def test_wanted_items_come_in_one_batch_and_each_serves_one_read(table, calls):
    put(table, "A", "a1")
    put(table, "B", "b1")
    with read_ahead.request_scope():
        read_ahead.want("A", "X")
        read_ahead.want("B", "X")
        read_ahead.want("MISSING", "X")
        assert value(read_ahead.get_raw("A", "X")) == "a1"
        assert calls == Counter({"BatchGetItem": 1})
        put(table, "B", "b2")
        assert value(read_ahead.get_raw("B", "X")) == "b1"  # read with A, before the change
        assert read_ahead.get_raw("MISSING", "X") is None
        assert calls["BatchGetItem"] == 1
        assert value(read_ahead.get_raw("B", "X")) == "b2"  # a second read goes to the table
        assert calls["GetItem"] == 1


def test_a_read_fetches_what_is_wanted_with_it_and_nothing_outlives_the_request(table, calls):
    put(table, "A", "a1")
    put(table, "B", "b1")
    with read_ahead.request_scope():
        read_ahead.want("B", "X")
        found = read_ahead.get_many([("A", "X"), ("C", "X")])
        assert {k: value(v) for k, v in found.items()} == {("A", "X"): "a1", ("C", "X"): None}
        assert calls == Counter({"BatchGetItem": 1})
    put(table, "B", "b2")
    with read_ahead.request_scope():
        assert value(read_ahead.get_raw("B", "X")) == "b2"


def test_outside_a_request_reads_are_direct_and_wants_are_ignored(table, calls):
    put(table, "A", "a1")
    read_ahead.want("A", "X")
    put(table, "A", "a2")
    assert value(read_ahead.get_raw("A", "X")) == "a2"
    assert calls == Counter({"GetItem": 1})
