"""Reads by key that one request is going to make, fetched together in one round trip.

DESIGN.md budgets a whole HTTP transfer at three round trips; the first is one
``BatchGetItem`` of the caller's user and login, the recipient's email claim and the request's
replay record. Each of those is read by a different layer (access check, idempotency, the
transfer service), so each layer first says what it *will* read (``want``) and then reads it
(``get_raw``): the first read fetches every wanted key at once, strongly consistent, like the
``GetItem`` calls it replaces.

Rules that keep this as fresh as a direct read:
* a fetched item serves exactly one read; the next read of that key goes to DynamoDB again;
* only keys read *before* the request writes are wanted (the access check, the replay record,
  the recipient's claim), and ``request_scope`` drops whatever was not read when the request ends;
* outside a request scope (jobs, scripts, tests) ``want`` does nothing and ``get_raw`` is a
  plain consistent ``GetItem``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from chalicelib.adapters.dynamo.models import LedgerItem

BATCH_GET_LIMIT = 100

Key = tuple[str, str]


class ReadAhead:
    """The keys one request will read, and what one batch read found for them."""

    def __init__(self) -> None:
        self.wanted: dict[Key, None] = {}
        self.fetched: dict[Key, dict[str, Any] | None] = {}

    def want(self, pk: str, sk: str) -> None:
        key = (pk, sk)
        if key not in self.fetched:
            self.wanted[key] = None

    def get_raw(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self.get_many([(pk, sk)])[(pk, sk)]

    def get_many(self, keys: list[Key]) -> dict[Key, dict[str, Any] | None]:
        missing = [key for key in keys if key not in self.fetched]
        if missing:
            for key in missing:
                self.wanted[key] = None
            wanted = list(self.wanted)
            self.wanted.clear()
            self.fetched.update(_fetch(wanted))
        return {key: self.fetched.pop(key) for key in dict.fromkeys(keys)}


def _fetch(keys: list[Key]) -> dict[Key, dict[str, Any] | None]:
    """Every key's item as stored now (None: absent), in one round trip when DynamoDB allows."""
    if len(keys) == 1:
        return {keys[0]: _get_item(*keys[0])}
    found: dict[Key, dict[str, Any] | None] = dict.fromkeys(keys)
    connection = LedgerItem._get_connection()
    table = LedgerItem.Meta.table_name
    pending = [{"PK": {"S": pk}, "SK": {"S": sk}} for pk, sk in keys]
    while pending:
        page, pending = pending[:BATCH_GET_LIMIT], pending[BATCH_GET_LIMIT:]
        response = connection.batch_get_item(page, consistent_read=True)
        for raw in response.get("Responses", {}).get(table, []):
            found[(raw["PK"]["S"], raw["SK"]["S"])] = raw
        pending += response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
    return found


_scope: ContextVar[ReadAhead | None] = ContextVar("read_ahead", default=None)


@contextmanager
def request_scope() -> Iterator[ReadAhead]:
    """One request's read-ahead; what it fetched and nobody read is dropped at the end."""
    reads = ReadAhead()
    token = _scope.set(reads)
    try:
        yield reads
    finally:
        _scope.reset(token)


def want(pk: str, sk: str) -> None:
    """This request will read ``(pk, sk)`` before it writes anything."""
    reads = _scope.get()
    if reads is not None:
        reads.want(pk, sk)


def get_raw(pk: str, sk: str) -> dict[str, Any] | None:
    """The item as stored now (strongly consistent), in DynamoDB's JSON, or None."""
    reads = _scope.get()
    if reads is None:
        return _get_item(pk, sk)
    return reads.get_raw(pk, sk)


def get_many(keys: list[Key]) -> dict[Key, dict[str, Any] | None]:
    """``get_raw`` for several keys, in one round trip with whatever else is wanted."""
    reads = _scope.get()
    if reads is None:
        return _fetch(list(dict.fromkeys(keys))) if keys else {}
    return reads.get_many(keys) if keys else {}


def _get_item(pk: str, sk: str) -> dict[str, Any] | None:
    response = LedgerItem._get_connection().get_item(pk, sk, consistent_read=True)
    return response.get("Item")
