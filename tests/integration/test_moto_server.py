"""The embedded DynamoDB's HTTP server (``infra/local/moto_server.py``) and the expressions moto
parses once (``infra/local/moto_dynamodb.py``, part 7): answers, errors and the wire.

The server runs in a thread of the test process on a free 127.0.0.1 port, with the project's
moto replacements installed, as ``python -m infra.local.stack --serve dynamodb`` runs it.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local import moto_dynamodb
from infra.local.moto_server import create_server
from infra.local.table import create_table


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    moto_dynamodb.install()
    server = create_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def client(port: int) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def table(client: Any) -> str:
    name = f"server-{uuid.uuid4().hex[:8]}"
    create_table(client, name)
    return name


def key(pk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": "META"}}


def raw(port: int, request: bytes) -> bytes:
    """Send bytes, return everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        connection.settimeout(1)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


def test_items_round_trip_and_conditions_fail_with_dynamodbs_errors(
    client: Any, table: str
) -> None:
    client.put_item(TableName=table, Item={**key("A"), "n": {"N": "5"}})
    item = client.get_item(TableName=table, Key=key("A"))["Item"]
    assert item == {**key("A"), "n": {"N": "5"}}
    with pytest.raises(ClientError) as refused:
        client.put_item(
            TableName=table, Item=key("A"), ConditionExpression="attribute_not_exists(PK)"
        )
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as missing:
        client.get_item(TableName="no-such-table", Key=key("A"))
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_one_condition_with_the_same_values_is_evaluated_against_each_item(
    client: Any, table: str
) -> None:
    """The parse is shared; the outcome is not: one update passes, the same one on a poorer
    item fails."""
    client.put_item(TableName=table, Item={**key("rich"), "n": {"N": "10"}})
    client.put_item(TableName=table, Item={**key("poor"), "n": {"N": "1"}})
    update = {
        "TableName": table,
        "UpdateExpression": "ADD n :minus",
        "ConditionExpression": "n >= :amount",
        "ExpressionAttributeValues": {":minus": {"N": "-3"}, ":amount": {"N": "3"}},
    }
    client.update_item(Key=key("rich"), **update)
    with pytest.raises(ClientError) as refused:
        client.update_item(Key=key("poor"), **update)
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    client.update_item(Key=key("rich"), **update)
    assert client.get_item(TableName=table, Key=key("rich"))["Item"]["n"] == {"N": "4"}
    assert client.get_item(TableName=table, Key=key("poor"))["Item"]["n"] == {"N": "1"}


@pytest.mark.parametrize(
    ("expressions", "code"),
    [
        ({"UpdateExpression": "SET n = = :v"}, "ValidationException"),
        # moto lets the parser's own error through for these (a 500, as in-process it raises
        # ValueError and KeyError); DynamoDB would say ValidationException.
        ({"UpdateExpression": "SET n = :v", "ConditionExpression": "n >>= :v"}, None),
        ({"UpdateExpression": "SET n = :v", "ConditionExpression": "n = :missing"}, None),
    ],
)
def test_a_malformed_expression_is_refused_every_time(
    client: Any, table: str, expressions: dict[str, str], code: str | None
) -> None:
    codes = []
    for _ in range(2):  # a parse that failed is not remembered as a success
        with pytest.raises(ClientError) as refused:
            client.update_item(
                TableName=table,
                Key=key("malformed"),
                ExpressionAttributeValues={":v": {"N": "1"}},
                **expressions,
            )
        codes.append(refused.value.response["Error"]["Code"])
    assert codes[0] == codes[1] == (code or "InternalServerError")
    assert "Item" not in client.get_item(TableName=table, Key=key("malformed"))


def test_an_unused_value_is_refused_although_the_condition_parsed_before(
    client: Any, table: str
) -> None:
    """moto checks the names and values a condition uses from the parser's lists: those come
    from the shared parse and must be the same for a second call."""
    client.put_item(TableName=table, Item=key("unused"))
    update = {"TableName": table, "Key": key("unused"), "UpdateExpression": "SET m = :v"}
    condition = {"ConditionExpression": "attribute_exists(PK)"}
    client.update_item(**update, **condition, ExpressionAttributeValues={":v": {"N": "1"}})
    with pytest.raises(ClientError) as refused:
        client.update_item(
            **update,
            **condition,
            ExpressionAttributeValues={":v": {"N": "1"}, ":unused": {"N": "2"}},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    client.update_item(**update, **condition, ExpressionAttributeValues={":v": {"N": "2"}})


def test_a_connection_serves_many_requests_and_a_chunked_body(
    port: int, client: Any, table: str
) -> None:
    client.put_item(TableName=table, Item=key("raw"))
    body = json.dumps({"TableName": table, "Key": key("raw")}).encode()
    headers = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "X-Amz-Target: DynamoDB_20120810.GetItem\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
    )
    plain = f"{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunked = (
        f"{headers}Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    answer = raw(port, plain + chunked + plain)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.count(b'"PK": {"S": "raw"}') == 3
    assert b"x-amz-crc32" in answer.lower()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    ],
)
def test_a_malformed_request_gets_an_http_error(
    port: int, request_bytes: bytes, status: bytes
) -> None:
    answer = raw(port, request_bytes)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == status
