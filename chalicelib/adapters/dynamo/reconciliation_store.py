"""What reconciliation reads and writes, on a table named per call rather than by the models.

The PynamoDB models are bound process-wide to the configured table; the restore drill has to
check a *scratch* table from the same process. Rebinding the models for a while would move every
other user of them too, so this store talks to the table through the models' own low-level
client with an explicit ``TableName`` (one botocore client, no second cold start), and turns the
raw items into domain objects with the models' ``from_raw_data``. It only ever writes its own
items: reports (``RECON#<date>`` / ``REPORT``), per-account checkpoints (``CKPT#<id>`` /
``RECON#<date>``) and run markers; balances are never written here. The values it carries
(``Checkpoint``, ``StoredReport``, ``RunMarker``) are the service's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import AccountItem, EntryItem, TransactionItem
from chalicelib.domain.accounts import Account
from chalicelib.domain.reconciliation import Checkpoint, RunMarker, StoredReport
from chalicelib.domain.transactions import Entry, Transaction

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
CHECKPOINT_TYPE = "recon_checkpoint"
REPORT_TYPE = "recon_report"
RUN_TYPE = "recon_run"
RUNNING = "running"


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


class DynamoReconciliationStore:
    """``chalicelib.services.reconciliation.ReconciliationStore`` on the table ``table_name``."""

    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self.table_name = table_name
        # PynamoDB's client for the bound region / endpoint, shared with the models.
        self.client = client or AccountItem._get_connection().connection.client

    # -- ledger reads ---------------------------------------------------------------------------
    def _batch_get(self, wanted: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        wanted = list(wanted)
        while wanted:
            page, wanted = wanted[:BATCH_GET_LIMIT], wanted[BATCH_GET_LIMIT:]
            response = self.client.batch_get_item(
                RequestItems={self.table_name: {"Keys": page, "ConsistentRead": True}}
            )
            yield from response.get("Responses", {}).get(self.table_name, [])
            wanted += response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])

    def accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        """Strongly consistent reads of the accounts, 100 per round trip; missing ones absent."""
        wanted = [_key(keys.account_pk(a), keys.ACCOUNT_SK) for a in dict.fromkeys(account_ids)]
        found = (AccountItem.from_raw_data(raw).to_domain() for raw in self._batch_get(wanted))
        return {a.id: a for a in found}

    def transactions(self, transaction_ids: Iterable[str]) -> dict[str, Transaction]:
        wanted = [
            _key(keys.transaction_pk(t), keys.TRANSACTION_SK)
            for t in dict.fromkeys(transaction_ids)
        ]
        found = (TransactionItem.from_raw_data(raw).to_domain() for raw in self._batch_get(wanted))
        return {t.id: t for t in found}

    def _pages(self, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        call = getattr(self.client, operation)
        while True:
            response = call(TableName=self.table_name, **params)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def transactions_created(
        self, day: str, since: str | None = None, until: str | None = None
    ) -> list[Transaction]:
        """Transactions created on ``day`` (GSI2, every shard), optionally within [since, until]
        (ISO instants of that day); the index projects whole items, so no read by key."""
        found: list[Transaction] = []
        for pk in keys.day_index_pks(day):
            for raw in self._pages(
                "query",
                IndexName="GSI2",
                KeyConditionExpression="GSI2PK = :pk AND GSI2SK BETWEEN :low AND :high",
                ExpressionAttributeValues={
                    ":pk": {"S": pk},
                    ":low": {"S": since or day},
                    ":high": {"S": (until or day) + "~"},
                },
            ):
                found.append(TransactionItem.from_raw_data(raw).to_domain())
        return sorted(found, key=lambda t: (t.created_at, t.id))

    def all_transactions(self) -> list[Transaction]:
        """Every transaction (a scan of GSI2, which holds transactions and the withdrawal
        queue only): for the full audit, never for the nightly run."""
        found = [
            TransactionItem.from_raw_data(raw).to_domain()
            for raw in self._pages(
                "scan",
                IndexName="GSI2",
                FilterExpression="item_type = :t",
                ExpressionAttributeValues={":t": {"S": TransactionItem.ITEM_TYPE}},
            )
        ]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    def all_account_ids(self) -> list[str]:
        """Every account id, from GSI1 (keys only, accounts only): its size is the number of
        accounts, not of entries."""
        ids = {
            keys.account_id_from_pk(raw["PK"]["S"])
            for raw in self._pages("scan", IndexName="GSI1", ProjectionExpression="PK")
        }
        return sorted(ids)

    def entries_after(self, account_id: str, after_sk: str | None) -> list[tuple[str, Entry]]:
        """An account's entries after ``after_sk`` (all when None), oldest first, consistent."""
        low, high = keys.entry_time_bounds(None, None)
        low = after_sk or low
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": {"S": keys.account_pk(account_id)},
                ":low": {"S": low},
                ":high": {"S": high},
            },
            "ConsistentRead": True,
        }
        return [
            (raw["SK"]["S"], EntryItem.from_raw_data(raw).to_domain())
            for raw in self._pages("query", **params)
            if raw["SK"]["S"] != after_sk
        ]

    # -- checkpoints ----------------------------------------------------------------------------
    def latest_checkpoint(self, account_id: str, before_day: str) -> Checkpoint | None:
        """The account's newest checkpoint dated before ``before_day`` (one query)."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":pk": {"S": keys.checkpoint_pk(account_id)},
                ":low": {"S": keys.recon_checkpoint_sk("")},
                ":high": {"S": keys.recon_checkpoint_sk(before_day)},
            },
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=2,
        )
        for raw in response.get("Items", []):
            day = raw["day"]["S"]
            if day < before_day:
                return Checkpoint(
                    account_id=account_id,
                    day=day,
                    seq=int(raw["seq"]["N"]),
                    posted=int(raw["posted"]["N"]),
                    entry_sk=raw.get("entry_sk", {}).get("S"),
                )
        return None

    def put_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        **_key(keys.checkpoint_pk(c.account_id), keys.recon_checkpoint_sk(c.day)),
                        "item_type": {"S": CHECKPOINT_TYPE},
                        "account_id": {"S": c.account_id},
                        "day": {"S": c.day},
                        "seq": {"N": str(c.seq)},
                        "posted": {"N": str(c.posted)},
                        **({"entry_sk": {"S": c.entry_sk}} if c.entry_sk else {}),
                    }
                }
            }
            for c in checkpoints
        ]
        self._batch_write(requests)

    def delete_checkpoints(self, account_ids: Iterable[str], day: str) -> None:
        """Remove the accounts' checkpoints dated ``day`` (absent ones are no-ops)."""
        requests = [
            {"DeleteRequest": {"Key": _key(keys.checkpoint_pk(a), keys.recon_checkpoint_sk(day))}}
            for a in dict.fromkeys(account_ids)
        ]
        self._batch_write(requests)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        while requests:
            page, requests = requests[:BATCH_WRITE_LIMIT], requests[BATCH_WRITE_LIMIT:]
            response = self.client.batch_write_item(RequestItems={self.table_name: page})
            requests += response.get("UnprocessedItems", {}).get(self.table_name, [])

    # -- runs started on demand -----------------------------------------------------------------
    def begin_run(self, day: str, run_id: str, started_at: str, by: str, stale_before: str) -> bool:
        """Mark a run of ``day`` as running; False when another one is running (started after
        ``stale_before``: an older one died without ending, e.g. a Lambda timeout)."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **_key(keys.recon_pk(day), keys.RECON_RUN_SK),
                    "item_type": {"S": RUN_TYPE},
                    "day": {"S": day},
                    "run_id": {"S": run_id},
                    "status": {"S": RUNNING},
                    "started_at": {"S": started_at},
                    "started_by": {"S": by},
                },
                ConditionExpression="attribute_not_exists(PK) OR #s <> :running "
                "OR started_at < :stale",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":running": {"S": RUNNING},
                    ":stale": {"S": stale_before},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def end_run(
        self, day: str, run_id: str, status: str, ended_at: str, error: str | None = None
    ) -> None:
        """Record how the run ``run_id`` ended (nothing if a later run has taken the marker)."""
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table_name,
                Key=_key(keys.recon_pk(day), keys.RECON_RUN_SK),
                UpdateExpression="SET #s = :status, ended_at = :at, #e = :error",
                ConditionExpression="run_id = :run",
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues={
                    ":status": {"S": status},
                    ":at": {"S": ended_at},
                    ":error": {"S": error or ""},
                    ":run": {"S": run_id},
                },
            )

    def run_marker(self, day: str) -> RunMarker | None:
        """The day's latest run started on demand, as its marker says now."""
        raw = self.client.get_item(
            TableName=self.table_name,
            Key=_key(keys.recon_pk(day), keys.RECON_RUN_SK),
            ConsistentRead=True,
        ).get("Item")
        if raw is None:
            return None
        return RunMarker(
            run_id=raw["run_id"]["S"],
            status=raw["status"]["S"],
            started_at=raw["started_at"]["S"],
            error=raw.get("error", {}).get("S") or None,
        )

    # -- reports --------------------------------------------------------------------------------
    def put_report(self, stored: StoredReport, ran_at: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                **_key(keys.recon_pk(stored.day), keys.RECON_REPORT_SK),
                "item_type": {"S": REPORT_TYPE},
                "day": {"S": stored.day},
                "status": {"S": str(stored.report["status"])},
                "report": {"S": json.dumps(stored.report, sort_keys=True)},
                "totals": {"S": json.dumps({k: str(v) for k, v in stored.totals.items()})},
                "open_holds": {"S": json.dumps(stored.open_holds)},
                "final": {"BOOL": stored.final},
                "ran_at": {"S": ran_at},
            },
        )

    def reports(self, days: Iterable[str]) -> dict[str, StoredReport]:
        wanted = [_key(keys.recon_pk(d), keys.RECON_REPORT_SK) for d in dict.fromkeys(days)]
        found: dict[str, StoredReport] = {}
        for raw in self._batch_get(wanted):
            day = raw["day"]["S"]
            found[day] = StoredReport(
                day=day,
                report=json.loads(raw["report"]["S"]),
                totals={k: int(v) for k, v in json.loads(raw["totals"]["S"]).items()},
                open_holds=list(json.loads(raw["open_holds"]["S"])),
                # Reports written before the flag existed: final when they ran after their day.
                final=raw["final"]["BOOL"] if "final" in raw else raw["ran_at"]["S"][:10] > day,
            )
        return found
