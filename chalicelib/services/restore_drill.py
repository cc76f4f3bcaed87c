"""The restore drill: prove that the table restores, by the paths production would use, to a
ledger that verifies.

A backup nobody has restored is a hope. Weekly (``chalicelib/api/restore_drill_job.py``) and on
demand (``make drill`` on the local stack, ``python -m infra.drill`` against a deployed stage), the
drill exercises one of the two restore paths of docs/runbooks/restore.md, in turn:

- **point-in-time recovery** (``method="pitr"``, even ISO weeks):
  1. count the live table's items per ``item_type`` (*before*);
  2. take ``T`` = now (UTC), and wait until the table's ``LatestRestorableDateTime`` (DynamoDB
     keeps it about five minutes behind the clock) has reached ``T``;
  3. count the live table again (*after*);
  4. ``RestoreTableToPointInTime`` to ``T`` into the scratch table; for every item type that
     cannot vanish, ``before <= restored <= after`` must hold exactly, however busy the table:
     *before* saw only what existed before ``T``, *after* everything that existed at ``T``.
- **the newest AWS Backup recovery point** (``method="backup"``, odd ISO weeks): the newest
  ``COMPLETED`` recovery point of the table in the vault ``BACKUP_VAULT_NAME`` (the daily plan's,
  04:00 UTC); none, or one older than 26 hours, fails the drill (the daily plan has stopped). An
  AWS Backup restore job (``StartRestoreJob``, role ``BACKUP_RESTORE_ROLE_ARN``) restores it into
  the scratch table. A recovery point is from the past, so only ``restored <= after`` (the live
  table counted after the restore) can be checked per item type; the recovery point's ARN and
  creation time are recorded.

``method`` forces a path. Without ``BACKUP_VAULT_NAME`` (the local stack, the tests) there is no
vault to restore from: the drill uses point-in-time recovery and its result says why. Then, for
both paths:

5. wait until the scratch table ``<table>-drill-<drill id>`` is ``ACTIVE`` (on the table's KMS key
   when ``kms_key_arn`` is given), count it (*restored*) and run the full reconciliation on it
   (``reconciliation.full_report`` on a store of the scratch table: every account re-verified
   from its first entry);
6. always, whatever happened: delete the scratch table. The drill creates no backup of its own
   (and so deletes none): it restores what production would restore from;
7. record the result as a ``DRILL#<drill id>`` item in the live table, and fail loudly: the caller
   gets ``RestoreDrillFailed`` (the command exits 1; the scheduled function raises, publishes to
   the alert topic and emits ``RestoreDrillFailed``: see ``chalicelib/api/restore_drill_job.py``).

Items that can disappear are those carrying the TTL attribute ``expires_at`` (sessions, tokens,
throttles, idempotency records, quotes, daily limits: DynamoDB's TTL or the code deletes them);
they are counted and reported but not bounded. Everything a ledger is made of (accounts, entries,
transactions, users, deposits, audit, reports) never carries ``expires_at``.

What moto (the local stack, the tests) proves and does not: its ``RestoreTableToPointInTime``
ignores ``RestoreDateTime`` and copies the table as it is at the call, and its point-in-time
recovery has no history (``infra/local/moto_dynamodb.py`` makes ``LatestRestorableDateTime``
follow the clock, as DynamoDB's does). With nothing written during a drill the copy still meets
the bounds, so on moto the drill proves the sequence, the calls and their arguments, the waits,
the counting, the reconciliation of the copy and the clean-up; it cannot prove that a restore
rewinds to ``T``, nor anything of the encryption. moto has no AWS Backup restore jobs: the tests
restore the "recovery point" with an in-memory ``RecoveryPoints`` that restores a moto backup.

Time: the drill runs in one Lambda invocation (15 minutes at most; the function's timeout is
900 s). Restoring takes minutes for a small table and can take hours for a large one; when the
scratch table is not ``ACTIVE`` within the deadline the drill fails with that reason, and a scratch
table still being created cannot be deleted yet (nor one an AWS Backup restore job has yet to
create): the report names it (``scratch_deleted: false``) and the alert asks for its deletion.
Past that size the drill is run with ``python -m infra.drill`` from a machine, which has no such
limit (docs/runbooks/restore.md, "Drill").

The drill talks to DynamoDB through ``DrillTables`` (``adapters/dynamo/drill_tables.py``), to AWS
Backup through the vault's ``RecoveryPoints`` (``adapters/aws_backup.py``) and to operators
through ``Alerts``; the callers build them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from chalicelib.adapters.aws_backup import BackupVault, RecoveryPoint, RecoveryPoints
from chalicelib.services import reconciliation
from chalicelib.services.alerts import Alerts
from chalicelib.services.reconciliation import ReconciliationStore

POLL_SECONDS = 2.0
DEFAULT_DEADLINE_SECONDS = 12 * 60.0  # leaves the 15-minute Lambda time to clean up and report
PITR = "pitr"
BACKUP = "backup"
METHODS = (PITR, BACKUP)
METHOD_NAMES = {PITR: "point-in-time recovery", BACKUP: "AWS Backup recovery point"}
# The daily plan starts at 04:00 UTC (within an hour): its newest recovery point is at most about
# 25 hours old when the next one is due; older, the plan has missed a day.
MAX_RECOVERY_POINT_AGE = timedelta(hours=26)
RESTORE_JOB_ENDED = ("COMPLETED", "ABORTED", "FAILED")


class Report(Protocol):
    """What ``reconciliation.full_report`` returns."""

    status: str

    def as_dict(self) -> dict[str, Any]: ...


FullCheck = Callable[[str], Report]
Hook = Callable[[str], None]
Counts = Mapping[tuple[str, bool], int]  # (item_type, carries expires_at) -> items


class DrillTables(Protocol):
    """DynamoDB as the drill uses it, on tables named per call."""

    def count_items(self, table: str) -> dict[tuple[str, bool], int]:
        """Items per ``(item_type, carries expires_at)`` (a consistent scan)."""
        ...

    def point_in_time_recovery(self, table: str) -> tuple[str, datetime | None]:
        """The table's point-in-time recovery status (``ENABLED``, ...) and its latest
        restorable instant."""
        ...

    def restore_to_point_in_time(
        self, source: str, target: str, moment: datetime, kms_key_arn: str | None
    ) -> None:
        """Start restoring ``source`` as at ``moment`` into the new table ``target``."""
        ...

    def table_arn(self, table: str) -> str: ...

    def table_status(self, table: str) -> str:
        """``CREATING``, ``ACTIVE``, ...; raises when there is no such table."""
        ...

    def delete_table(self, table: str) -> bool:
        """True once the table is gone or never existed; False while it cannot be deleted yet
        or when the deletion failed. Never raises."""
        ...

    def record(self, table: str, result: DrillResult) -> None:
        """Write the drill's result to ``table`` (the live one)."""
        ...

    def reconciliation_store(self, table: str) -> ReconciliationStore:
        """The reconciliation's reads on ``table``."""
        ...


@dataclass
class TypeCount:
    before: int | None = 0  # None: not counted (a recovery point is from before the drill)
    restored: int = 0
    after: int = 0
    volatile_before: int | None = 0
    volatile_restored: int = 0
    volatile_after: int = 0


@dataclass
class DrillResult:
    drill_id: str
    table: str
    scratch_table: str
    started_at: str
    method: str  # "pitr" or "backup"
    method_reason: str  # why this method: the week, a forced method, no vault configured
    status: str = "failed"  # "passed" only once everything verified
    finished_at: str | None = None
    point_in_time: str | None = None  # pitr: T, the instant restored
    recovery_point_arn: str | None = None  # backup: the recovery point restored ...
    recovery_point_created_at: str | None = None  # ... and when it was taken
    restore_job_id: str | None = None  # backup: AWS Backup's restore job ...
    restore_job_status: str | None = None  # ... and its last known status
    restore_seconds: float | None = None
    counts: dict[str, TypeCount] = field(default_factory=dict)
    count_problems: list[str] = field(default_factory=list)
    reconciliation: dict[str, Any] | None = None
    error: str | None = None
    scratch_deleted: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for a person: the verdict first, then why."""
        restored_in = "-" if self.restore_seconds is None else f"{self.restore_seconds} s"
        if self.method == PITR:
            source = f"point in time {self.point_in_time or '-'}"
        else:
            source = (
                f"recovery point {self.recovery_point_arn or '-'}"
                f" (created {self.recovery_point_created_at or '-'},"
                f" restore job {self.restore_job_id or '-'}: {self.restore_job_status or '-'})"
            )
        lines = [
            f"restore drill {self.drill_id} ({self.method}): {self.status.upper()}",
            f"  method: {METHOD_NAMES[self.method]} ({self.method_reason})",
            f"  table {self.table} -> {source}",
            f"  -> scratch {self.scratch_table} (restored in {restored_in},"
            f" scratch deleted: {self.scratch_deleted})",
        ]
        for item_type, count in sorted(self.counts.items()):
            before = "-" if count.before is None else count.before
            lines.append(
                f"  {item_type:<20} before {before:>7}  restored {count.restored:>7}"
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
    """The drill did not prove the restore good; ``result`` says why (it is recorded too)."""

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


def choose_method(
    requested: str | None, moment: datetime, vault: BackupVault | None
) -> tuple[str, str]:
    """The restore path and why: ``requested`` if given; else point-in-time recovery when no vault
    is configured; else by the ISO week of ``moment``, even weeks PITR and odd ones AWS Backup.

    Raises:
        ValueError: ``requested`` is neither ``"pitr"`` nor ``"backup"``.
    """
    if requested is not None:
        if requested not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {requested!r}")
        return requested, "asked for"
    if vault is None:
        return PITR, "BACKUP_VAULT_NAME is not set, no AWS Backup vault to restore from"
    week = moment.astimezone(UTC).isocalendar().week
    if week % 2 == 0:
        return PITR, f"ISO week {week} is even"
    return BACKUP, f"ISO week {week} is odd"


def run_drill(
    tables: DrillTables,
    table: str,
    *,
    method: str | None = None,
    vault: BackupVault | None = None,
    full_check: FullCheck | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    kms_key_arn: str | None = None,
    before_verify: Hook | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DrillResult:
    """Run the drill on ``table`` through ``tables``; record, return the result.

    ``method`` forces ``"pitr"`` or ``"backup"`` (``choose_method``); ``vault`` is the AWS Backup
    vault (``adapters.aws_backup.backup_vault(settings)``), needed by the backup path.
    ``full_check`` defaults to ``reconciliation.full_report`` on ``tables.reconciliation_store``
    of the scratch table. ``before_verify`` gets the restored scratch table's name before it is
    counted and checked (tests corrupt it there).

    Raises:
        ValueError: ``method`` is not one of ``METHODS`` (nothing was done or recorded).
        RestoreDrillFailed: anything short of a verified restore, after the scratch table was
            deleted (where possible) and the result recorded.
    """
    started = now()
    drill_id = drill_id_for(started)
    chosen, reason = choose_method(method, started, vault)
    result = DrillResult(
        drill_id=drill_id,
        table=table,
        scratch_table=scratch_table_name(table, drill_id),
        started_at=started.isoformat(),
        method=chosen,
        method_reason=reason,
    )
    give_up_at = time.monotonic() + deadline_seconds
    try:
        if chosen == PITR:
            before, after = _restore_to_point_in_time(
                tables, result, kms_key_arn, now, sleep, give_up_at
            )
        else:
            before, after = _restore_recovery_point(
                tables, result, vault, kms_key_arn, now, sleep, give_up_at
            )
        _verify(tables, result, before, after, full_check, before_verify)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        # A restore job that has not ended may still create the scratch table: not cleaned up.
        job_pending = result.restore_job_id is not None and (
            result.restore_job_status not in RESTORE_JOB_ENDED
        )
        # A table still being created cannot be deleted yet: the report and the alert name it.
        result.scratch_deleted = tables.delete_table(result.scratch_table) and not job_pending
    if not result.scratch_deleted and result.error is None:
        result.error = f"the scratch table {result.scratch_table} could not be deleted"
    result.status = "passed" if _verified(result) else "failed"
    result.finished_at = now().isoformat()
    try:
        tables.record(table, result)
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


def _restore_to_point_in_time(
    tables: DrillTables,
    result: DrillResult,
    kms_key_arn: str | None,
    now: Callable[[], datetime],
    sleep: Callable[[float], None],
    give_up_at: float,
) -> tuple[Counts, Counts]:
    """Restore the table as it was at ``T`` (after *before*, before *after*) into the scratch
    table; the counts before and after ``T``."""
    before = tables.count_items(result.table)
    moment = now().astimezone(UTC)
    result.point_in_time = moment.isoformat()
    _wait_until_restorable(tables, result.table, moment, sleep, give_up_at)
    after = tables.count_items(result.table)

    restore_started = time.monotonic()
    # On the table's own key, whatever a restore's default is.
    tables.restore_to_point_in_time(result.table, result.scratch_table, moment, kms_key_arn)
    _wait_for_table(tables, result.scratch_table, sleep, give_up_at)
    result.restore_seconds = round(time.monotonic() - restore_started, 1)
    return before, after


def _restore_recovery_point(
    tables: DrillTables,
    result: DrillResult,
    vault: BackupVault | None,
    kms_key_arn: str | None,
    now: Callable[[], datetime],
    sleep: Callable[[float], None],
    give_up_at: float,
) -> tuple[None, Counts]:
    """Restore the table's newest recovery point into the scratch table; no count before it (it
    is from the past), the count of the live table after it."""
    if vault is None:
        raise DrillError(
            "the AWS Backup path needs BACKUP_VAULT_NAME (and BACKUP_RESTORE_ROLE_ARN)"
        )
    if not vault.restore_role_arn:
        raise DrillError("BACKUP_RESTORE_ROLE_ARN is not set: AWS Backup needs a role to restore")
    table_arn = tables.table_arn(result.table)
    point = newest_recovery_point(vault.recovery_points.for_resource(table_arn), vault.name)
    if point is None:
        raise DrillError(f"no COMPLETED recovery point of {table_arn} in the vault {vault.name}")
    result.recovery_point_arn = point.arn
    result.recovery_point_created_at = point.created_at.astimezone(UTC).isoformat()
    age = now() - point.created_at
    if age > MAX_RECOVERY_POINT_AGE:
        hours, limit = age.total_seconds() / 3600, MAX_RECOVERY_POINT_AGE.total_seconds() / 3600
        raise DrillError(
            f"the newest recovery point in the vault {vault.name} is {hours:.1f} hours old (taken"
            f" {result.recovery_point_created_at}), more than {limit:.0f}: the daily backup plan"
            " has missed a day"
        )

    restore_started = time.monotonic()
    result.restore_job_id = vault.recovery_points.start_restore(
        point.arn, result.scratch_table, vault.restore_role_arn, kms_key_arn
    )
    _wait_for_restore_job(vault.recovery_points, result, sleep, give_up_at)
    _wait_for_table(tables, result.scratch_table, sleep, give_up_at)
    result.restore_seconds = round(time.monotonic() - restore_started, 1)
    return None, tables.count_items(result.table)


def newest_recovery_point(points: Iterable[RecoveryPoint], vault: str) -> RecoveryPoint | None:
    """The newest ``COMPLETED`` recovery point kept in ``vault``; None if there is none."""
    completed = [p for p in points if p.vault == vault and p.status == "COMPLETED"]
    return max(completed, key=lambda p: p.created_at, default=None)


def _verify(
    tables: DrillTables,
    result: DrillResult,
    before: Counts | None,
    after: Counts,
    full_check: FullCheck | None,
    before_verify: Hook | None,
) -> None:
    if before_verify is not None:
        before_verify(result.scratch_table)
    restored = tables.count_items(result.scratch_table)
    result.counts, result.count_problems = compare_counts(before, restored, after)

    if full_check is None:
        report = reconciliation.full_report(tables.reconciliation_store(result.scratch_table))
    else:
        report = full_check(result.scratch_table)
    result.reconciliation = report.as_dict()


def compare_counts(
    before: Counts | None, restored: Counts, after: Counts
) -> tuple[dict[str, TypeCount], list[str]]:
    """Per item type, the three counts; a problem wherever ``before <= restored <= after`` fails
    for items that cannot vanish (only ``restored <= after`` when ``before`` is None: a recovery
    point from the past)."""
    table: dict[str, TypeCount] = {}
    sources = [(restored, "restored"), (after, "after")]
    if before is not None:
        sources.insert(0, (before, "before"))
    for source, attr in sources:
        for (item_type, volatile), n in source.items():
            count = table.setdefault(item_type, TypeCount())
            name = f"volatile_{attr}" if volatile else attr
            setattr(count, name, getattr(count, name) + n)
    problems = []
    for item_type, count in sorted(table.items()):
        if before is None:
            count.before = count.volatile_before = None
            if count.restored > count.after:
                problems.append(
                    f"{item_type}: {count.restored} restored, expected at most {count.after} (the"
                    " live table after the restore)"
                )
        elif not count.before <= count.restored <= count.after:
            problems.append(
                f"{item_type}: {count.restored} restored, expected between {count.before} (before"
                f" the restore point) and {count.after} (after it)"
            )
    return table, problems


def _wait_until_restorable(
    tables: DrillTables,
    table: str,
    moment: datetime,
    sleep: Callable[[float], None],
    give_up_at: float,
) -> None:
    """Until point-in-time recovery can restore ``table`` to ``moment``."""
    while True:
        status, latest = tables.point_in_time_recovery(table)
        if status != "ENABLED":
            raise DrillError(f"point-in-time recovery of {table} is {status}")
        if latest is not None and latest >= moment:
            return
        if time.monotonic() >= give_up_at:
            shown = "-" if latest is None else latest.astimezone(UTC).isoformat()
            raise DrillError(
                f"point-in-time recovery of {table} had not reached {moment.isoformat()} at the"
                f" drill's deadline (latest restorable: {shown})"
            )
        sleep(POLL_SECONDS)


def _wait_for_restore_job(
    points: RecoveryPoints, result: DrillResult, sleep: Callable[[float], None], give_up_at: float
) -> None:
    job_id = result.restore_job_id or ""
    while True:
        job = points.restore_job(job_id)
        result.restore_job_status = job.status
        if job.status == "COMPLETED":
            return
        if job.status in RESTORE_JOB_ENDED:
            raise DrillError(f"restore job {job_id} {job.status}: {job.message or 'no message'}")
        if time.monotonic() >= give_up_at:
            raise DrillError(
                f"restore job {job_id} still {job.status} at the drill's deadline: it may yet"
                f" create {result.scratch_table}"
            )
        sleep(POLL_SECONDS)


def _wait_for_table(
    tables: DrillTables, table: str, sleep: Callable[[float], None], give_up_at: float
) -> None:
    while True:
        status = tables.table_status(table)
        if status == "ACTIVE":
            return
        if time.monotonic() >= give_up_at:
            raise DrillError(f"{table} still {status} at the drill's deadline")
        sleep(POLL_SECONDS)


def alert(alerts: Alerts, stage: str, result: DrillResult) -> bool:
    """Publish a failed drill to the operators; False when no alert channel is configured."""
    subject = f"ledger {stage}: restore drill {result.drill_id} ({result.method}) FAILED"
    return alerts.publish(subject, result.summary())
