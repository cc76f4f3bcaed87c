"""Create the ledger table from ``infra/table.json``: the one definition of keys, GSIs and TTL.

The deployed stack and the local stack (and the tests) read the same template, so they cannot
drift apart. Point-in-time recovery is on locally too, as the template has it: the restore drill
restores to a point in time (moto keeps no history: ``infra/local/moto_dynamodb.py``). Encryption
with a KMS key and deletion protection are properties of the deployed table only: the embedded
DynamoDB has no KMS, and tests delete their tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1] / "table.json"
TABLE_RESOURCE = "LedgerTable"
# The parts of the template's table that define its shape, as CreateTable takes them.
SHAPE_PROPERTIES = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def table_properties() -> dict[str, Any]:
    template = json.loads(TEMPLATE.read_text())
    return template["Resources"][TABLE_RESOURCE]["Properties"]


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    properties = table_properties()
    kwargs = {name: properties[name] for name in SHAPE_PROPERTIES}
    kwargs["TableName"] = table_name
    return kwargs


def create_table(client: Any, table_name: str) -> None:
    """Create the table (and its TTL and point-in-time recovery settings) with a low-level boto3
    DynamoDB client."""
    client.create_table(**create_table_kwargs(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name)
    properties = table_properties()
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification=properties["TimeToLiveSpecification"]
    )
    client.update_continuous_backups(
        TableName=table_name,
        PointInTimeRecoverySpecification=properties["PointInTimeRecoverySpecification"],
    )


def ensure_table(client: Any, table_name: str) -> bool:
    """Create the table unless it exists; True when it was created."""
    if table_name in client.list_tables()["TableNames"]:
        return False
    create_table(client, table_name)
    return True
