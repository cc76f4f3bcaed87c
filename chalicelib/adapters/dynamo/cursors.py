"""Opaque pagination cursors: a query's LastEvaluatedKey, base64 JSON.

A cursor comes back from the client, so it is checked before it reaches DynamoDB: exactly the
key attributes of that query, all strings, the same partition, and sort keys inside the query's
own key range (DynamoDB refuses a start key outside it, which would otherwise surface as a 500).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any


def encode(key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def decode(
    cursor: str,
    *,
    partition: Mapping[str, str],
    ranges: Mapping[str, tuple[str, str]],
) -> dict[str, Any]:
    """The start key a cursor names, if it fits this query.

    ``partition``: attribute -> the exact value the cursor must carry (the query's partition
    key, and the table's key when querying an index); ``ranges``: attribute -> inclusive bounds.

    Raises:
        ValueError: the cursor was not produced by this query.
    """
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(key, dict) or set(key) != set(partition) | set(ranges):
        raise ValueError("invalid cursor")
    values = {}
    for name, value in key.items():
        if not isinstance(value, dict) or set(value) != {"S"} or not isinstance(value["S"], str):
            raise ValueError("invalid cursor")
        values[name] = value["S"]
    for name, expected in partition.items():
        if expected and values[name] != expected:
            raise ValueError("invalid cursor")
    for name, (low, high) in ranges.items():
        if not low <= values[name] <= high:
            raise ValueError("invalid cursor")
    return key
