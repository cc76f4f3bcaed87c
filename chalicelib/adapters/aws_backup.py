"""AWS Backup as the restore drill uses it: the recovery points of the table, and a restore job
of one of them into a new table.

``RecoveryPoints`` is what the drill (``chalicelib/services/restore_drill.py``) talks to, in the
``BackupVault`` that ``backup_vault(settings)`` builds; ``AwsBackupRecoveryPoints`` implements it
with boto3's ``backup`` client, which is imported and created on first use only: the drill runs
once a week, and no other function needs AWS Backup. moto has no AWS Backup restore jobs; the
drill's tests use an in-memory implementation that restores into moto's DynamoDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chalicelib.config import Settings


@dataclass(frozen=True)
class RecoveryPoint:
    """One entry of ``ListRecoveryPointsByResource``."""

    arn: str
    vault: str
    created_at: datetime  # aware
    status: str  # COMPLETED, PARTIAL, CREATING, EXPIRED, ...


@dataclass(frozen=True)
class RestoreJob:
    """``DescribeRestoreJob``: PENDING, RUNNING, then COMPLETED, ABORTED or FAILED."""

    job_id: str
    status: str
    message: str | None = None


class RecoveryPoints(Protocol):
    def for_resource(self, resource_arn: str) -> list[RecoveryPoint]: ...

    def start_restore(
        self, recovery_point_arn: str, target_table: str, role_arn: str, kms_key_arn: str | None
    ) -> str:
        """Start restoring the recovery point to a new DynamoDB table; the restore job's id."""
        ...

    def restore_job(self, job_id: str) -> RestoreJob: ...


class AwsBackupRecoveryPoints:
    def __init__(self, region: str) -> None:
        self.region = region
        self._client: Any = None

    def _backup(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("backup", region_name=self.region)
        return self._client

    def for_resource(self, resource_arn: str) -> list[RecoveryPoint]:
        pages = (
            self._backup()
            .get_paginator("list_recovery_points_by_resource")
            .paginate(ResourceArn=resource_arn)
        )
        return [
            RecoveryPoint(
                arn=point["RecoveryPointArn"],
                vault=point.get("BackupVaultName", ""),
                created_at=point["CreationDate"],
                status=point.get("Status", ""),
            )
            for page in pages
            for point in page.get("RecoveryPoints", [])
        ]

    def start_restore(
        self, recovery_point_arn: str, target_table: str, role_arn: str, kms_key_arn: str | None
    ) -> str:
        # AWS Backup's DynamoDB restore metadata (not case-sensitive): without encryption keys a
        # recovery point taken by DynamoDB is restored on an AWS-owned key, not the table's.
        metadata = {"TargetTableName": target_table}
        if kms_key_arn:
            metadata.update({"EncryptionType": "KMS", "kmsMasterKeyArn": kms_key_arn})
        answer = self._backup().start_restore_job(
            RecoveryPointArn=recovery_point_arn,
            IamRoleArn=role_arn,
            ResourceType="DynamoDB",
            Metadata=metadata,
            IdempotencyToken=target_table,  # a retried call starts no second job
        )
        return answer["RestoreJobId"]

    def restore_job(self, job_id: str) -> RestoreJob:
        answer = self._backup().describe_restore_job(RestoreJobId=job_id)
        return RestoreJob(
            job_id=job_id, status=answer["Status"], message=answer.get("StatusMessage") or None
        )


@dataclass(frozen=True)
class BackupVault:
    """Where AWS Backup keeps the table's recovery points, and how the drill restores one."""

    name: str  # BACKUP_VAULT_NAME
    restore_role_arn: str | None  # BACKUP_RESTORE_ROLE_ARN: the role AWS Backup restores with
    recovery_points: RecoveryPoints


def backup_vault(settings: Settings) -> BackupVault | None:
    """The configured AWS Backup vault (``BACKUP_VAULT_NAME``); None when there is none. No AWS
    client is made until the backup path uses it."""
    if not settings.backup_vault_name:
        return None
    return BackupVault(
        name=settings.backup_vault_name,
        restore_role_arn=settings.backup_restore_role_arn,
        recovery_points=AwsBackupRecoveryPoints(settings.region),
    )
