"""DynamoDB as the restore drill uses it (``chalicelib.services.restore_drill.DrillTables``): the
live table's point-in-time recovery, a restore into a scratch table, counting, the scratch
table's deletion, and the ``DRILL#<drill id>`` record.

Everything goes through one low-level client with explicit table names (the drill works on two
tables at once; the PynamoDB models stay bound to the live one). botocore alone: the drill's
function needs no boto3 session.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore

if TYPE_CHECKING:
    from chalicelib.config import Settings
    from chalicelib.services.restore_drill import DrillResult

ITEM_TYPE = "restore_drill"
VOLATILE_ATTRIBUTE = "expires_at"  # the table's TTL attribute: such items may vanish at any time
UNTYPED = "<no item_type>"


class DynamoDrillTables:
    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def for_settings(cls, settings: Settings) -> DynamoDrillTables:
        """On a DynamoDB client for the configured region and endpoint (botocore only)."""
        import botocore.session

        return cls(
            botocore.session.get_session().create_client(
                "dynamodb", region_name=settings.region, endpoint_url=settings.dynamodb_endpoint
            )
        )

    def count_items(self, table: str) -> dict[tuple[str, bool], int]:
        """Items per ``(item_type, carries expires_at)``, by a consistent, paginated scan of keys
        and those two attributes only."""
        counts: dict[tuple[str, bool], int] = {}
        request: dict[str, Any] = {
            "TableName": table,
            "ConsistentRead": True,
            "ProjectionExpression": "item_type, #ttl",
            "ExpressionAttributeNames": {"#ttl": VOLATILE_ATTRIBUTE},
        }
        while True:
            page = self.client.scan(**request)
            for item in page.get("Items", []):
                item_type = item.get("item_type", {}).get("S", UNTYPED)
                key = (item_type, VOLATILE_ATTRIBUTE in item)
                counts[key] = counts.get(key, 0) + 1
            if "LastEvaluatedKey" not in page:
                return counts
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def point_in_time_recovery(self, table: str) -> tuple[str, datetime | None]:
        """The table's point-in-time recovery status and its latest restorable instant."""
        description = self.client.describe_continuous_backups(TableName=table)
        pitr = description["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        return (
            pitr.get("PointInTimeRecoveryStatus", "DISABLED"),
            pitr.get("LatestRestorableDateTime"),
        )

    def restore_to_point_in_time(
        self, source: str, target: str, moment: datetime, kms_key_arn: str | None
    ) -> None:
        """Start restoring ``source`` as it was at ``moment`` into the new table ``target``, on
        the key ``kms_key_arn`` when given (whatever a restore's default is)."""
        encryption: dict[str, Any] = {}
        if kms_key_arn:
            encryption = {
                "SSESpecificationOverride": {
                    "Enabled": True,
                    "SSEType": "KMS",
                    "KMSMasterKeyId": kms_key_arn,
                }
            }
        self.client.restore_table_to_point_in_time(
            SourceTableName=source,
            TargetTableName=target,
            RestoreDateTime=moment,
            **encryption,
        )

    def table_arn(self, table: str) -> str:
        return self.client.describe_table(TableName=table)["Table"]["TableArn"]

    def table_status(self, table: str) -> str:
        """``CREATING``, ``ACTIVE``, ...; raises the client's error when there is no such table."""
        return self.client.describe_table(TableName=table)["Table"]["TableStatus"]

    def delete_table(self, table: str) -> bool:
        """Delete ``table``; True once it is gone or never existed, False while it cannot be
        deleted yet (still being created or updated) or DynamoDB refused. Never raises."""
        not_found = self.client.exceptions.ResourceNotFoundException
        try:
            status = self.client.describe_table(TableName=table)["Table"]["TableStatus"]
        except not_found:
            return True
        except Exception:
            return False
        if status in ("CREATING", "UPDATING"):
            return False
        try:
            self.client.delete_table(TableName=table)
        except not_found:
            return True
        except Exception:
            return False
        return True

    def record(self, table: str, result: DrillResult) -> None:
        """Write the result to ``table`` as ``DRILL#<drill id>`` / ``DRILL``.

        ``result`` is ``DrillResult.as_dict()`` as JSON; reports recorded before the drill had
        two methods carry ``backup_arn`` and ``backup_deleted`` there instead of ``method`` and
        the restore's source (nothing in the code reads them back).
        """
        self.client.put_item(
            TableName=table,
            Item={
                "PK": {"S": keys.drill_pk(result.drill_id)},
                "SK": {"S": keys.DRILL_SK},
                "item_type": {"S": ITEM_TYPE},
                "status": {"S": result.status},
                "method": {"S": result.method},
                "started_at": {"S": result.started_at},
                "finished_at": {"S": result.finished_at or ""},
                "scratch_table": {"S": result.scratch_table},
                "scratch_deleted": {"BOOL": result.scratch_deleted},
                "result": {"S": json.dumps(result.as_dict(), sort_keys=True, default=str)},
            },
        )

    def reconciliation_store(self, table: str) -> DynamoReconciliationStore:
        """The reconciliation's reads on ``table`` (the restored copy), through this client."""
        return DynamoReconciliationStore(table, self.client)
