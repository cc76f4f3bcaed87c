"""moto's DynamoDB made to behave like DynamoDB under load: serialized, O(items) transactions,
O(partition) queries, client request tokens, and no per-call memory growth.

moto 5.2 (the version ``requirements-dev.txt`` pins) has four gaps that matter to a ledger that
runs on it locally, in the tests and in the benchmarks:

1. **Not thread-safe**: concurrent ``TransactWriteItems`` can both pass their conditions.
   ``infra.local.moto_lock`` puts every DynamoDB call under one lock.
2. **Transactions cost O(table)**: ``DynamoDBBackend.transact_write_items`` deep-copies every
   table it touches, once per item of the transaction, to roll back on failure. Here only the
   items the transaction touches are copied, and restored on failure. Conditions, the order of
   ``CancellationReasons``, ``ReturnValuesOnConditionCheckFailure`` and the validation errors are
   moto's own: the loop below is moto's, with the snapshot/restore replaced.
3. **Queries cost O(table)**: ``Table.query`` walks ``all_items()``. Here a query of the base
   table looks only at its partition (moto already keeps items by partition key), and a query of
   a global secondary index at the items whose index hash key matches, from an index kept up to
   date on every write path (put, update, delete, transactions, their rollback; anything else that
   writes, such as PartiQL, a restore or an import, drops the index and the next query rebuilds
   it). moto's own ``query`` code still sorts, pages, filters and projects those candidates, so
   the answers are moto's.
4. **Memory grows per call**: every ``Item`` moto creates (a put, each query result's copy, each
   projection) is appended to ``Item.instances_tracked`` and never freed. Here items are not
   tracked.

5. **Answers are serialized shape by shape**, a third of the server's time under load; the
   answers of the data plane (items, keys, counts) are already DynamoDB's JSON and are sent as
   such. (And the handler's method names are listed once, not with ``inspect`` on every call.)
6. **Every request is set up as if it could be a form, a query string or an S3 upload**: moto's
   ``BaseResponse.setup_class`` parses a JSON body as a query string and as a form before
   botocore's parser reads it as JSON. A DynamoDB request is JSON only: here it is read once.
7. **An expression is parsed two or three times per item**, by the handler and by the backend,
   on every call. The same update expression always gives the same tree (moto works on a deep
   copy of it), and the same condition with the same names and values the same condition (which
   moto only evaluates), so each is parsed once.

Also, **client request tokens** as DynamoDB keeps them: a ``TransactWriteItems`` repeated with the
same ``ClientRequestToken`` within 10 minutes of a successful one succeeds without writing again
(botocore sends the same token when it retries a call whose answer was lost); the same token with
other items is ``IdempotentParameterMismatchException``.

And **point-in-time recovery that moves on**: moto reports the moment PITR was enabled as the
table's ``LatestRestorableDateTime`` for ever, so a restore drill waiting for it to pass "now"
would wait for ever. DynamoDB's follows the clock (about five minutes behind); here it is moto's
clock, without the lag: moto's ``restore_table_to_point_in_time`` copies the table as it is at the
call, whatever ``RestoreDateTime`` asks, so "now" is what it can restore.

``install()`` applies all of it, idempotently; it checks the moto version and the source of every
function it replaces first, and refuses to start if moto changed under it. ``stock()`` puts moto's
own transactions, queries, token handling, serialization, request set-up and expression parsing
back for a block (the differential test compares the two).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import inspect
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import moto
from moto.core import responses as core_responses
from moto.core.exceptions import JsonRESTError
from moto.core.utils import unix_time, utcnow
from moto.dynamodb import comparisons
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.exceptions import (
    ERROR_TYPE_PREFIX,
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend, get_filter_expression
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import StreamRecord, Table
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.responses import DynamoHandler
from moto.utilities.utils import get_partition
from werkzeug.http import http_date

from infra.local.moto_lock import serialize_dynamodb

# The moto release these replacements were written against, and a digest of the source of each
# moto function they replace or rely on: a different moto must be looked at again, not trusted.
SUPPORTED_MOTO_VERSION = "5.2.5"
REPLACED = {
    "DynamoDBBackend.transact_write_items": (DynamoDBBackend.transact_write_items, "81db2cb7"),
    "DynamoDBBackend.update_item": (DynamoDBBackend.update_item, "21898458"),
    "DynamoDBBackend.describe_continuous_backups": (
        DynamoDBBackend.describe_continuous_backups,
        "fc26f9d0",
    ),
    "Table.query": (Table.query, "002b4d00"),
    "Table.all_items": (Table.all_items, "c80d2ee3"),
    "Table.put_item": (Table.put_item, "de239330"),
    "Table.delete_item": (Table.delete_item, "1594f7b0"),
    "DynamoHandler.transact_write_items": (DynamoHandler.transact_write_items, "61c163ff"),
    "DynamoHandler.serialized": (DynamoHandler.serialized, "af486a0e"),
    "responses.method_names_from_class": (core_responses.method_names_from_class, "9dbac89d"),
    "DynamoHandler.setup_class": (core_responses.BaseResponse.setup_class, "0045fc77"),
    "models.UpdateExpressionParser.make": (UpdateExpressionParser.make, "2c00ed96"),
    "comparisons.create_condition_expression_parser": (
        comparisons.create_condition_expression_parser,
        "a6679867",
    ),
    "comparisons.ConditionExpressionParser.parse": (
        comparisons.ConditionExpressionParser.parse,
        "5c9b63c5",
    ),
}
# DynamoDB keeps a client request token for 10 minutes after the request that used it.
CLIENT_TOKEN_SECONDS = 600.0
# Backend methods that write items by a path the index below does not follow: after them, the
# index of every table of that backend is rebuilt on its next query.
UNFOLLOWED_WRITERS = (
    "execute_statement",
    "execute_transaction",
    "batch_execute_statement",
    "import_table",
    "update_table",
    "restore_table_from_backup",
    "restore_table_to_point_in_time",
)

_INSTALLED = False
_ORIGINALS: dict[str, Any] = {}
_PATCHES: dict[str, Any] = {}
clock: Callable[[], float] = time.monotonic  # replaced by tests of the token window


class MotoChanged(RuntimeError):
    """moto is not the release these replacements were checked against."""


def source_digest(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:8]


def check_moto() -> None:
    """Raise ``MotoChanged`` unless moto is the version, and the code, this module replaces."""
    if moto.__version__ != SUPPORTED_MOTO_VERSION:
        raise MotoChanged(
            f"moto {moto.__version__} is installed, but infra/local/moto_dynamodb.py replaces "
            f"parts of moto {SUPPORTED_MOTO_VERSION}: compare moto's DynamoDB code with the "
            "replacements, run tests/integration/test_moto_dynamodb.py, then update "
            "SUPPORTED_MOTO_VERSION and REPLACED"
        )
    changed = [
        name
        for name, (function, digest) in REPLACED.items()
        if source_digest(_ORIGINALS.get(name, function)) != digest
    ]
    if changed:
        raise MotoChanged(
            f"moto {moto.__version__}'s {', '.join(changed)} changed from the code that "
            "infra/local/moto_dynamodb.py replaces; review the replacements"
        )


# -- 4. no tracked items -----------------------------------------------------------------------
def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``BaseModel.__new__`` without the append to ``cls.instances_tracked``."""
    return object.__new__(cls)


# -- 3. the index of global secondary index partitions -----------------------------------------
Key = tuple[DynamoType, DynamoType | None]
KEY_TYPES = frozenset({"S", "N", "B"})


class GsiPartitions:
    """For each global secondary index with one hash key: index hash value -> table keys."""

    def __init__(self, table: Table) -> None:
        self.hash_attrs = {
            index.name: hashes[0]["AttributeName"]
            for index in table.global_indexes or []
            if len(hashes := [k for k in index.schema if k["KeyType"] == "HASH"]) == 1
        }
        self.partitions: dict[str, dict[DynamoType, set[Key]]] = {
            name: {} for name in self.hash_attrs
        }
        self.memberships: dict[Key, dict[str, DynamoType]] = {}
        for item in _ORIGINALS.get("Table.all_items", Table.all_items)(table):
            self.add(item)

    def add(self, item: Item) -> None:
        key = (item.hash_key, item.range_key)
        joined: dict[str, DynamoType] = {}
        for name, attr in self.hash_attrs.items():
            value = item.attrs.get(attr)
            # Only a string, number or binary can be a key (and is hashable): moto stores an item
            # with a set or a map there (DynamoDB refuses it), which no query can match.
            if value is not None and value.type in KEY_TYPES:
                self.partitions[name].setdefault(value, set()).add(key)
                joined[name] = value
        if joined:
            self.memberships[key] = joined

    def remove(self, key: Key) -> None:
        for name, value in self.memberships.pop(key, {}).items():
            partition = self.partitions[name].get(value)
            if partition is not None:
                partition.discard(key)
                if not partition:
                    del self.partitions[name][value]


_STATE = "_ledger_gsi_partitions"


def _gsi_partitions(table: Table) -> GsiPartitions:
    """The table's index, built from the whole table on first use (and again after a write
    path it does not follow, ``UNFOLLOWED_WRITERS``, update_table's index changes included)."""
    state = table.__dict__.get(_STATE)
    if state is None:
        state = table.__dict__[_STATE] = GsiPartitions(table)
    return state


def _current(table: Table, hash_key: DynamoType, range_key: DynamoType | None) -> Item | None:
    """The item stored at a key; never creates an empty partition (``items`` is a defaultdict)."""
    stored = table.items.get(hash_key)
    if stored is None:
        return None
    if table.has_range_key:
        return stored.get(range_key)
    return stored


def _reindex(table: Table, hash_key: DynamoType, range_key: DynamoType | None) -> None:
    """Bring the GSI partitions of one key up to date with the stored item (or its absence)."""
    state = table.__dict__.get(_STATE)
    if state is None:
        return  # built from the whole table on the first query
    key = (hash_key, range_key if table.has_range_key else None)
    state.remove(key)
    item = _current(table, hash_key, range_key)
    if item is not None:
        state.add(item)


def _forget_indexes(backend: DynamoDBBackend) -> None:
    for table in list(backend.tables.values()):
        table.__dict__.pop(_STATE, None)


def _key_of(table: Table, key: dict[str, Any]) -> tuple[DynamoType, DynamoType | None] | None:
    if table.hash_key_attr not in key:
        return None
    range_key = None
    if table.has_range_key:
        if table.range_key_attr not in key:
            return None
        range_key = DynamoType(key[table.range_key_attr])
    return DynamoType(key[table.hash_key_attr]), range_key


_scope = threading.local()


def _scoped_items(table: Table) -> list[Item] | None:
    return getattr(_scope, "items", {}).get(id(table))


def all_items(self: Table) -> list[Item]:
    """moto's ``all_items``, or the candidates of the query being answered on this table."""
    scoped = _scoped_items(self)
    if scoped is not None:
        return scoped
    return _ORIGINALS["Table.all_items"](self)


def _sort_like_all_items(items: list[Item]) -> list[Item]:
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _query_candidates(
    table: Table,
    hash_key: DynamoType | None,
    index_name: str | None,
    hash_key_conditions: list[tuple[str, DynamoType]] | None,
) -> list[Item] | None:
    """Every item the query could return, in ``all_items()`` order; None: ask moto's own way."""
    if not index_name:
        if hash_key is None:
            return None
        stored = table.items.get(hash_key)
        if stored is None:
            return []
        if not table.has_range_key:
            return [stored]
        return _sort_like_all_items(list(stored.values()))
    if not any(index.name == index_name for index in table.global_indexes or []):
        return None  # a local secondary index, or no such index: moto answers (and refuses)
    state = _gsi_partitions(table)
    attr = state.hash_attrs.get(index_name)
    if attr is None:
        return None
    conditions = dict(hash_key_conditions or [])
    value = conditions.get(attr, hash_key if not conditions else None)
    if value is None:
        return None
    keys = state.partitions[index_name].get(value, ())
    found = [_current(table, h, r) for h, r in keys]
    return _sort_like_all_items([item for item in found if item is not None])


def query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
    """moto's ``Table.query``, walking the query's partition instead of the whole table."""
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    conditions = kwargs.get("hash_key_conditions")
    candidates = _query_candidates(self, hash_key, index_name, conditions)
    original = _ORIGINALS["Table.query"]
    if candidates is None:
        return original(self, hash_key, *args, **kwargs)
    scopes = _scope.__dict__.setdefault("items", {})
    scopes[id(self)] = candidates
    try:
        return original(self, hash_key, *args, **kwargs)
    finally:
        scopes.pop(id(self), None)


def put_item(self: Table, *args: Any, **kwargs: Any) -> Item:
    item = _ORIGINALS["Table.put_item"](self, *args, **kwargs)
    _reindex(self, item.hash_key, item.range_key)
    return item


def delete_item(self: Table, hash_key: DynamoType, range_key: DynamoType | None) -> Item | None:
    try:
        return _ORIGINALS["Table.delete_item"](self, hash_key, range_key)
    finally:
        _reindex(self, hash_key, range_key)


def update_item(self: DynamoDBBackend, table_name: str, key: dict[str, Any], *a: Any, **k: Any):
    """moto's update, which changes the stored item in place; then its GSI partitions follow."""
    try:
        return _ORIGINALS["DynamoDBBackend.update_item"](self, table_name, key, *a, **k)
    finally:
        table = self.tables.get(table_name)
        parsed = _key_of(table, key) if table is not None and isinstance(key, dict) else None
        if table is not None and parsed is not None:
            _reindex(table, *parsed)


def _forgetting(name: str) -> Callable[..., Any]:
    original = getattr(DynamoDBBackend, name)

    def writer(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            _forget_indexes(self)

    writer.__name__ = name
    return writer


# -- 2. transactions in O(items of the transaction) --------------------------------------------
class _Snapshots:
    """The items a transaction touched, as they were before it, to put back if it fails."""

    def __init__(self) -> None:
        self.saved: list[tuple[Table, DynamoType, DynamoType | None, Item | None]] = []
        self.streams: dict[int, tuple[Any, int]] = {}

    def save(self, table: Table, hash_key: DynamoType, range_key: DynamoType | None) -> None:
        before = _current(table, hash_key, range_key)
        # Updates change the stored item in place: keep a copy of it, not the item itself.
        self.saved.append((table, hash_key, range_key, copy.deepcopy(before)))
        shard = table.stream_shard
        if shard is not None and id(table) not in self.streams:
            self.streams[id(table)] = (shard, len(shard.items))

    def restore(self) -> None:
        for table, hash_key, range_key, before in reversed(self.saved):
            if table.has_range_key:
                partition = table.items.get(hash_key)
                if before is not None:
                    table.items[hash_key][range_key] = before
                elif partition is not None:
                    partition.pop(range_key, None)
            elif before is not None:
                table.items[hash_key] = before
            else:
                table.items.pop(hash_key, None)
            _reindex(table, hash_key, range_key)
        for shard, length in self.streams.values():
            del shard.items[length:]


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``transact_write_items`` with a snapshot of the touched items, not of the tables."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    snapshots = _Snapshots()

    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str, str, dict[str, Any]] | tuple[None, None, None]] = []
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException

        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")

            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get("ReturnValuesOnConditionCheckFailure")

            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]

            check_unicity(table_name, key)

            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(
                    condition_expression,
                    expression_attribute_names,
                    expression_attribute_values,
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)

            if op_type != "ConditionCheck":
                table = self.get_table(table_name)
                snapshots.save(table, *self.get_keys_value(table, key))
            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            snapshots.restore()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))  # type: ignore[arg-type]
        except Exception as e:
            errors.append((type(e).__name__, str(e), original_item))  # type: ignore[arg-type]

    if any(code is not None for code, _, _ in errors):
        snapshots.restore()
        raise TransactionCanceledException(errors)


# -- client request tokens ---------------------------------------------------------------------
class IdempotentParameterMismatch(JsonRESTError):
    def __init__(self) -> None:
        super().__init__(
            ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
            "The request uses the same client token as a previous, but non-identical request.",
        )


class ClientTokens:
    """Tokens of successful transactions, each with a digest of its items, for 10 minutes."""

    def __init__(self) -> None:
        self.seen: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()

    def prune(self, now: float) -> None:
        while self.seen:
            _, (_, at) = next(iter(self.seen.items()))
            if now - at < CLIENT_TOKEN_SECONDS:
                return
            self.seen.popitem(last=False)


TOKENS = ClientTokens()


def handle_transact_write_items(self: DynamoHandler) -> Any:
    """moto's handler, but a token already used by a successful transaction writes nothing."""
    original = _ORIGINALS["DynamoHandler.transact_write_items"]
    token = self.body.get("ClientRequestToken")
    if not token:
        return original(self)
    now = clock()
    TOKENS.prune(now)
    key = (self.current_account, self.region, str(token))
    digest = hashlib.sha256(
        json.dumps(self.body["TransactItems"], sort_keys=True, default=str).encode()
    ).hexdigest()
    seen = TOKENS.seen.get(key)
    if seen is not None:
        if seen[0] != digest:
            raise IdempotentParameterMismatch()
        return dynamodb_responses.ActionResult(
            {"ConsumedCapacity": [], "ItemCollectionMetrics": {}}
        )
    result = original(self)
    TOKENS.seen[key] = (digest, now)
    return result


# -- 5. answers of the data plane serialized as the JSON they already are ----------------------
# moto serializes every answer by walking botocore's output shape, member by member (about a third
# of the embedded DynamoDB's time under load). The answers of these operations are already
# DynamoDB's wire format (AttributeValue maps, counts, keys), so plain JSON is the same answer.
PLAIN_JSON_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)
_PLAIN = (str, int, float, bool)
PLAIN_RESULTS = (dynamodb_responses.ActionResult, dynamodb_responses.DynamoResult)


def _plain_json(value: Any) -> Any:
    """``value`` without None members, or raise TypeError for anything that is not plain JSON."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(type(value).__name__)


def serialized(self: DynamoHandler, action_result: Any) -> Any:
    """moto's serialization, short-cut for plain answers of ``PLAIN_JSON_OPERATIONS``."""
    original = _ORIGINALS["DynamoHandler.serialized"]
    result = action_result.result
    if type(action_result) not in PLAIN_RESULTS or not isinstance(result, dict):
        return original(self, action_result)
    if self._get_action() not in PLAIN_JSON_OPERATIONS:
        return original(self, action_result)
    try:
        body = json.dumps(_plain_json(result))
    except TypeError:
        return original(self, action_result)
    headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
    return 200, headers, body


# -- 6. the handler's method names, listed once --------------------------------------------------
# moto lists the handler class's methods with ``inspect.getmembers`` on every call, to find the
# action's method (half a millisecond each time); the names of DynamoHandler's methods never change.
_METHOD_NAMES: dict[type, list[str]] = {}


def method_names_from_class(clazz: Any) -> list[str]:
    if clazz is not DynamoHandler:
        return _ORIGINALS["responses.method_names_from_class"](clazz)
    names = _METHOD_NAMES.get(clazz)
    if names is None:
        names = _METHOD_NAMES[clazz] = _ORIGINALS["responses.method_names_from_class"](clazz)
    return names


# -- 7. a DynamoDB request set up as the JSON it is ----------------------------------------------
def setup_class(
    self: DynamoHandler,
    request: Any,
    full_url: str | None = None,
    headers: Any = None,
    use_raw_body: bool | None = None,
) -> None:
    """moto's ``BaseResponse.setup_class`` for a JSON request, without its form, query-string and
    S3 branches (which a JSON body only feeds garbage); anything else goes to moto's own."""
    if not request.content_type.startswith("application/x-amz-json"):
        original = _ORIGINALS["DynamoHandler.setup_class"]
        return original(self, request, full_url, headers, use_raw_body)
    from moto.iam.models import mark_account_as_visited

    full_url = request.raw_url if full_url is None else full_url
    self.is_werkzeug_request = request.from_wsgi_server
    self.decompress_request_body(request)
    self.normalized_request = request
    self.parsed_url = urlparse(full_url)
    self.raw_body = request.get_data()
    self.body = self.raw_body.decode("utf-8")
    self.form_data = request.form
    self.querystring = self.data = OrderedDict()
    self.uri = full_url
    self.path = self.parsed_url.path
    self.raw_path = request.raw_path
    self.method = request.method
    self.region = self.get_region_from_url(request, full_url)
    self.partition = get_partition(self.region)
    self.uri_match = {}
    self.headers = request.headers
    self.response_headers = {"server": "amazon.com"}
    if not self.is_werkzeug_request:
        self.response_headers["date"] = http_date(utcnow())
    if self._get_action():
        self.parse_parameters(request)
    self.access_key = self.get_access_key()
    self.current_account = self.get_current_account()
    mark_account_as_visited(
        account_id=self.current_account,
        access_key=self.access_key,
        service=self.service_name,
        region=self.region,
    )


# -- 8. each update expression parsed once -----------------------------------------------------
class CachedUpdateExpressionParser:
    """What moto's DynamoDB uses of ``UpdateExpressionParser``: ``make``, remembered per string.

    The tree is only read (``find_clauses``) or deep-copied before it is validated and executed
    (``Validator.__init__``), so one tree can serve every call. A malformed expression raises,
    and is not remembered."""

    make = staticmethod(functools.lru_cache(maxsize=2048)(UpdateExpressionParser.make))


@functools.lru_cache(maxsize=1024)
def _parsed_condition(
    expression: str, names: str, values: str
) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    parser = comparisons.ConditionExpressionParser(
        expression, json.loads(names), json.loads(values)
    )
    op = parser.parse()
    return op, tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found)


class CachedCondition:
    """What moto uses of a ``ConditionExpressionParser``: ``parse()``, then the names and values
    it found. The parse is shared by every call with the same expression, names and values; it
    happens on ``parse()``, so a malformed expression raises where moto's parser does (and is
    not remembered). Each caller gets lists of its own (some extend them)."""

    def __init__(self, key: tuple[str, str, str]) -> None:
        self._key = key
        self.expr_attr_names_found: list[str] = []
        self.expr_attr_values_found: list[str] = []

    def parse(self) -> Any:
        op, names, values = _parsed_condition(*self._key)
        self.expr_attr_names_found.extend(names)
        self.expr_attr_values_found.extend(values)
        return op


def create_condition_expression_parser(
    expression: str | None, names: dict[str, str] | None, values: dict[str, Any] | None
) -> Any:
    """moto's ``create_condition_expression_parser``, parsed once per expression, names and
    values."""
    try:
        key = (
            expression or "",
            json.dumps(names or {}, sort_keys=True),
            json.dumps(values or {}, sort_keys=True),
        )
    except TypeError:
        key = None
    if not expression or key is None:
        return comparisons.ConditionExpressionParser(expression, names, values)
    return CachedCondition(key)


# -- point-in-time recovery that follows the clock ---------------------------------------------
def describe_continuous_backups(self: DynamoDBBackend, table_name: str) -> dict[str, Any]:
    """moto's answer, with ``LatestRestorableDateTime`` now while PITR is enabled."""
    described = _ORIGINALS["DynamoDBBackend.describe_continuous_backups"](self, table_name)
    pitr = described.get("PointInTimeRecoveryDescription", {})
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        return described
    return {
        **described,
        "PointInTimeRecoveryDescription": {**pitr, "LatestRestorableDateTime": unix_time()},
    }


# -- install / stock ---------------------------------------------------------------------------
_OWNERS: dict[str, Any] = {
    "DynamoDBBackend": DynamoDBBackend,
    "Table": Table,
    "DynamoHandler": DynamoHandler,
    "responses": core_responses,
}
# What stock() swaps back: the behaviour the differential test compares.
_COMPARED = (
    "DynamoDBBackend.transact_write_items",
    "Table.query",
    "Table.all_items",
    "DynamoHandler.transact_write_items",
    "DynamoHandler.serialized",
    "DynamoHandler.setup_class",
)
# Names moto's modules import from each other, swapped in those modules (and back by stock()).
_MODULE_SWAPS = (
    (dynamodb_models, "UpdateExpressionParser", CachedUpdateExpressionParser),
    (dynamodb_responses, "UpdateExpressionParser", CachedUpdateExpressionParser),
    (comparisons, "create_condition_expression_parser", create_condition_expression_parser),
    (dynamodb_models, "create_condition_expression_parser", create_condition_expression_parser),
    (
        dynamodb_responses,
        "create_condition_expression_parser",
        create_condition_expression_parser,
    ),
)
_MODULE_ORIGINALS = [getattr(module, name) for module, name, _ in _MODULE_SWAPS]


def _set(name: str, function: Any) -> None:
    owner, attribute = name.split(".")
    setattr(_OWNERS[owner], attribute, function)


def install() -> None:
    """Serialize moto's DynamoDB and apply every replacement above (idempotent)."""
    global _INSTALLED
    serialize_dynamodb()
    if _INSTALLED:
        return
    check_moto()
    for name, (function, _) in REPLACED.items():
        _ORIGINALS[name] = function
    _PATCHES.update(
        {
            "DynamoDBBackend.transact_write_items": transact_write_items,
            "DynamoDBBackend.update_item": update_item,
            "DynamoDBBackend.describe_continuous_backups": describe_continuous_backups,
            "Table.query": query,
            "Table.all_items": all_items,
            "Table.put_item": put_item,
            "Table.delete_item": delete_item,
            "DynamoHandler.transact_write_items": handle_transact_write_items,
            "DynamoHandler.serialized": serialized,
            "responses.method_names_from_class": method_names_from_class,
            "DynamoHandler.setup_class": setup_class,
        }
    )
    for name, function in _PATCHES.items():
        _set(name, function)
    for module, name, replacement in _MODULE_SWAPS:
        setattr(module, name, replacement)
    for name in UNFOLLOWED_WRITERS:
        setattr(DynamoDBBackend, name, _forgetting(name))
    for model in (Item, StreamRecord):
        model.__new__ = staticmethod(_untracked_new)  # type: ignore[method-assign,assignment]
        model.instances_tracked.clear()
    _INSTALLED = True


@contextlib.contextmanager
def stock() -> Iterator[None]:
    """moto's own transactions, queries, client-token handling, serialization, request set-up
    and expression parsing inside the block."""
    if not _INSTALLED:
        yield
        return
    for name in _COMPARED:
        _set(name, _ORIGINALS[name])
    for (module, name, _), original in zip(_MODULE_SWAPS, _MODULE_ORIGINALS, strict=True):
        setattr(module, name, original)
    try:
        yield
    finally:
        for name in _COMPARED:
            _set(name, _PATCHES[name])
        for module, name, replacement in _MODULE_SWAPS:
            setattr(module, name, replacement)
