"""The restore drill: prove that a backup of the table restores to a ledger that verifies.

A backup nobody has restored is a hope. Weekly (``chalicelib/api/restore_drill_job.py``) and on
demand (``make drill`` on the local stack, ``python -m infra.drill`` against a deployed stage):

1. count the live table's items per ``item_type`` (*before*);
2. take an on-demand backup (``CreateBackup``) and wait until it is ``AVAILABLE``;
3. count the live table again (*after*);
4. restore the backup to a scratch table ``<table>-drill-<drill id>`` and wait until ``ACTIVE``;
5. count the scratch table (*restored*) and run the full reconciliation on it
   (``reconciliation.full_check(scratch)``: every account re-verified from its first entry);
6. always, whatever happened: delete the scratch table and the drill's backup;
7. record the result as a ``DRILL#<drill id>`` item in the live table, and fail loudly: the caller
   gets ``RestoreDrillFailed`` (the command exits 1; the scheduled function raises, publishes to
   the alert topic and emits ``RestoreDrillFailed``: see ``chalicelib/api/restore_drill_job.py``).

Writes go on during a drill, so the restored copy is compared with the backup's own moment, not
with the live table now. Both counts are consistent scans; the backup is taken between them, so an
item that cannot disappear is in the backup if *before* saw it and is seen by *after* if the
backup has it: for every item type, ``before <= restored <= after`` must hold exactly, however
busy the table. Items that can disappear are those carrying the TTL attribute ``expires_at``
(sessions, tokens, throttles, idempotency records, quotes, daily limits: DynamoDB's TTL or the
code deletes them); they are counted and reported but not bounded. Everything a ledger is made of
(accounts, entries, transactions, users, deposits, audit, reports) never carries ``expires_at``.

Point-in-time restore is the production recovery path (docs/runbooks/restore.md); the drill uses
an on-demand backup because it is what AWS Backup's daily plan also produces, and because moto
(the local stack, the tests) restores from a backup correctly but does not rewind a
point-in-time restore.

Time: the drill runs in one Lambda invocation (15 minutes at most; the function's timeout is
900 s). Restoring takes minutes for a small table and can take hours for a large one; when the
scratch table is not ``ACTIVE`` within the deadline the drill fails with that reason, and a scratch
table still being created cannot be deleted yet: the report names it (``scratch_deleted: false``)
and the alert asks for its deletion. Past that size the drill is run with ``python -m infra.drill``
from a machine, which has no such limit (docs/runbooks/restore.md, "Drill").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.adapters.dynamo import keys
from chalicelib.config import Settings

ITEM_TYPE = "restore_drill"
VOLATILE_ATTRIBUTE = "expires_at"  # the table's TTL attribute: such items may vanish at any time
UNTYPED = "<no item_type>"
POLL_SECONDS = 2.0
DEFAULT_DEADLINE_SECONDS = 12 * 60.0  # leaves the 15-minute Lambda time to clean up and report


class Report(Protocol):
    """What ``reconciliation.full_check`` returns."""

    status: str

    def as_dict(self) -> dict[str, Any]: ...


FullCheck = Callable[[str], Report]
Hook = Callable[[Any, str], None]


@dataclass
class TypeCount:
    before: int = 0
    restored: int = 0
    after: int = 0
    volatile_before: int = 0
    volatile_restored: int = 0
    volatile_after: int = 0


@dataclass
class DrillResult:
    drill_id: str
    table: str
    scratch_table: str
    started_at: str
    status: str = "failed"  # "passed" only once everything verified
    finished_at: str | None = None
    backup_arn: str | None = None
    restore_seconds: float | None = None
    counts: dict[str, TypeCount] = field(default_factory=dict)
    count_problems: list[str] = field(default_factory=list)
    reconciliation: dict[str, Any] | None = None
    error: str | None = None
    scratch_deleted: bool = False
    backup_deleted: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for a person: the verdict first, then why."""
        restored_in = "-" if self.restore_seconds is None else f"{self.restore_seconds} s"
        lines = [
            f"restore drill {self.drill_id}: {self.status.upper()}",
            f"  table {self.table} -> backup {self.backup_arn or '-'}",
            f"  -> scratch {self.scratch_table} (restored in {restored_in},"
            f" scratch deleted: {self.scratch_deleted}, backup deleted: {self.backup_deleted})",
        ]
        for item_type, count in sorted(self.counts.items()):
            lines.append(
                f"  {item_type:<20} before {count.before:>7}  restored {count.restored:>7}"
                f"  after {count.after:>7}  (+ expiring: {count.volatile_restored})"
            )
        recon = self.reconciliation or {}
        lines.append(
            f"  full reconciliation of the restored copy: {recon.get('status', '-')}"
            f" ({recon.get('transactions_checked', '-')} transactions,"
            f" {recon.get('accounts_checked', '-')} accounts,"
            f" {len(recon.get('mismatches', []))} mismatches)"
        )
        lines.extend(f"  problem: {problem}" for problem in self.count_problems)
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


class RestoreDrillFailed(Exception):
    """The drill did not prove the backup good; ``result`` says why (it is recorded too)."""

    def __init__(self, result: DrillResult) -> None:
        super().__init__(result.summary())
        self.result = result


class DrillError(Exception):
    """A step of the drill could not complete (timeout, AWS refusal): the drill fails with it."""


def drill_id_for(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def scratch_table_name(table: str, drill_id: str) -> str:
    """``<table>-drill-<drill id>``: the IAM policy allows the drill to delete only such tables."""
    return f"{table}-drill-{drill_id}"


def run_drill(
    client: Any,
    table: str,
    *,
    full_check: FullCheck | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    kms_key_arn: str | None = None,
    before_verify: Hook | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DrillResult:
    """Run the drill on ``table`` with a low-level DynamoDB ``client``; record, return the result.

    ``full_check`` defaults to ``chalicelib.services.reconciliation.full_check``. ``before_verify``
    runs on the restored scratch table before it is counted and checked (tests corrupt it there).

    Raises:
        RestoreDrillFailed: anything short of a verified restore, after the scratch table and the
            backup were deleted (where possible) and the result recorded.
    """
    started = now()
    drill_id = drill_id_for(started)
    result = DrillResult(
        drill_id=drill_id,
        table=table,
        scratch_table=scratch_table_name(table, drill_id),
        started_at=started.isoformat(),
    )
    give_up_at = time.monotonic() + deadline_seconds
    try:
        _verify(client, result, full_check, kms_key_arn, before_verify, sleep, give_up_at)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.scratch_deleted = _delete_scratch(client, result.scratch_table, sleep)
        result.backup_deleted = _delete_backup(client, result.backup_arn)
    if not result.scratch_deleted and result.error is None:
        result.error = f"the scratch table {result.scratch_table} could not be deleted"
    result.status = "passed" if _verified(result) else "failed"
    result.finished_at = now().isoformat()
    try:
        record(client, table, result)
    except Exception as exc:
        result.status = "failed"
        result.error = (result.error + "; " if result.error else "") + (
            f"not recorded: {type(exc).__name__}: {exc}"
        )
    if not result.passed:
        raise RestoreDrillFailed(result)
    return result


def _verified(result: DrillResult) -> bool:
    return (
        result.error is None
        and not result.count_problems
        and (result.reconciliation or {}).get("status") == "ok"
    )


def _verify(
    client: Any,
    result: DrillResult,
    full_check: FullCheck | None,
    kms_key_arn: str | None,
    before_verify: Hook | None,
    sleep: Callable[[float], None],
    give_up_at: float,
) -> None:
    before = count_items(client, result.table)
    backup = client.create_backup(TableName=result.table, BackupName=result.scratch_table)
    result.backup_arn = backup["BackupDetails"]["BackupArn"]
    _wait_for_backup(client, result.backup_arn, sleep, give_up_at)
    after = count_items(client, result.table)

    restore_started = time.monotonic()
    restore: dict[str, Any] = {
        "TargetTableName": result.scratch_table,
        "BackupArn": result.backup_arn,
    }
    if kms_key_arn:  # the copy on the table's own key, whatever a restore's default is
        restore["SSESpecificationOverride"] = {
            "Enabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": kms_key_arn,
        }
    client.restore_table_from_backup(**restore)
    _wait_for_table(client, result.scratch_table, sleep, give_up_at)
    result.restore_seconds = round(time.monotonic() - restore_started, 1)

    if before_verify is not None:
        before_verify(client, result.scratch_table)
    restored = count_items(client, result.scratch_table)
    result.counts, result.count_problems = compare_counts(before, restored, after)

    check = full_check or _default_full_check()
    result.reconciliation = check(result.scratch_table).as_dict()


def _default_full_check() -> FullCheck:
    from chalicelib.services.reconciliation import full_check

    return full_check


Counts = Mapping[tuple[str, bool], int]  # (item_type, expires) -> items


def count_items(client: Any, table: str) -> dict[tuple[str, bool], int]:
    """Items per ``(item_type, carries expires_at)``, by a consistent, paginated scan of keys and
    those two attributes only."""
    counts: dict[tuple[str, bool], int] = {}
    request: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "ProjectionExpression": "item_type, #ttl",
        "ExpressionAttributeNames": {"#ttl": VOLATILE_ATTRIBUTE},
    }
    while True:
        page = client.scan(**request)
        for item in page.get("Items", []):
            item_type = item.get("item_type", {}).get("S", UNTYPED)
            key = (item_type, VOLATILE_ATTRIBUTE in item)
            counts[key] = counts.get(key, 0) + 1
        if "LastEvaluatedKey" not in page:
            return counts
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def compare_counts(
    before: Counts, restored: Counts, after: Counts
) -> tuple[dict[str, TypeCount], list[str]]:
    """Per item type, the three counts; a problem wherever ``before <= restored <= after`` fails
    for items that cannot vanish."""
    table: dict[str, TypeCount] = {}
    for source, attr in ((before, "before"), (restored, "restored"), (after, "after")):
        for (item_type, volatile), n in source.items():
            count = table.setdefault(item_type, TypeCount())
            name = f"volatile_{attr}" if volatile else attr
            setattr(count, name, getattr(count, name) + n)
    problems = [
        f"{item_type}: {count.restored} restored, expected between {count.before} (before the "
        f"backup) and {count.after} (after it)"
        for item_type, count in sorted(table.items())
        if not count.before <= count.restored <= count.after
    ]
    return table, problems


def _wait_for_backup(
    client: Any, backup_arn: str, sleep: Callable[[float], None], give_up_at: float
) -> None:
    while True:
        details = client.describe_backup(BackupArn=backup_arn)["BackupDescription"]
        status = details["BackupDetails"]["BackupStatus"]
        if status == "AVAILABLE":
            return
        if status != "CREATING":
            raise DrillError(f"backup {backup_arn} is {status}")
        if time.monotonic() >= give_up_at:
            raise DrillError(f"backup {backup_arn} not AVAILABLE before the drill's deadline")
        sleep(POLL_SECONDS)


def _wait_for_table(
    client: Any, table: str, sleep: Callable[[float], None], give_up_at: float
) -> None:
    while True:
        status = client.describe_table(TableName=table)["Table"]["TableStatus"]
        if status == "ACTIVE":
            return
        if time.monotonic() >= give_up_at:
            raise DrillError(f"{table} still {status} at the drill's deadline")
        sleep(POLL_SECONDS)


def _delete_scratch(client: Any, scratch: str, sleep: Callable[[float], None]) -> bool:
    """Delete the scratch table; True once it is gone or never existed. Never raises."""
    try:
        status = client.describe_table(TableName=scratch)["Table"]["TableStatus"]
    except client.exceptions.ResourceNotFoundException:
        return True
    except Exception:
        return False
    if status in ("CREATING", "UPDATING"):
        return False  # cannot be deleted until restored: the report and the alert name it
    try:
        client.delete_table(TableName=scratch)
    except client.exceptions.ResourceNotFoundException:
        return True
    except Exception:
        return False
    return True


def _delete_backup(client: Any, backup_arn: str | None) -> bool:
    """Delete the drill's own on-demand backup (AWS Backup keeps the daily ones). Never raises."""
    if backup_arn is None:
        return True
    try:
        client.delete_backup(BackupArn=backup_arn)
    except Exception:
        return False
    return True


def record(client: Any, table: str, result: DrillResult) -> None:
    """Write the result to the live table as ``DRILL#<drill id>`` / ``DRILL``."""
    client.put_item(
        TableName=table,
        Item={
            "PK": {"S": keys.drill_pk(result.drill_id)},
            "SK": {"S": keys.DRILL_SK},
            "item_type": {"S": ITEM_TYPE},
            "status": {"S": result.status},
            "started_at": {"S": result.started_at},
            "finished_at": {"S": result.finished_at or ""},
            "scratch_table": {"S": result.scratch_table},
            "scratch_deleted": {"BOOL": result.scratch_deleted},
            "result": {"S": json.dumps(result.as_dict(), sort_keys=True, default=str)},
        },
    )


def dynamodb_client(settings: Settings) -> Any:
    """A low-level DynamoDB client for the configured region and endpoint (botocore only)."""
    import botocore.session

    return botocore.session.get_session().create_client(
        "dynamodb", region_name=settings.region, endpoint_url=settings.dynamodb_endpoint
    )


def alert(settings: Settings, topic_arn: str | None, result: DrillResult) -> bool:
    """Publish a failed drill to the alert topic; False when no topic is configured."""
    from chalicelib.adapters import alerts

    subject = f"ledger {settings.stage}: restore drill {result.drill_id} FAILED"
    return alerts.publish(topic_arn, settings.region, subject, result.summary())
