"""The restore drill's AWS Backup adapter against botocore's Stubber: the requests it makes and
how it reads the answers (moto has no AWS Backup restore jobs; no request leaves the process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.adapters.aws_backup import AwsBackupRecoveryPoints, RecoveryPoint, RestoreJob

TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/ledger-prod"
POINT = f"{TABLE_ARN}/backup/01764648000000-abcdef12"
ROLE = "arn:aws:iam::123456789012:role/ledger-prod-BackupRole"
KEY = "arn:aws:kms:us-east-1:123456789012:key/ledger-prod"
TAKEN = datetime(2026, 11, 21, 4, 12, tzinfo=UTC)


@pytest.fixture
def stubbed() -> Iterator[tuple[AwsBackupRecoveryPoints, Stubber]]:
    points = AwsBackupRecoveryPoints("us-east-1")
    points._client = boto3.client("backup", region_name="us-east-1")
    with Stubber(points._client) as stubber:
        yield points, stubber
        stubber.assert_no_pending_responses()


def test_the_client_is_made_on_first_use_only():
    assert AwsBackupRecoveryPoints("us-east-1")._client is None


def test_recovery_points_are_read_from_every_page(stubbed):
    points, stubber = stubbed
    stubber.add_response(
        "list_recovery_points_by_resource",
        {
            "RecoveryPoints": [
                {
                    "RecoveryPointArn": POINT,
                    "BackupVaultName": "ledger-prod",
                    "CreationDate": TAKEN,
                    "Status": "COMPLETED",
                }
            ],
            "NextToken": "page-2",
        },
        {"ResourceArn": TABLE_ARN},
    )
    stubber.add_response(
        "list_recovery_points_by_resource",
        {
            "RecoveryPoints": [
                {
                    "RecoveryPointArn": f"{POINT}-2",
                    "BackupVaultName": "ledger-prod",
                    "CreationDate": TAKEN,
                    "Status": "PARTIAL",
                }
            ]
        },
        {"ResourceArn": TABLE_ARN, "NextToken": "page-2"},
    )

    assert points.for_resource(TABLE_ARN) == [
        RecoveryPoint(arn=POINT, vault="ledger-prod", created_at=TAKEN, status="COMPLETED"),
        RecoveryPoint(arn=f"{POINT}-2", vault="ledger-prod", created_at=TAKEN, status="PARTIAL"),
    ]


def test_a_restore_job_restores_to_the_scratch_table_on_the_table_key(stubbed):
    points, stubber = stubbed
    scratch = "ledger-prod-drill-20261122T030000Z"
    stubber.add_response(
        "start_restore_job",
        {"RestoreJobId": "job-1"},
        {
            "RecoveryPointArn": POINT,
            "IamRoleArn": ROLE,
            "ResourceType": "DynamoDB",
            "Metadata": {
                "TargetTableName": scratch,
                "EncryptionType": "KMS",
                "kmsMasterKeyArn": KEY,
            },
            "IdempotencyToken": scratch,
        },
    )

    assert points.start_restore(POINT, scratch, ROLE, KEY) == "job-1"


def test_a_restore_job_without_a_key_names_only_the_table(stubbed):
    points, stubber = stubbed
    stubber.add_response(
        "start_restore_job",
        {"RestoreJobId": "job-2"},
        {
            "RecoveryPointArn": POINT,
            "IamRoleArn": ROLE,
            "ResourceType": "DynamoDB",
            "Metadata": {"TargetTableName": "scratch"},
            "IdempotencyToken": "scratch",
        },
    )

    assert points.start_restore(POINT, "scratch", ROLE, None) == "job-2"


def test_a_restore_job_is_read_with_its_status_and_message(stubbed):
    points, stubber = stubbed
    stubber.add_response(
        "describe_restore_job",
        {"RestoreJobId": "job-1", "Status": "FAILED", "StatusMessage": "Access denied"},
        {"RestoreJobId": "job-1"},
    )
    stubber.add_response(
        "describe_restore_job",
        {"RestoreJobId": "job-1", "Status": "RUNNING"},
        {"RestoreJobId": "job-1"},
    )

    assert points.restore_job("job-1") == RestoreJob("job-1", "FAILED", "Access denied")
    assert points.restore_job("job-1") == RestoreJob("job-1", "RUNNING", None)
