"""Hold deadlines in DynamoDB (``HOLDEXP#<shard>`` / ``<deadline>#<transaction id>``): written
with their hold, read by the sweeper as a key range (the due ones), marked ``done`` once swept,
removed by TTL 30 days after the deadline. Implements ``services.holds.HoldExpiries``."""

from __future__ import annotations

from collections.abc import Iterator

from chalicelib.adapters.clock import parse_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import HoldExpiryItem
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.holds import HoldExpiry, HoldOwner

KEEP_SECONDS = 30 * 24 * 3600  # after the deadline, for the record


def _item(e: HoldExpiry) -> HoldExpiryItem:
    return HoldExpiryItem(
        keys.hold_expiry_pk(e.transaction_id),
        keys.hold_expiry_sk(e.expires_at, e.transaction_id),
        item_type=HoldExpiryItem.ITEM_TYPE,
        transaction_id=e.transaction_id,
        hold_expires_at=e.expires_at,
        owner=e.owner.value or None,
        owner_id=e.owner_id or None,
        expires_at=int(parse_iso(e.expires_at).timestamp()) + KEEP_SECONDS,
    )


class DynamoHoldExpiries:
    """``services.holds.HoldExpiries`` on the ledger table."""

    @staticmethod
    def expiry_write(e: HoldExpiry) -> ExtraWrite:
        """The hold's deadline, to write with the hold (once: the hold is new)."""
        return ExtraWrite(
            model=_item(e),
            condition=HoldExpiryItem.PK.does_not_exist(),
            error=VersionConflict(f"hold expiry of {e.transaction_id} exists"),
        )

    @staticmethod
    def due(now: str) -> Iterator[HoldExpiry]:
        """The deadlines at or before ``now`` not swept yet, oldest first per shard."""
        for pk in keys.hold_expiry_pks():
            found = HoldExpiryItem.query(
                pk,
                HoldExpiryItem.SK.between("0", keys.hold_expiry_due_bound(now)),
                filter_condition=HoldExpiryItem.done.does_not_exist(),
                consistent_read=True,
            )
            for item in found:
                yield HoldExpiry(
                    transaction_id=item.transaction_id,
                    expires_at=item.hold_expires_at,
                    owner=HoldOwner(item.owner or ""),
                    owner_id=item.owner_id or "",
                )

    @staticmethod
    def mark_done(e: HoldExpiry) -> None:
        HoldExpiryItem(
            keys.hold_expiry_pk(e.transaction_id),
            keys.hold_expiry_sk(e.expires_at, e.transaction_id),
        ).update(actions=[HoldExpiryItem.done.set(True)])
