"""The restore drill on moto, by both production paths: point-in-time recovery, and the newest AWS
Backup recovery point; restore to a scratch table, verify, delete, record.

moto's point-in-time restore copies the table as it is at the call (it does not rewind), which
still meets the drill's bounds when nothing writes during it; moto has no AWS Backup restore jobs,
so ``InMemoryAwsBackup`` stands in for AWS Backup: its recovery points are moto on-demand backups
it takes itself, and its restore jobs restore them. The drill must pass on a healthy ledger even
while writes go on, and fail loudly, recorded, with the scratch table gone, when the restored copy
does not verify or a path cannot restore.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.adapters.aws_backup import (
    AwsBackupRecoveryPoints,
    RecoveryPoint,
    RestoreJob,
    backup_vault,
)
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.drill_tables import DynamoDrillTables
from chalicelib.api import restore_drill_job
from chalicelib.config import get_settings
from chalicelib.services import restore_drill as drill
from tests.support import LedgerWorld


def read_result(client: Any, table: str, drill_id: str) -> dict[str, Any] | None:
    """A recorded drill's result, as ``DrillResult.as_dict()`` gave it; None if none."""
    item = client.get_item(
        TableName=table,
        Key={"PK": {"S": keys.drill_pk(drill_id)}, "SK": {"S": keys.DRILL_SK}},
        ConsistentRead=True,
    ).get("Item")
    return None if item is None else json.loads(item["result"]["S"])


def run_drill(client: Any, table: str, **options: Any) -> drill.DrillResult:
    """The drill on DynamoDB through ``client`` (moto's, or a test's wrapper of it); a
    ``before_verify`` hook gets that client and the scratch table's name."""
    hook = options.pop("before_verify", None)
    if hook is not None:
        options["before_verify"] = lambda scratch: hook(client, scratch)
    return drill.run_drill(DynamoDrillTables(client), table, **options)


START = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)  # a Sunday of ISO week 47 (odd)
EVEN_WEEK = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)  # the next Sunday, ISO week 48
VAULT = "ledger-test"
ROLE = "arn:aws:iam::123456789012:role/ledger-test-BackupRole"
KEY = "arn:aws:kms:us-east-1:123456789012:key/ledger-test"


@pytest.fixture
def client(table: str) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def busy(world: LedgerWorld) -> LedgerWorld:
    """A small ledger with history: funded accounts, settled and pending transfers."""
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 10_000)
    world.fund(bob, 2_500)
    world.transfer(alice, bob, 1_200)
    world.transfer(bob, alice, 300)
    world.transfer(alice, bob, 50, pending=True)
    return world


def tables(client: Any) -> list[str]:
    return client.list_tables()["TableNames"]


def first_key(client: Any, table: str, item_type: str) -> dict[str, Any]:
    items = client.scan(TableName=table, ConsistentRead=True)["Items"]
    item = next(i for i in items if i["item_type"]["S"] == item_type)
    return {"PK": item["PK"], "SK": item["SK"]}


@dataclass
class Spy:
    """A DynamoDB client that remembers every call made through it, with its arguments."""

    client: Any
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return attribute(**kwargs)

        return call

    def called(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]


@dataclass
class InMemoryAwsBackup:
    """AWS Backup for the tests (``RecoveryPoints``): ``take`` makes a recovery point of a table
    from a moto on-demand backup (AWS Backup's daily plan, not the drill, takes them); a restore
    job plays ``job_statuses`` and, unless one of them is FAILED or ABORTED, restores the point
    with ``RestoreTableFromBackup``."""

    client: Any
    job_statuses: list[str] = field(default_factory=lambda: ["PENDING", "RUNNING", "COMPLETED"])
    points: dict[str, list[RecoveryPoint]] = field(default_factory=dict)  # table ARN -> points
    restores: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0

    def take(
        self,
        table: str,
        created_at: datetime,
        *,
        vault: str = VAULT,
        status: str = "COMPLETED",
    ) -> RecoveryPoint:
        table_arn = self.client.describe_table(TableName=table)["Table"]["TableArn"]
        backup = self.client.create_backup(TableName=table, BackupName=f"{table}-daily")
        point = RecoveryPoint(
            arn=backup["BackupDetails"]["BackupArn"],
            vault=vault,
            created_at=created_at,
            status=status,
        )
        self.points.setdefault(table_arn, []).append(point)
        return point

    def for_resource(self, resource_arn: str) -> list[RecoveryPoint]:
        return list(self.points.get(resource_arn, []))

    def start_restore(
        self, recovery_point_arn: str, target_table: str, role_arn: str, kms_key_arn: str | None
    ) -> str:
        self.restores.append(
            {
                "recovery_point_arn": recovery_point_arn,
                "target_table": target_table,
                "role_arn": role_arn,
                "kms_key_arn": kms_key_arn,
            }
        )
        if not {"FAILED", "ABORTED"} & set(self.job_statuses):
            self.client.restore_table_from_backup(
                TargetTableName=target_table, BackupArn=recovery_point_arn
            )
        return f"restore-job-{len(self.restores)}"

    def restore_job(self, job_id: str) -> RestoreJob:
        status = self.job_statuses[min(self.polls, len(self.job_statuses) - 1)]
        self.polls += 1
        message = "Access denied to the KMS key" if status == "FAILED" else None
        return RestoreJob(job_id=job_id, status=status, message=message)


@pytest.fixture
def aws_backup(client: Any) -> InMemoryAwsBackup:
    return InMemoryAwsBackup(client)


def vault_of(aws_backup: InMemoryAwsBackup, role: str | None = ROLE) -> drill.BackupVault:
    return drill.BackupVault(name=VAULT, restore_role_arn=role, recovery_points=aws_backup)


def no_sleep(_: float) -> None:
    return None


# -- which path ---------------------------------------------------------------------------------
def test_even_weeks_restore_to_a_point_in_time_and_odd_weeks_from_aws_backup(aws_backup):
    vault = vault_of(aws_backup)

    assert drill.choose_method(None, EVEN_WEEK, vault) == ("pitr", "ISO week 48 is even")
    assert drill.choose_method(None, START, vault) == ("backup", "ISO week 47 is odd")
    assert drill.choose_method("pitr", START, vault) == ("pitr", "asked for")
    assert drill.choose_method("backup", EVEN_WEEK, vault) == ("backup", "asked for")


def test_without_a_vault_the_drill_restores_to_a_point_in_time_and_says_why():
    method, reason = drill.choose_method(None, START, None)

    assert method == "pitr"
    assert "BACKUP_VAULT_NAME is not set" in reason


def test_an_unknown_method_is_refused_before_anything_is_done(client, table):
    with pytest.raises(ValueError, match="pitr, backup"):
        run_drill(client, table, method="snapshot", now=lambda: START)

    assert read_result(client, table, drill.drill_id_for(START)) is None


def test_the_vault_comes_from_the_settings_and_makes_no_aws_client_yet(monkeypatch):
    monkeypatch.setenv("BACKUP_VAULT_NAME", VAULT)
    monkeypatch.setenv("BACKUP_RESTORE_ROLE_ARN", ROLE)
    get_settings.cache_clear()
    try:
        vault = backup_vault(get_settings())
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert vault is not None
    assert (vault.name, vault.restore_role_arn) == (VAULT, ROLE)
    assert isinstance(vault.recovery_points, AwsBackupRecoveryPoints)
    assert vault.recovery_points._client is None  # boto3's backup client on first use only
    assert backup_vault(get_settings()) is None  # no BACKUP_VAULT_NAME: no vault


# -- point-in-time recovery ---------------------------------------------------------------------
def test_a_healthy_ledger_restores_to_a_point_in_time_verifies_and_leaves_nothing_behind(
    busy, client, table
):
    result = run_drill(client, table, now=lambda: START)

    assert result.passed, result.summary()
    assert result.method == "pitr"
    assert "BACKUP_VAULT_NAME is not set" in result.method_reason
    assert result.point_in_time == START.isoformat()
    assert result.reconciliation is not None
    assert result.reconciliation["status"] == "ok"
    assert result.count_problems == []
    for item_type in ("account", "entry", "transaction"):
        count = result.counts[item_type]
        assert count.before == count.restored == count.after > 0, item_type
    assert result.scratch_table == f"{table}-drill-20261122T030000Z"
    assert result.scratch_table not in tables(client)
    assert result.scratch_deleted
    assert client.list_backups(TableName=table)["BackupSummaries"] == []
    recorded = read_result(client, table, "20261122T030000Z")
    assert recorded is not None
    assert recorded["status"] == "passed"
    assert recorded["method"] == "pitr"
    assert "point-in-time recovery" in result.summary()


def test_the_point_in_time_restore_asks_for_T_on_the_table_key(busy, client, table):
    spy = Spy(client)

    result = run_drill(spy, table, now=lambda: EVEN_WEEK, kms_key_arn=KEY)

    assert result.passed, result.summary()
    assert result.method == "pitr"
    (restore,) = spy.called("restore_table_to_point_in_time")
    assert restore == {
        "SourceTableName": table,
        "TargetTableName": result.scratch_table,
        "RestoreDateTime": EVEN_WEEK,
        "SSESpecificationOverride": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": KEY},
    }
    on_the_live_table = [
        name
        for name, kwargs in spy.calls
        if table in (kwargs.get("TableName"), kwargs.get("SourceTableName"))
        and name in ("scan", "describe_continuous_backups", "restore_table_to_point_in_time")
    ]
    steps = [name for name, _ in itertools.groupby(on_the_live_table)]  # a scan has pages
    assert steps == [
        "scan",
        "describe_continuous_backups",
        "scan",
        "restore_table_to_point_in_time",
    ]


@dataclass
class StuckPitr:
    """A client whose table's point-in-time recovery never gets past ``latest``."""

    client: Any
    latest: datetime
    restores: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def describe_continuous_backups(self, **kwargs: Any) -> Any:
        answer = self.client.describe_continuous_backups(**kwargs)
        pitr = answer["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        pitr["LatestRestorableDateTime"] = self.latest
        return answer

    def restore_table_to_point_in_time(self, **kwargs: Any) -> Any:
        self.restores += 1
        return self.client.restore_table_to_point_in_time(**kwargs)


def test_pitr_that_never_reaches_T_fails_at_the_deadline_with_no_scratch_table_left(
    busy, client, table
):
    stuck = StuckPitr(client, latest=START - timedelta(minutes=10))

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(stuck, table, now=lambda: START, deadline_seconds=0, sleep=no_sleep)

    result = failed.value.result
    assert "had not reached" in (result.error or "")
    assert "deadline" in (result.error or "")
    assert stuck.restores == 0
    assert result.scratch_deleted is True
    assert result.scratch_table not in tables(client)
    recorded = read_result(client, table, result.drill_id)
    assert recorded is not None
    assert recorded["status"] == "failed"


def test_a_table_without_point_in_time_recovery_fails_the_drill(busy, client, table):
    client.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(client, table, now=lambda: START, sleep=no_sleep)

    assert f"point-in-time recovery of {table} is DISABLED" in (failed.value.result.error or "")
    assert failed.value.result.scratch_table not in tables(client)


def test_a_missing_entry_in_the_restored_copy_fails_the_drill_loudly(busy, client, table):
    def lose_an_entry(scratch_client: Any, scratch: str) -> None:
        scratch_client.delete_item(TableName=scratch, Key=first_key(client, scratch, "entry"))

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(client, table, now=lambda: START, before_verify=lose_an_entry)

    result = failed.value.result
    assert not result.passed
    assert any(problem.startswith("entry:") for problem in result.count_problems)
    assert result.reconciliation is not None
    assert result.reconciliation["status"] == "mismatch"
    assert result.scratch_table not in tables(client)
    assert "FAILED" in str(failed.value)
    recorded = read_result(client, table, result.drill_id)
    assert recorded is not None
    assert recorded["status"] == "failed"


def test_a_balance_that_disagrees_with_its_entries_fails_although_counts_match(busy, client, table):
    def corrupt_a_balance(scratch_client: Any, scratch: str) -> None:
        scratch_client.update_item(
            TableName=scratch,
            Key=first_key(client, scratch, "account"),
            UpdateExpression="SET posted = posted + :one, available = available + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(client, table, now=lambda: START, before_verify=corrupt_a_balance)

    result = failed.value.result
    assert result.count_problems == []
    assert result.reconciliation is not None
    assert result.reconciliation["status"] == "mismatch"
    assert result.scratch_table not in tables(client)


@dataclass
class WritesWhileWaiting:
    """A DynamoDB client whose ledger moves money while the drill waits for point-in-time
    recovery to reach ``T``: after *before* was counted, before *after* is."""

    client: Any
    world: LedgerWorld
    source: str
    target: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def describe_continuous_backups(self, **kwargs: Any) -> Any:
        self.world.transfer(self.source, self.target, 10)
        return self.client.describe_continuous_backups(**kwargs)


def test_writes_while_waiting_for_T_do_not_fail_the_point_in_time_drill(world, client, table):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 1_000)
    busy_client = WritesWhileWaiting(client, world, alice, bob)

    result = run_drill(busy_client, table, now=lambda: START)

    assert result.passed, result.summary()
    transactions = result.counts["transaction"]
    # moto restores the table as it is at the call, so restored == after; DynamoDB would restore
    # T, between the two
    assert transactions.before < transactions.restored <= transactions.after


@dataclass
class SlowRestore:
    """A client for which the scratch table never leaves CREATING."""

    client: Any
    scratch_prefix: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def describe_table(self, **kwargs: Any) -> Any:
        answer = self.client.describe_table(**kwargs)
        if kwargs["TableName"].startswith(self.scratch_prefix):
            answer["Table"]["TableStatus"] = "CREATING"
        return answer


def test_a_restore_slower_than_the_deadline_fails_and_names_the_table_left(busy, client, table):
    slow = SlowRestore(client, f"{table}-drill-")

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(slow, table, now=lambda: START, deadline_seconds=0, sleep=no_sleep)

    result = failed.value.result
    assert "deadline" in (result.error or "")
    assert result.scratch_deleted is False  # still "creating": the report and alert name it
    assert result.scratch_table in str(failed.value)
    client.delete_table(TableName=result.scratch_table)


# -- the newest AWS Backup recovery point -------------------------------------------------------
def test_the_newest_recovery_point_restores_verifies_and_is_recorded(
    busy, client, table, aws_backup
):
    aws_backup.take(table, START - timedelta(hours=47))
    newest = aws_backup.take(table, START - timedelta(hours=23))
    aws_backup.take(table, START - timedelta(hours=1), vault="another-vault")
    aws_backup.take(table, START - timedelta(minutes=30), status="PARTIAL")

    result = run_drill(
        client, table, vault=vault_of(aws_backup), now=lambda: START, kms_key_arn=KEY
    )

    assert result.passed, result.summary()
    assert (result.method, result.method_reason) == ("backup", "ISO week 47 is odd")
    assert result.recovery_point_arn == newest.arn
    assert result.recovery_point_created_at == (START - timedelta(hours=23)).isoformat()
    assert result.restore_job_status == "COMPLETED"
    assert aws_backup.restores == [
        {
            "recovery_point_arn": newest.arn,
            "target_table": result.scratch_table,
            "role_arn": ROLE,
            "kms_key_arn": KEY,
        }
    ]
    for item_type in ("account", "entry", "transaction"):
        count = result.counts[item_type]
        assert count.before is None, item_type  # a recovery point is from before the drill
        assert 0 < count.restored == count.after, item_type
    assert result.reconciliation is not None
    assert result.reconciliation["status"] == "ok"
    assert result.scratch_table not in tables(client)
    assert result.scratch_deleted
    recorded = read_result(client, table, result.drill_id)
    assert recorded is not None
    assert recorded["method"] == "backup"
    assert recorded["recovery_point_arn"] == newest.arn
    assert recorded["recovery_point_created_at"] == result.recovery_point_created_at
    assert newest.arn in result.summary()


def test_writes_after_the_recovery_point_do_not_fail_the_drill(world, client, table, aws_backup):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 1_000)
    aws_backup.take(table, START - timedelta(hours=23))
    world.transfer(alice, bob, 10)

    result = run_drill(client, table, vault=vault_of(aws_backup), now=lambda: START)

    assert result.passed, result.summary()
    transactions = result.counts["transaction"]
    assert transactions.restored < transactions.after


def test_more_entries_than_the_live_table_has_fail_the_backup_drill(
    busy, client, table, aws_backup
):
    aws_backup.take(table, START - timedelta(hours=23))

    def invent_an_entry(scratch_client: Any, scratch: str) -> None:
        key = first_key(client, scratch, "entry")
        item = scratch_client.get_item(TableName=scratch, Key=key)["Item"]
        scratch_client.put_item(TableName=scratch, Item={**item, "SK": {"S": "invented"}})

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(
            client,
            table,
            vault=vault_of(aws_backup),
            now=lambda: START,
            before_verify=invent_an_entry,
        )

    result = failed.value.result
    assert any(p.startswith("entry:") and "expected at most" in p for p in result.count_problems)
    assert result.scratch_table not in tables(client)


def test_no_recovery_point_in_the_vault_fails_the_drill(busy, client, table, aws_backup):
    aws_backup.take(table, START - timedelta(hours=2), vault="another-vault")

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(client, table, vault=vault_of(aws_backup), now=lambda: START)

    result = failed.value.result
    assert result.method == "backup"
    assert "no COMPLETED recovery point" in (result.error or "")
    assert VAULT in (result.error or "")
    assert aws_backup.restores == []
    assert result.scratch_deleted
    recorded = read_result(client, table, result.drill_id)
    assert recorded is not None
    assert recorded["status"] == "failed"


def test_a_recovery_point_older_than_26_hours_fails_the_drill(busy, client, table, aws_backup):
    stale = aws_backup.take(table, START - timedelta(hours=26, minutes=1))

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(client, table, vault=vault_of(aws_backup), now=lambda: START)

    result = failed.value.result
    assert "26.0 hours old" in (result.error or "")
    assert "missed a day" in (result.error or "")
    assert result.recovery_point_arn == stale.arn
    assert aws_backup.restores == []
    assert result.scratch_table not in tables(client)


def test_a_failed_restore_job_fails_the_drill(busy, client, table, aws_backup):
    aws_backup.take(table, START - timedelta(hours=23))
    aws_backup.job_statuses = ["RUNNING", "FAILED"]

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(client, table, vault=vault_of(aws_backup), now=lambda: START, sleep=no_sleep)

    result = failed.value.result
    assert result.restore_job_status == "FAILED"
    assert "restore-job-1 FAILED: Access denied to the KMS key" in (result.error or "")
    assert result.scratch_deleted
    assert result.scratch_table not in tables(client)
    assert "restore job restore-job-1: FAILED" in str(failed.value)


def test_a_restore_job_still_running_at_the_deadline_leaves_the_scratch_table_to_delete(
    busy, client, table, aws_backup
):
    aws_backup.take(table, START - timedelta(hours=23))
    aws_backup.job_statuses = ["RUNNING"]

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        run_drill(
            client,
            table,
            vault=vault_of(aws_backup),
            now=lambda: START,
            deadline_seconds=0,
            sleep=no_sleep,
        )

    result = failed.value.result
    assert "still RUNNING at the drill's deadline" in (result.error or "")
    assert result.scratch_deleted is False  # the job may yet create it: the alert names it
    assert result.scratch_table in str(failed.value)


def test_the_backup_path_without_its_settings_fails_and_says_which(busy, client, table, aws_backup):
    with pytest.raises(drill.RestoreDrillFailed) as no_vault:
        run_drill(client, table, method="backup", now=lambda: START)
    with pytest.raises(drill.RestoreDrillFailed) as no_role:
        run_drill(
            client, table, method="backup", vault=vault_of(aws_backup, role=None), now=lambda: START
        )

    assert "BACKUP_VAULT_NAME" in (no_vault.value.result.error or "")
    assert "BACKUP_RESTORE_ROLE_ARN is not set" in (no_role.value.result.error or "")
    assert aws_backup.restores == []


def test_the_drill_never_creates_or_deletes_a_backup(busy, client, table, aws_backup):
    aws_backup.take(table, EVEN_WEEK - timedelta(hours=23))  # AWS Backup's, not the drill's
    backups_before = client.list_backups(TableName=table)["BackupSummaries"]
    spy = Spy(client)

    by_pitr = run_drill(spy, table, method="pitr", now=lambda: START)
    by_backup = run_drill(
        spy, table, vault=vault_of(aws_backup), method="backup", now=lambda: EVEN_WEEK
    )

    assert by_pitr.passed, by_pitr.summary()
    assert by_backup.passed, by_backup.summary()
    called = {name for name, _ in spy.calls}
    assert not called & {
        "create_backup",
        "delete_backup",
        "describe_backup",
        "restore_table_from_backup",
    }
    assert client.list_backups(TableName=table)["BackupSummaries"] == backups_before


# -- counting -----------------------------------------------------------------------------------
def test_counts_bound_durable_items_and_only_report_expiring_ones():
    before = {("entry", False): 4, ("session", True): 3}
    after = {("entry", False): 6, ("session", True): 1}

    counts, problems = drill.compare_counts(before, {("entry", False): 5}, after)
    assert problems == []
    assert counts["session"].volatile_before == 3
    assert counts["session"].volatile_restored == 0

    _, lost = drill.compare_counts(before, {("entry", False): 3}, after)
    _, invented = drill.compare_counts(before, {("entry", False): 7}, after)
    assert lost == [
        "entry: 3 restored, expected between 4 (before the restore point) and 6 (after it)"
    ]
    assert invented
    assert invented[0].startswith("entry: 7 restored")


def test_a_recovery_point_is_bounded_by_the_count_after_it_only():
    after = {("entry", False): 6, ("session", True): 1}

    counts, problems = drill.compare_counts(
        None, {("entry", False): 2, ("session", True): 4}, after
    )
    _, invented = drill.compare_counts(None, {("entry", False): 7}, after)

    assert problems == []  # fewer entries than now: the recovery point is from the past
    assert counts["entry"].before is None
    assert counts["session"].volatile_before is None
    assert invented == ["entry: 7 restored, expected at most 6 (the live table after the restore)"]


# -- the weekly job -----------------------------------------------------------------------------
@pytest.fixture
def alerts(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The alert topic, with a queue subscribed to read what was published."""
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="ledger-test-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)

    def received() -> list[str]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        return [m["Body"] for m in messages.get("Messages", [])]

    return received


def test_the_weekly_job_passes_on_a_healthy_ledger(busy, alerts, capsys):
    outcome = restore_drill_job.run_scheduled_drill(deadline_seconds=600)

    assert outcome["status"] == "passed"
    assert outcome["method"] == "pitr"  # no BACKUP_VAULT_NAME in the tests
    assert alerts() == []
    assert '"RestoreDrillFailed":[0.0]' in capsys.readouterr().out


def test_the_weekly_job_alerts_emits_the_metric_and_raises_when_it_fails(
    busy, alerts, capsys, monkeypatch
):
    monkeypatch.setenv("TABLE_NAME", "ledger-test-missing")  # nothing to restore
    get_settings.cache_clear()

    with pytest.raises(drill.RestoreDrillFailed):
        restore_drill_job.run_scheduled_drill(deadline_seconds=600)

    (message,) = alerts()
    assert "FAILED" in message
    assert "ledger-test-missing" in message
    assert "method: point-in-time recovery" in message
    assert '"RestoreDrillFailed":[1.0]' in capsys.readouterr().out


def test_the_report_item_uses_the_drill_key(busy, client, table):
    result = run_drill(client, table, now=lambda: START)

    item = client.get_item(
        TableName=table,
        Key={"PK": {"S": keys.drill_pk(result.drill_id)}, "SK": {"S": keys.DRILL_SK}},
    )["Item"]
    assert item["item_type"]["S"] == "restore_drill"
    assert item["status"]["S"] == "passed"
    assert item["method"]["S"] == "pitr"
    assert json.loads(item["result"]["S"])["scratch_table"] == result.scratch_table


def test_the_drill_is_scheduled_weekly():
    import app as chalice_app

    sources = {
        s.name: s for s in chalice_app.app.event_sources if hasattr(s, "schedule_expression")
    }

    assert "restore_drill" in sources
    assert sources["restore_drill"].schedule_expression.to_string() == "cron(0 3 ? * SUN *)"


@dataclass
class LambdaContext:
    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_scheduled_handler_takes_an_eventbridge_event_and_its_time_budget(busy, alerts):
    event = {
        "version": "0",
        "id": "evt",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-22T03:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }

    outcome = restore_drill_job.restore_drill(event, LambdaContext(remaining_ms=900_000))

    assert outcome["status"] == "passed"
