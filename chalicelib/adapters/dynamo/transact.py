"""One ``TransactWriteItems`` request, built item by item, remembering what each item was for.

A cancelled request reports one reason per item, in request order; PynamoDB sends condition
checks, then puts, then updates, so ``tags`` lists them in that order too and repositories can
name the rule that failed.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from chalicelib.adapters.dynamo.models import AuditItem, LedgerItem
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.users import AuditEvent

# The first back-off (seconds) before a write that met a concurrent transaction is sent again.
CONFLICT_BACK_OFF = 0.02


def condition_failed(exc: PynamoDBException) -> bool:
    """A single-item conditional write (PutItem, UpdateItem) was refused by its condition."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def append_only_audit(event: AuditEvent) -> tuple[AuditItem, Condition, VersionConflict]:
    """An audit event as a put that never overwrites one: a taken id fails the whole write
    (as a conflict), so an action and its audit event are stored together or not at all."""
    return (
        AuditItem.from_domain(event),
        AuditItem.SK.does_not_exist(),
        VersionConflict(f"audit event {event.id} exists"),
    )


@dataclass
class AtomicWrite:
    checks: list[tuple[dict, Any]] = field(default_factory=list)
    puts: list[tuple[dict, Any]] = field(default_factory=list)
    updates: list[tuple[dict, Any]] = field(default_factory=list)

    def check(
        self, model_cls: type[Model], hash_key: str, range_key: str, condition: Condition, tag: Any
    ) -> None:
        """An item that is not written but whose ``condition`` must hold for the write to
        happen (a ``ConditionCheck``)."""
        kwargs = model_cls.get_operation_kwargs_from_class(
            hash_key, range_key=range_key, condition=condition
        )
        self.checks.append((kwargs, tag))

    def put(self, model: Model, condition: Condition | None, tag: Any) -> None:
        kwargs = model.get_save_kwargs_from_instance(
            condition=condition, return_values_on_condition_failure="ALL_OLD"
        )
        self.puts.append((kwargs, tag))

    def append_audit(self, event: AuditEvent) -> None:
        """Append the audit event of the action this write does (``append_only_audit``)."""
        self.put(*append_only_audit(event))

    def update(self, model: Model, actions: Sequence[Any], condition: Condition, tag: Any) -> None:
        kwargs = model.get_update_kwargs_from_instance(
            actions=list(actions),
            condition=condition,
            return_values_on_condition_failure="ALL_OLD",
        )
        self.updates.append((kwargs, tag))

    @property
    def tags(self) -> list[Any]:
        return [tag for _, tag in self.checks + self.puts + self.updates]

    def send(self) -> None:
        puts = [kwargs for kwargs, _ in self.puts]
        updates = [kwargs for kwargs, _ in self.updates]
        # If botocore resends a write whose first response was lost, the token (the same on
        # botocore's resends) makes DynamoDB answer "done" instead of failing the already
        # satisfied conditions. It is new for every send: two requests that happen to write the
        # same items (two logins racing with one TOTP code in the same second) are two attempts,
        # and a token derived from the content would let DynamoDB answer "done" to the second.
        token = str(uuid.uuid4())
        LedgerItem._get_connection().connection.transact_write_items(
            condition_check_items=[kwargs for kwargs, _ in self.checks],
            delete_items=[],
            put_items=puts,
            update_items=updates,
            client_request_token=token,
        )

    def send_or_raise_tag(self, conflict_retries: int = 0) -> None:
        """Send; if an item's condition fails, raise its tag (an exception instance, or None for
        items that cannot fail); a write conflict raises ``VersionConflict``.

        ``conflict_retries``: a write cancelled only because a concurrent transaction touched
        one of its items (``TransactionConflict``: nothing was written, and every condition is
        evaluated again) is sent again up to that many times, each after a random back-off, for
        writes whose conditions alone decide (a TOTP step, a status change, a reset).
        """
        for attempt in range(conflict_retries + 1):
            try:
                self.send()
                return
            except TransactWriteError as exc:
                conflict = False
                for reason, tag in zip(exc.cancellation_reasons or [], self.tags, strict=False):
                    if reason is None:
                        continue
                    if reason.code == "ConditionalCheckFailed" and isinstance(tag, Exception):
                        raise tag from exc
                    conflict = conflict or reason.code == "TransactionConflict"
                if not conflict:
                    raise
                if attempt == conflict_retries:
                    raise VersionConflict("a concurrent write touched the same items") from exc
            bound = CONFLICT_BACK_OFF * 2**attempt
            time.sleep(random.uniform(bound / 2, bound))  # noqa: S311 - a delay, not a secret
