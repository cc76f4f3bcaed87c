"""The restore drill on moto: backup, restore to a scratch table, verify, delete, record.

moto restores from an on-demand backup faithfully (its point-in-time restore does not rewind, so
the drill does not use it). The drill must pass on a healthy ledger even while writes go on, and
fail loudly, recorded, with the scratch table gone, when the restored copy does not verify.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from chalicelib.adapters.dynamo import keys
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


START = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


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


def test_a_healthy_ledger_restores_verifies_and_leaves_nothing_behind(busy, client, table):
    result = drill.run_drill(client, table, now=lambda: START)

    assert result.passed, result.summary()
    assert result.reconciliation is not None
    assert result.reconciliation["status"] == "ok"
    assert result.count_problems == []
    for item_type in ("account", "entry", "transaction"):
        count = result.counts[item_type]
        assert count.before == count.restored == count.after > 0, item_type
    assert result.scratch_table == f"{table}-drill-20261122T030000Z"
    assert result.scratch_table not in tables(client)
    assert result.scratch_deleted
    assert result.backup_deleted
    assert client.list_backups(TableName=table)["BackupSummaries"] == []
    recorded = read_result(client, table, "20261122T030000Z")
    assert recorded is not None
    assert recorded["status"] == "passed"


def test_a_missing_entry_in_the_restored_copy_fails_the_drill_loudly(busy, client, table):
    def lose_an_entry(scratch_client: Any, scratch: str) -> None:
        scratch_client.delete_item(TableName=scratch, Key=first_key(client, scratch, "entry"))

    with pytest.raises(drill.RestoreDrillFailed) as failed:
        drill.run_drill(client, table, now=lambda: START, before_verify=lose_an_entry)

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
        drill.run_drill(client, table, now=lambda: START, before_verify=corrupt_a_balance)

    result = failed.value.result
    assert result.count_problems == []
    assert result.reconciliation is not None
    assert result.reconciliation["status"] == "mismatch"
    assert result.scratch_table not in tables(client)


@dataclass
class WritesDuringTheDrill:
    """A DynamoDB client whose ``create_backup`` has the ledger move money just before and just
    after the backup is taken: the live table never matches the backup."""

    client: Any
    world: LedgerWorld
    source: str
    target: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def create_backup(self, **kwargs: Any) -> Any:
        self.world.transfer(self.source, self.target, 10)
        backup = self.client.create_backup(**kwargs)
        self.world.transfer(self.source, self.target, 20)
        return backup


def test_writes_during_the_drill_do_not_fail_it(world, client, table):
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 1_000)
    busy_client = WritesDuringTheDrill(client, world, alice, bob)

    result = drill.run_drill(busy_client, table, now=lambda: START)

    assert result.passed, result.summary()
    transactions = result.counts["transaction"]
    assert transactions.before < transactions.restored < transactions.after


def test_counts_bound_durable_items_and_only_report_expiring_ones():
    before = {("entry", False): 4, ("session", True): 3}
    after = {("entry", False): 6, ("session", True): 1}

    counts, problems = drill.compare_counts(before, {("entry", False): 5}, after)
    assert problems == []
    assert counts["session"].volatile_before == 3
    assert counts["session"].volatile_restored == 0

    _, lost = drill.compare_counts(before, {("entry", False): 3}, after)
    _, invented = drill.compare_counts(before, {("entry", False): 7}, after)
    assert lost == ["entry: 3 restored, expected between 4 (before the backup) and 6 (after it)"]
    assert invented
    assert invented[0].startswith("entry: 7 restored")


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
        drill.run_drill(slow, table, now=lambda: START, deadline_seconds=0, sleep=lambda _: None)

    result = failed.value.result
    assert "deadline" in (result.error or "")
    assert result.scratch_deleted is False  # still "creating": the report and alert name it
    assert result.scratch_table in str(failed.value)
    assert result.backup_deleted is True
    client.delete_table(TableName=result.scratch_table)


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
    assert alerts() == []
    assert '"RestoreDrillFailed":[0.0]' in capsys.readouterr().out


def test_the_weekly_job_alerts_emits_the_metric_and_raises_when_it_fails(
    busy, alerts, capsys, monkeypatch
):
    monkeypatch.setenv("TABLE_NAME", "ledger-test-missing")  # nothing to back up
    get_settings.cache_clear()

    with pytest.raises(drill.RestoreDrillFailed):
        restore_drill_job.run_scheduled_drill(deadline_seconds=600)

    (message,) = alerts()
    assert "FAILED" in message
    assert "ledger-test-missing" in message
    assert '"RestoreDrillFailed":[1.0]' in capsys.readouterr().out


def test_the_report_item_uses_the_drill_key(busy, client, table):
    result = drill.run_drill(client, table, now=lambda: START)

    item = client.get_item(
        TableName=table,
        Key={"PK": {"S": keys.drill_pk(result.drill_id)}, "SK": {"S": keys.DRILL_SK}},
    )["Item"]
    assert item["item_type"]["S"] == "restore_drill"
    assert item["status"]["S"] == "passed"
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
