"""Serialize every call into moto's DynamoDB backend.

moto's DynamoDB is not thread-safe: concurrent TransactWriteItems calls can both pass their
conditions and lose updates. Real DynamoDB evaluates a transaction's conditions atomically, so
for the embedded DynamoDB (local stack) and the concurrency tests one process-wide lock around
``DynamoHandler.call_action`` restores that behaviour.
"""

from __future__ import annotations

import functools
import threading

from moto.dynamodb.responses import DynamoHandler

LOCK = threading.RLock()
_MARK = "_ledger_serialized"


def serialize_dynamodb() -> None:
    """Idempotent: wrapping twice would still be one lock, but we do it once."""
    original = DynamoHandler.call_action
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def call_action(self):  # type: ignore[no-untyped-def]
        with LOCK:
            return original(self)

    setattr(call_action, _MARK, True)
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
