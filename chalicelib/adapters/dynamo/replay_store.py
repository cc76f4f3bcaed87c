"""Replay records: the answer to a money request, written in the same transaction as the money.

``Idempotency-Key`` (API.md, "Conventions"): a retry gets the first answer back. For the routes
on the hot path (``POST /v1/transfers``) the record is not claimed before the work and completed
after it (two more writes): it is read in the request's first batch read, and written as one more
put of the money's ``TransactWriteItems`` (``write_with_money``), or alone with a conditional
``PutItem`` when no money moved (a refusal; ``save``). Two requests racing with one key both run;
the first to write wins and the other gets the stored answer, so a key has one answer.

Item: PK ``IDEM#<sha256 of scope, caller and key>``, SK ``IDEM`` (``keys``), the same item type
as Powertools' records (other routes), with status ``COMPLETED``, the answer as JSON in
``data``, a hash of the request in ``validation`` and ``expires_at`` (the table's TTL): a record
past its expiry is absent, and may be written over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import PutError

from chalicelib.adapters.dynamo import keys, read_ahead
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import IdempotencyItem
from chalicelib.adapters.dynamo.transact import condition_failed
from chalicelib.domain.errors import IdempotencyRaced

COMPLETED = "COMPLETED"
TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: Any
    request_hash: str


class DynamoReplayStore:
    @staticmethod
    def record_key(scope: str, caller: str, key: str) -> str:
        """The record's id for one caller's key on one kind of request."""
        return hashlib.sha256(f"replay\n{scope}\n{caller}\n{key}".encode()).hexdigest()

    @staticmethod
    def request_hash(fingerprint: str) -> str:
        """What a record keeps of its request, to tell a replay from a reused key."""
        return hashlib.sha256(fingerprint.encode()).hexdigest()

    def want(self, record: str) -> None:
        """Read this record in the request's first batch read."""
        read_ahead.want(keys.idempotency_pk(record), keys.IDEMPOTENCY_SK)

    def find(self, record: str, now: int) -> StoredAnswer | None:
        """The stored answer for this record, unless there is none or it has expired.

        A Powertools record still in progress (a key first sent before this route stored its
        answers with the money) counts as an answer being written: ``IdempotencyRaced``.
        """
        raw = read_ahead.get_raw(keys.idempotency_pk(record), keys.IDEMPOTENCY_SK)
        if raw is None:
            return None
        item = IdempotencyItem.from_raw_data(raw)
        if int(item.expires_at) <= now:
            return None
        if item.status != COMPLETED or item.data is None:
            raise IdempotencyRaced("a request with this Idempotency-Key is still running")
        stored = json.loads(item.data)
        return StoredAnswer(stored["status"], stored["body"], item.validation or "")

    def write_with_money(self, record: str, answer: StoredAnswer, now: int) -> ExtraWrite:
        """The record as one more item of the money's write; if a live record exists by then,
        the whole write is refused with ``IdempotencyRaced``."""
        return ExtraWrite(
            self._item(record, answer, now),
            self._free(now),
            IdempotencyRaced("another request with this Idempotency-Key was answered first"),
        )

    def save(self, record: str, answer: StoredAnswer, now: int) -> bool:
        """Store an answer on its own; False if a live record exists (another request's)."""
        try:
            self._item(record, answer, now).save(condition=self._free(now))
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    @staticmethod
    def _item(record: str, answer: StoredAnswer, now: int) -> IdempotencyItem:
        return IdempotencyItem(
            keys.idempotency_pk(record),
            keys.IDEMPOTENCY_SK,
            item_type=IdempotencyItem.ITEM_TYPE,
            status=COMPLETED,
            expires_at=now + TTL_SECONDS,
            data=json.dumps({"status": answer.status, "body": answer.body}, separators=(",", ":")),
            validation=answer.request_hash,
        )

    @staticmethod
    def _free(now: int):  # type: ignore[no-untyped-def]
        return IdempotencyItem.PK.does_not_exist() | (IdempotencyItem.expires_at <= now)
