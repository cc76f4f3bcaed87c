"""infra/local/moto_dynamodb.py against moto's own DynamoDB.

The differential test runs one random sequence of writes, transactions and paged queries twice:
once on moto's own transactions, queries, token handling and serialization
(``moto_dynamodb.stock()``), once on the replacements, and requires every answer, and the tables
at the end, to be the same. The other tests cover what stock moto does not do: client request
tokens, no growth per call, point-in-time recovery that keeps up with the clock, the version
check, and the rollback of a global secondary index's partitions. How long calls take is for the
benchmarks (bench/), not for these tests.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import StreamRecord, Table

from infra.local import moto_dynamodb
from infra.local.table import create_table

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
TABLE = "__TABLE__"  # stands for the table's name in generated requests and in answers
MISSING_TABLE = "moto-dynamodb-no-such-table"

PARTITIONS = ("P#0", "P#1", "P#2", "P#3")
SORT_KEYS = ("A#0", "A#1", "A#2", "B#0", "B#1", "C#0")
GSI_VALUES = {
    "GSI1PK": ("G1#a", "G1#b", "G1#c"),
    "GSI1SK": ("2024-01", "2024-02", "2024-03", "2025-01"),
    "GSI2PK": ("G2#x", "G2#y"),
    "GSI2SK": ("k#0", "k#1", "k#2"),
}
INDEX_KEYS = {None: ("PK", "SK"), "GSI1": ("GSI1PK", "GSI1SK"), "GSI2": ("GSI2PK", "GSI2SK")}
HASH_VALUES = {
    None: (*PARTITIONS, "P#9"),
    "GSI1": (*GSI_VALUES["GSI1PK"], "G1#none"),
    "GSI2": (*GSI_VALUES["GSI2PK"], "G2#none"),
}
RANGE_VALUES = {
    None: (*SORT_KEYS, "A", "B#", "C#1", "Z"),
    "GSI1": (*GSI_VALUES["GSI1SK"], "2023", "2024-02-15", "2026"),
    "GSI2": (*GSI_VALUES["GSI2SK"], "k#", "k#1x", "l"),
}
PREFIXES = {
    None: ("A", "A#", "A#1", "B#", "C", "Z"),
    "GSI1": ("2024", "2024-0", "2025-01", "2026"),
    "GSI2": ("k", "k#1", "j"),
}
SEEDS = range(8)
OPERATIONS = 70  # after a first BatchWriteItem that fills about half the key space


def dynamodb() -> Any:
    return boto3.client("dynamodb", region_name=REGION)


def moto_table(name: str) -> Table:
    return dynamodb_backends[ACCOUNT][REGION].tables[name]


def new_table(client: Any, label: str) -> str:
    name = f"moto-{label}-{uuid.uuid4().hex[:8]}"
    create_table(client, name)
    return name


def s(value: str) -> dict[str, str]:
    return {"S": value}


def num(value: int) -> dict[str, str]:
    return {"N": str(value)}


def key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"PK": s(pk), "SK": s(sk)}


# -- the random workload -----------------------------------------------------------------------
class Expression:
    """The ExpressionAttributeNames and -Values of one request: only those it uses."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, Any]] = {}

    def name(self, attr: str) -> str:
        """The attribute, sometimes through a #name placeholder."""
        if self.rng.random() < 0.3:
            placeholder = f"#n{len(self.names)}"
            self.names[placeholder] = attr
            return placeholder
        return attr

    def value(self, value: dict[str, Any]) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.names:
            request["ExpressionAttributeNames"] = self.names
        if self.values:
            request["ExpressionAttributeValues"] = self.values
        return request


class Workload:
    """Random requests over a small key space, where collisions and duplicates are frequent."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.all_keys = [(pk, sk) for pk in PARTITIONS for sk in SORT_KEYS]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def key(self) -> dict[str, dict[str, str]]:
        return key(self.rng.choice(PARTITIONS), self.rng.choice(SORT_KEYS))

    def item(self, item_key: dict[str, dict[str, str]]) -> dict[str, Any]:
        rng = self.rng
        item: dict[str, Any] = {**item_key, "n": num(rng.randint(0, 6))}
        if self.chance(0.7):
            item["a"] = s(rng.choice("xyz"))
        for hash_attr, range_attr in (("GSI1PK", "GSI1SK"), ("GSI2PK", "GSI2SK")):
            if self.chance(0.55):
                item[hash_attr] = s(rng.choice(GSI_VALUES[hash_attr]))
                if self.chance(0.85):
                    item[range_attr] = s(rng.choice(GSI_VALUES[range_attr]))
            elif self.chance(0.1):
                item[range_attr] = s(rng.choice(GSI_VALUES[range_attr]))
        if self.chance(0.2):
            item["m"] = {"M": {"k": num(rng.randint(0, 3)), "t": {"L": [s("u"), num(1)]}}}
        return item

    def condition(self, ex: Expression, *, none: float = 0.45) -> str | None:
        """A condition (None with probability ``none``), that often fails."""
        rng = self.rng
        if self.chance(none):
            return None
        kind = rng.randrange(8)
        if kind == 0:
            return f"attribute_exists({ex.name('PK')})"
        if kind == 1:
            return f"attribute_not_exists({ex.name('PK')})"
        if kind == 2:
            return f"{ex.name('n')} >= {ex.value(num(rng.randint(0, 9)))}"
        if kind == 3:
            return f"{ex.name('n')} < {ex.value(num(rng.randint(0, 9)))}"
        if kind == 4:
            return f"attribute_exists({ex.name('GSI1PK')})"
        if kind == 5:
            return f"{ex.name('a')} = {ex.value(s(rng.choice('xyz')))}"
        if kind == 6:
            return (
                f"attribute_not_exists({ex.name('PK')}) OR "
                f"{ex.name('n')} < {ex.value(num(rng.randint(0, 9)))}"
            )
        return f"{ex.name('GSI2PK')} = {ex.value(s(rng.choice(GSI_VALUES['GSI2PK'])))}"

    def update_expression(self, ex: Expression) -> str:
        rng = self.rng
        sets: list[str] = []
        adds: list[str] = []
        removes: list[str] = []
        if self.chance(0.6):
            adds.append(f"{ex.name('n')} {ex.value(num(rng.randint(-3, 5)))}")
        elif self.chance(0.2):
            sets.append(f"{ex.name('n')} = {ex.name('n')} + {ex.value(num(rng.randint(1, 3)))}")
        if self.chance(0.35):
            sets.append(f"{ex.name('a')} = {ex.value(s(rng.choice('xyz')))}")
        for attr, values in GSI_VALUES.items():
            r = rng.random()
            if r < 0.2:
                sets.append(f"{ex.name(attr)} = {ex.value(s(rng.choice(values)))}")
            elif r < 0.3:
                removes.append(ex.name(attr))
        if self.chance(0.05):
            empty = ex.value({"M": {"k": num(0)}})
            sets.append(f"{ex.name('m')} = if_not_exists({ex.name('m')}, {empty})")
        if self.chance(0.03):
            adds.append(f"{ex.name('a')} {ex.value(num(1))}")  # ADD to a string: refused
        if not (sets or adds or removes):
            adds.append(f"{ex.name('n')} {ex.value(num(1))}")
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(sets))
        if adds:
            clauses.append("ADD " + ", ".join(adds))
        if removes:
            clauses.append("REMOVE " + ", ".join(removes))
        rng.shuffle(clauses)
        return " ".join(clauses)

    def put(self) -> tuple[str, dict[str, Any]]:
        ex = Expression(self.rng)
        request: dict[str, Any] = {"TableName": TABLE, "Item": self.item(self.key())}
        condition = (
            f"attribute_not_exists({ex.name('PK')})" if self.chance(0.4) else self.condition(ex)
        )
        if condition:
            request["ConditionExpression"] = condition
            if self.chance(0.4):
                request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if self.chance(0.4):
            request["ReturnValues"] = "ALL_OLD"
        return "put_item", ex.apply(request)

    def update(self) -> tuple[str, dict[str, Any]]:
        ex = Expression(self.rng)
        request: dict[str, Any] = {
            "TableName": TABLE,
            "Key": self.key(),
            "UpdateExpression": self.update_expression(ex),
        }
        condition = self.condition(ex)
        if condition:
            request["ConditionExpression"] = condition
            if self.chance(0.4):
                request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if self.chance(0.6):
            request["ReturnValues"] = self.rng.choice(
                ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW")
            )
        return "update_item", ex.apply(request)

    def delete(self) -> tuple[str, dict[str, Any]]:
        ex = Expression(self.rng)
        request: dict[str, Any] = {"TableName": TABLE, "Key": self.key()}
        condition = self.condition(ex)
        if condition:
            request["ConditionExpression"] = condition
        if self.chance(0.5):
            request["ReturnValues"] = "ALL_OLD"
        return "delete_item", ex.apply(request)

    def transaction(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        size = rng.randint(1, 5)
        keys = [key(pk, sk) for pk, sk in rng.sample(self.all_keys, size)]
        items = []
        for number, item_key in enumerate(keys):
            if number and self.chance(0.06):
                # The same item twice, on purpose: a ValidationException.
                item_key = rng.choice(keys[:number])
            kind = rng.choice(("Put", "Update", "Update", "Delete", "ConditionCheck"))
            ex = Expression(rng)
            op: dict[str, Any] = {"TableName": TABLE}
            if kind == "Put":
                op["Item"] = self.item(item_key)
            else:
                op["Key"] = item_key
            if kind == "Update":
                op["UpdateExpression"] = self.update_expression(ex)
            condition = self.condition(ex, none=0.0 if kind == "ConditionCheck" else 0.75)
            if condition:
                op["ConditionExpression"] = condition
                if self.chance(0.5):
                    op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            if kind in ("Delete", "ConditionCheck") and self.chance(0.02):
                op["TableName"] = MISSING_TABLE
            items.append({kind: ex.apply(op)})
        return "transact_write_items", {"TransactItems": items}

    def query(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        index = rng.choice((None, None, "GSI1", "GSI2"))
        hash_attr, range_attr = INDEX_KEYS[index]
        ex = Expression(rng)
        condition = f"{ex.name(hash_attr)} = {ex.value(s(rng.choice(HASH_VALUES[index])))}"
        r = rng.random()
        if r < 0.2:
            prefix = ex.value(s(rng.choice(PREFIXES[index])))
            condition += f" AND begins_with({ex.name(range_attr)}, {prefix})"
        elif r < 0.4:
            low, high = sorted(rng.sample(RANGE_VALUES[index], 2))
            condition += (
                f" AND {ex.name(range_attr)} BETWEEN {ex.value(s(low))} AND {ex.value(s(high))}"
            )
        elif r < 0.5:
            comparison = rng.choice(("<", "<=", ">", ">=", "="))
            bound = ex.value(s(rng.choice(RANGE_VALUES[index])))
            condition += f" AND {ex.name(range_attr)} {comparison} {bound}"
        request: dict[str, Any] = {"TableName": TABLE, "KeyConditionExpression": condition}
        if index:
            request["IndexName"] = index
        if self.chance(0.65):
            request["Limit"] = rng.randint(1, 3)
        if self.chance(0.8):
            request["ScanIndexForward"] = self.chance(0.5)
        if self.chance(0.3):
            request["FilterExpression"] = rng.choice(
                (
                    lambda: f"{ex.name('n')} > {ex.value(num(rng.randint(0, 6)))}",
                    lambda: f"attribute_exists({ex.name('a')})",
                    lambda: f"attribute_not_exists({ex.name('GSI2PK')})",
                    lambda: f"{ex.name('a')} IN ({ex.value(s('x'))}, {ex.value(s('z'))})",
                )
            )()
        if self.chance(0.3):
            request["ProjectionExpression"] = rng.choice(
                (
                    lambda: f"PK, SK, {ex.name('n')}",
                    lambda: f"{ex.name('a')}, {ex.name('GSI1SK')}, SK",
                    lambda: f"{ex.name('m')}.k, GSI2PK",
                )
            )()
        elif self.chance(0.05):
            request["Select"] = "COUNT"
        return "query", ex.apply(request)

    def scan(self) -> tuple[str, dict[str, Any]]:
        request: dict[str, Any] = {"TableName": TABLE, "Limit": self.rng.randint(2, 7)}
        index = self.rng.choice((None, "GSI1", "GSI2"))
        if index:
            request["IndexName"] = index
        return "scan", request

    def get(self) -> tuple[str, dict[str, Any]]:
        return "get_item", {"TableName": TABLE, "Key": self.key()}

    def batch_write(self) -> tuple[str, dict[str, Any]]:
        requests = []
        for _ in range(self.rng.randint(1, 4)):
            item_key = self.key()
            if self.chance(0.8):
                requests.append({"PutRequest": {"Item": self.item(item_key)}})
            else:
                requests.append({"DeleteRequest": {"Key": item_key}})
        return "batch_write_item", {"RequestItems": {TABLE: requests}}

    def fill(self) -> tuple[str, dict[str, Any]]:
        chosen = self.rng.sample(self.all_keys, len(self.all_keys) // 2)
        puts = [{"PutRequest": {"Item": self.item(key(pk, sk))}} for pk, sk in chosen]
        return "batch_write_item", {"RequestItems": {TABLE: puts}}

    def operations(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        makers: list[tuple[Callable[[], tuple[str, dict[str, Any]]], int]] = [
            (self.put, 15),
            (self.update, 17),
            (self.delete, 4),
            (self.transaction, 24),
            (self.query, 30),
            (self.scan, 2),
            (self.get, 2),
            (self.batch_write, 6),
        ]
        functions, weights = zip(*makers, strict=True)
        return [self.fill()] + [self.rng.choices(functions, weights)[0]() for _ in range(count)]


# -- running a workload ------------------------------------------------------------------------
def bind(request: dict[str, Any], table: str) -> dict[str, Any]:
    return json.loads(json.dumps(request).replace(TABLE, table))


def answer(call: Callable[..., dict[str, Any]], request: dict[str, Any]) -> dict[str, Any]:
    """The response without its metadata, or the error with everything moto said about it."""
    try:
        response = call(**request)
    except ClientError as exc:
        error = dict(exc.response)
        error.pop("ResponseMetadata", None)
        return {"error": error}
    except Exception as exc:  # a crash inside moto reaches the caller as itself
        return {"crash": f"{type(exc).__name__}: {exc}"}
    response.pop("ResponseMetadata", None)
    response.pop("ConsumedCapacity", None)
    return response


def pages(call: Callable[..., dict[str, Any]], request: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a query or scan, following LastEvaluatedKey to the end."""
    found = []
    while True:
        page = answer(call, request)
        found.append(page)
        if "LastEvaluatedKey" not in page:
            return found
        assert len(found) < 100, "paging does not end"
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def normal(value: Any, table: str) -> str:
    return json.dumps(value, sort_keys=True, default=str).replace(table, TABLE)


def run(client: Any, table: str, operations: list[tuple[str, dict[str, Any]]]) -> list[str]:
    answers = []
    for method, template in operations:
        request = bind(template, table)
        call = getattr(client, method)
        if method in ("query", "scan"):
            answers.append(normal(pages(call, request), table))
            continue
        if method == "transact_write_items":
            # A token per call, never reused: the token cache is tested on its own below.
            request["ClientRequestToken"] = str(uuid.uuid4())
        answers.append(normal(answer(call, request), table))
    return answers


def final_state(client: Any, table: str) -> dict[str, Any]:
    """The table, and each index, in full and sorted; the table's item count."""
    state: dict[str, Any] = {}
    for index in (None, "GSI1", "GSI2"):
        request: dict[str, Any] = {"TableName": table, **({"IndexName": index} if index else {})}
        found = pages(client.scan, request)
        items = [item for page in found for item in page.get("Items", [page])]
        state[str(index)] = sorted(normal(item, table) for item in items)
    state["ItemCount"] = client.describe_table(TableName=table)["Table"]["ItemCount"]
    return state


def assert_index_matches_table(table: Table) -> None:
    """The GSI partitions kept up to date call by call are those the table's items give now."""
    kept = table.__dict__.get(moto_dynamodb._STATE)
    if kept is None:
        return
    rebuilt = moto_dynamodb.GsiPartitions(table)
    assert kept.partitions == rebuilt.partitions
    assert kept.memberships == rebuilt.memberships


def first_difference(
    operations: list[tuple[str, dict[str, Any]]], stock: list[str], patched: list[str]
) -> str | None:
    for number, (operation, expected, got) in enumerate(
        zip(operations, stock, patched, strict=True)
    ):
        if expected != got:
            return (
                f"operation {number}: {operation[0]} {json.dumps(operation[1])}\n"
                f"stock moto: {expected}\npatched:    {got}"
            )
    return None


@pytest.mark.parametrize("seed", SEEDS)
def test_patched_moto_answers_like_stock_moto(aws: None, seed: int) -> None:
    client = dynamodb()
    operations = Workload(seed).operations(OPERATIONS)
    stock_table, patched_table = new_table(client, "stock"), new_table(client, "patched")

    with moto_dynamodb.stock():
        assert Table.query is not moto_dynamodb.query  # really moto's own
        stock_answers = run(client, stock_table, operations)
        stock_state = final_state(client, stock_table)
    assert Table.query is moto_dynamodb.query
    patched_answers = run(client, patched_table, operations)
    patched_state = final_state(client, patched_table)

    difference = first_difference(operations, stock_answers, patched_answers)
    assert difference is None, difference
    assert patched_state == stock_state
    assert_index_matches_table(moto_table(patched_table))

    # The sequence did reach the cases that matter, not only refusals.
    def count(method: str, needle: str) -> int:
        return sum(
            needle in got
            for (name, _), got in zip(operations, patched_answers, strict=True)
            if name == method
        )

    transactions = sum(name == "transact_write_items" for name, _ in operations)
    assert 0 < count("transact_write_items", "TransactionCanceledException") < transactions
    assert count("transact_write_items", '"error"') < transactions
    assert count("query", "LastEvaluatedKey") > 0
    assert count("query", '"Count": 0') < count("query", '"Count"')
    assert len(patched_state["GSI1"]) > 0
    assert len(patched_state["GSI2"]) > 0


# -- client request tokens ---------------------------------------------------------------------
def n_of(client: Any, table: str, pk: str, sk: str, attr: str = "n") -> int | None:
    item = client.get_item(TableName=table, Key=key(pk, sk)).get("Item")
    if item is None or attr not in item:
        return None
    return int(item[attr]["N"])


def add_one(table: str, pk: str, sk: str, attr: str = "n") -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": key(pk, sk),
            "UpdateExpression": "ADD #a :one",
            "ExpressionAttributeNames": {"#a": attr},
            "ExpressionAttributeValues": {":one": num(1)},
        }
    }


def put_if_absent(table: str, pk: str, sk: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": {**key(pk, sk), "n": num(0)},
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """moto_dynamodb's clock, moved by hand: now[0] is the time. After the test the real clock is
    back, and the tokens remembered at hand-moved times are forgotten."""
    now = [time.monotonic()]
    monkeypatch.setattr(moto_dynamodb, "clock", lambda: now[0])
    before = set(moto_dynamodb.TOKENS.seen)
    yield now
    for token in set(moto_dynamodb.TOKENS.seen) - before:
        del moto_dynamodb.TOKENS.seen[token]


def test_a_retried_transaction_with_its_token_writes_nothing(aws: None, clock: list[float]):
    client = dynamodb()
    table = new_table(client, "tokens")
    token = str(uuid.uuid4())
    items = [add_one(table, "P#0", "A#0"), put_if_absent(table, "P#1", "A#0")]

    first = answer(
        client.transact_write_items, {"TransactItems": items, "ClientRequestToken": token}
    )
    again = answer(
        client.transact_write_items, {"TransactItems": items, "ClientRequestToken": token}
    )
    clock[0] += 599
    client.transact_write_items(TransactItems=items, ClientRequestToken=token)

    assert again == first  # the answer of a success, as the first time

    # Applied once; the put's attribute_not_exists was not evaluated again.
    assert n_of(client, table, "P#0", "A#0") == 1
    assert n_of(client, table, "P#1", "A#0") == 0


def test_the_same_token_with_other_items_is_a_mismatch(aws: None, clock: list[float]):
    client = dynamodb()
    table = new_table(client, "tokens")
    token = str(uuid.uuid4())
    client.transact_write_items(
        TransactItems=[add_one(table, "P#0", "A#0")], ClientRequestToken=token
    )

    for other in (
        [add_one(table, "P#0", "A#1")],
        [add_one(table, "P#0", "A#0"), add_one(table, "P#0", "A#1")],
    ):
        with pytest.raises(ClientError) as exc:
            client.transact_write_items(TransactItems=other, ClientRequestToken=token)
        assert error_code(exc) == "IdempotentParameterMismatchException"

    assert n_of(client, table, "P#0", "A#0") == 1
    assert n_of(client, table, "P#0", "A#1") is None


def test_a_token_is_forgotten_after_ten_minutes(aws: None, clock: list[float]):
    client = dynamodb()
    table = new_table(client, "tokens")
    token = str(uuid.uuid4())
    items = [add_one(table, "P#0", "A#0")]

    client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    clock[0] += 599.5
    client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    assert n_of(client, table, "P#0", "A#0") == 1

    clock[0] += 1  # 600.5 s after the first request: a new request
    client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    assert n_of(client, table, "P#0", "A#0") == 2
    client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    assert n_of(client, table, "P#0", "A#0") == 2  # and remembered again from then on

    # After expiry the token may also carry other items (it is a new request).
    clock[0] += 601
    client.transact_write_items(
        TransactItems=[add_one(table, "P#0", "A#1")], ClientRequestToken=token
    )
    assert n_of(client, table, "P#0", "A#1") == 1


def test_a_cancelled_transaction_token_is_not_remembered(aws: None, clock: list[float]):
    client = dynamodb()
    table = new_table(client, "tokens")
    client.put_item(TableName=table, Item={**key("P#0", "A#0"), "n": num(0)})
    token = str(uuid.uuid4())
    items = [
        {
            "ConditionCheck": {
                "TableName": table,
                "Key": key("P#0", "A#0"),
                "ConditionExpression": "n >= :five",
                "ExpressionAttributeValues": {":five": num(5)},
            }
        },
        add_one(table, "P#1", "A#0", "m"),
    ]

    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            client.transact_write_items(TransactItems=items, ClientRequestToken=token)
        assert error_code(exc) == "TransactionCanceledException"
    # Refused (not cancelled) requests are not remembered either.
    duplicate = [add_one(table, "P#2", "A#0"), add_one(table, "P#2", "A#0")]
    with pytest.raises(ClientError) as exc:
        client.transact_write_items(TransactItems=duplicate, ClientRequestToken=token)
    assert error_code(exc) == "ValidationException"
    assert n_of(client, table, "P#1", "A#0", "m") is None

    client.put_item(TableName=table, Item={**key("P#0", "A#0"), "n": num(10)})
    client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    assert n_of(client, table, "P#1", "A#0", "m") == 1
    client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    assert n_of(client, table, "P#1", "A#0", "m") == 1


def test_stock_moto_ignores_tokens(aws: None, clock: list[float]):
    client = dynamodb()
    table = new_table(client, "tokens")
    token = str(uuid.uuid4())
    items = [add_one(table, "P#0", "A#0")]
    with moto_dynamodb.stock():
        client.transact_write_items(TransactItems=items, ClientRequestToken=token)
        client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    assert n_of(client, table, "P#0", "A#0") == 2


# -- nothing grows per call --------------------------------------------------------------------
def test_items_and_index_memberships_do_not_grow_per_call(aws: None):
    client = dynamodb()
    table = new_table(client, "growth")
    rng = random.Random(42)
    outcomes: list[str] = []

    def transaction(i: int) -> None:
        pk, sk = PARTITIONS[i % 4], SORT_KEYS[i % 6]
        values = {
            ":g1": s(rng.choice(GSI_VALUES["GSI1PK"])),
            ":g2": s(rng.choice(("G2#x", "G2#y"))),
        }
        moves = "SET GSI1PK = :g1, GSI2PK = :g2"
        if i % 5 == 0:  # out of GSI2
            moves, values = "SET GSI1PK = :g1 REMOVE GSI2PK", {":g1": values[":g1"]}
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": table,
                    "Key": key(pk, sk),
                    "UpdateExpression": moves,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        if i % 3 == 0:  # every third one is cancelled, after its update ran
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": key(PARTITIONS[(i + 1) % 4], "C#0"),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                }
            )
        if i % 7 == 0:
            other = key(PARTITIONS[(i + 2) % 4], "B#1")
            items.append({"Delete": {"TableName": table, "Key": other}})
        outcome = answer(client.transact_write_items, {"TransactItems": items})
        outcomes.append(outcome.get("error", {}).get("Error", {}).get("Code", "ok"))

    def query(i: int) -> None:
        index = (None, "GSI1", "GSI2")[i % 3]
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": f"{INDEX_KEYS[index][0]} = :h",
            "ExpressionAttributeValues": {":h": s(rng.choice(HASH_VALUES[index]))},
        }
        if index:
            request["IndexName"] = index
        client.query(**request)

    for i in range(15):  # warm-up
        transaction(i)
        query(i)
    moto_table_ = moto_table(table)
    assert moto_dynamodb._STATE in moto_table_.__dict__
    assert Item.instances_tracked == []

    outcomes.clear()
    for i in range(300):
        transaction(i)
        query(i)

    assert set(outcomes) == {"ok", "TransactionCanceledException"}

    assert Item.instances_tracked == []
    assert StreamRecord.instances_tracked == []
    assert moto_dynamodb._scope.__dict__.get("items", {}) == {}
    moto_table_ = moto_table(table)
    state = moto_table_.__dict__[moto_dynamodb._STATE]
    items = moto_table_.all_items()
    carrying = [i for i in items if "GSI1PK" in i.attrs or "GSI2PK" in i.attrs]
    assert 0 < len(state.memberships) <= len(carrying)
    for index, attr in (("GSI1", "GSI1PK"), ("GSI2", "GSI2PK")):
        members = sum(len(keys) for keys in state.partitions[index].values())
        assert members == sum(attr in i.attrs for i in items)
        assert all(state.partitions[index].values())  # no empty partition is kept
    assert_index_matches_table(moto_table_)


def test_point_in_time_recovery_can_restore_up_to_now(aws: None) -> None:
    client = dynamodb()
    name = new_table(client, "pitr")  # point-in-time recovery on, as infra/table.json has it
    time.sleep(0.01)
    asked = time.time()

    described = client.describe_continuous_backups(TableName=name)
    pitr = described["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]

    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    assert pitr["EarliestRestorableDateTime"].timestamp() < asked  # since it was enabled
    assert pitr["LatestRestorableDateTime"].timestamp() >= asked  # stock moto: the same moment
    client.update_continuous_backups(
        TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    disabled = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert "LatestRestorableDateTime" not in disabled["PointInTimeRecoveryDescription"]


# -- the moto version check --------------------------------------------------------------------
def test_check_moto_accepts_the_pinned_moto() -> None:
    moto_dynamodb.check_moto()


def test_check_moto_refuses_another_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto, "__version__", "5.2.6")
    with pytest.raises(moto_dynamodb.MotoChanged, match=r"moto 5\.2\.6 is installed"):
        moto_dynamodb.check_moto()


def test_check_moto_refuses_changed_moto_code(monkeypatch: pytest.MonkeyPatch) -> None:
    function, _ = moto_dynamodb.REPLACED["Table.query"]
    monkeypatch.setitem(moto_dynamodb.REPLACED, "Table.query", (function, "00000000"))
    with pytest.raises(moto_dynamodb.MotoChanged, match=r"Table\.query"):
        moto_dynamodb.check_moto()


# -- a failed transaction puts the index partitions back ---------------------------------------
def gsi_keys(client: Any, table: str, index: str, value: str) -> list[tuple[str, str]]:
    hash_attr = INDEX_KEYS[index][0]
    found = client.query(
        TableName=table,
        IndexName=index,
        KeyConditionExpression=f"{hash_attr} = :h",
        ExpressionAttributeValues={":h": s(value)},
    )["Items"]
    return [(item["PK"]["S"], item["SK"]["S"]) for item in found]


MOVE_TO_NEW = {
    "Update": {
        "Key": key("P#0", "A#0"),
        "UpdateExpression": "SET GSI1PK = :new REMOVE GSI2PK",
        "ExpressionAttributeValues": {":new": s("G1#new")},
    }
}
FAILING_CHECK = {
    "ConditionCheck": {
        "Key": key("P#1", "A#0"),
        "ConditionExpression": "n >= :big",
        "ExpressionAttributeValues": {":big": num(100)},
    }
}
ROLLED_BACK = {
    "an update, then a failing condition": (
        [MOVE_TO_NEW, FAILING_CHECK],
        "TransactionCanceledException",
    ),
    "a put replacing it, then a failing condition": (
        [
            {
                "Put": {
                    "Item": {
                        **key("P#0", "A#0"),
                        "GSI1PK": s("G1#new"),
                        "GSI1SK": s("2024-09"),
                    }
                }
            },
            FAILING_CHECK,
        ],
        "TransactionCanceledException",
    ),
    "a delete, then a failing condition": (
        [{"Delete": {"Key": key("P#0", "A#0")}}, FAILING_CHECK],
        "TransactionCanceledException",
    ),
    "an update, then a second operation on the same item": (
        [MOVE_TO_NEW, {"Delete": {"Key": key("P#0", "A#0")}}],
        "ValidationException",
    ),
    "an update, then an update that fails to apply": (
        [
            MOVE_TO_NEW,
            {
                "Update": {
                    "Key": key("P#1", "A#0"),
                    "UpdateExpression": "ADD a :one",
                    "ExpressionAttributeValues": {":one": num(1)},
                }
            },
        ],
        "ValidationException",  # ADD of a number to a string
    ),
}


@pytest.mark.parametrize(("operations", "refusal"), ROLLED_BACK.values(), ids=ROLLED_BACK.keys())
def test_a_failed_transaction_restores_the_index_partitions(
    aws: None, operations: list[dict[str, Any]], refusal: str
) -> None:
    client = dynamodb()
    table = new_table(client, "rollback")
    client.put_item(
        TableName=table,
        Item={
            **key("P#0", "A#0"),
            "GSI1PK": s("G1#old"),
            "GSI1SK": s("2024-01"),
            "GSI2PK": s("G2#old"),
            "GSI2SK": s("k#0"),
        },
    )
    client.put_item(TableName=table, Item={**key("P#1", "A#0"), "n": num(1), "a": s("x")})
    assert gsi_keys(client, table, "GSI1", "G1#old") == [("P#0", "A#0")]  # index built

    transact = [
        {kind: {"TableName": table, **op} for kind, op in item.items()} for item in operations
    ]
    with pytest.raises(ClientError) as exc:
        client.transact_write_items(TransactItems=transact)
    assert error_code(exc) == refusal

    assert gsi_keys(client, table, "GSI1", "G1#old") == [("P#0", "A#0")]
    assert gsi_keys(client, table, "GSI1", "G1#new") == []
    assert gsi_keys(client, table, "GSI2", "G2#old") == [("P#0", "A#0")]
    assert n_of(client, table, "P#1", "A#0") == 1
    assert_index_matches_table(moto_table(table))


def test_an_item_with_a_set_as_index_key_breaks_no_index_query(aws: None) -> None:
    """moto stores it (DynamoDB would refuse it); no query can match it, and others still work."""
    client = dynamodb()
    table = new_table(client, "set-key")
    gsi1 = {"TableName": table, "IndexName": "GSI1", "KeyConditionExpression": "GSI1PK = :p"}
    client.query(**gsi1, ExpressionAttributeValues={":p": s("G")})  # the index state exists
    client.put_item(TableName=table, Item={**key("A", "1"), "GSI1PK": s("G"), "GSI1SK": s("x")})
    client.put_item(
        TableName=table, Item={**key("A", "2"), "GSI1PK": {"SS": ["G"]}, "GSI1SK": s("y")}
    )
    found = client.query(**gsi1, ExpressionAttributeValues={":p": s("G")})["Items"]
    assert [item["SK"]["S"] for item in found] == ["1"]
    assert_index_matches_table(moto_table(table))
