"""Powertools' idempotency persistence on the ledger table, through PynamoDB.

Powertools' ``BasePersistenceLayer`` holds the logic (hashing, payload validation, expiry,
in-progress locking); this subclass implements its four primitives. Unlike Powertools' own
DynamoDB layer it needs no boto3 (cold start) and keys each record by its own partition
(``IDEM#<hash>``) instead of one static partition key that every request would write.
"""

from __future__ import annotations

import datetime as dt

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import (
    STATUS_CONSTANTS,
    BasePersistenceLayer,
    DataRecord,
)
from pynamodb.exceptions import PutError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import IdempotencyItem
from chalicelib.adapters.dynamo.transact import condition_failed


class DynamoIdempotencyStore(BasePersistenceLayer):
    def _item(self, idempotency_key: str) -> IdempotencyItem:
        return IdempotencyItem(keys.idempotency_pk(idempotency_key), keys.IDEMPOTENCY_SK)

    @staticmethod
    def _record(item: IdempotencyItem, idempotency_key: str) -> DataRecord:
        return DataRecord(
            idempotency_key=idempotency_key,
            status=item.status,
            expiry_timestamp=int(item.expires_at),
            in_progress_expiry_timestamp=(
                int(item.in_progress_expiry) if item.in_progress_expiry is not None else None
            ),
            response_data=item.data or "",
            payload_hash=item.validation or "",
        )

    def _get_record(self, idempotency_key: str) -> DataRecord:
        try:
            item = IdempotencyItem.get(
                keys.idempotency_pk(idempotency_key), keys.IDEMPOTENCY_SK, consistent_read=True
            )
        except IdempotencyItem.DoesNotExist as exc:
            raise IdempotencyItemNotFoundError from exc
        return self._record(item, idempotency_key)

    def _put_record(self, data_record: DataRecord) -> None:
        """Create the INPROGRESS record unless a live one exists (same rule as Powertools')."""
        item = self._item(data_record.idempotency_key)
        item.item_type = IdempotencyItem.ITEM_TYPE
        item.status = data_record.status
        item.expires_at = data_record.expiry_timestamp
        item.in_progress_expiry = data_record.in_progress_expiry_timestamp
        if self.payload_validation_enabled and data_record.payload_hash:
            item.validation = data_record.payload_hash
        now = dt.datetime.now()
        free = (
            IdempotencyItem.PK.does_not_exist()
            | (IdempotencyItem.expires_at < int(now.timestamp()))
            | (
                (IdempotencyItem.status == STATUS_CONSTANTS["INPROGRESS"])
                & IdempotencyItem.in_progress_expiry.exists()
                & (IdempotencyItem.in_progress_expiry < int(now.timestamp() * 1000))
            )
        )
        try:
            item.save(condition=free)
        except PutError as exc:
            if condition_failed(exc):
                raise IdempotencyItemAlreadyExistsError from exc
            raise

    def _update_record(self, data_record: DataRecord) -> None:
        self._item(data_record.idempotency_key).update(
            actions=[
                IdempotencyItem.status.set(data_record.status),
                IdempotencyItem.data.set(data_record.response_data),
                IdempotencyItem.expires_at.set(data_record.expiry_timestamp),
            ]
        )

    def _delete_record(self, data_record: DataRecord) -> None:
        self._item(data_record.idempotency_key).delete()
