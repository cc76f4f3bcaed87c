"""Facilities in DynamoDB: one directory partition (PK ``FACILITIES``, SK ``FAC#<id>``; few,
rarely written), and the facility's creation with its accounts and audit event in one write.
Implements ``services.facilities.FacilityRepository``."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import AccountItem, FacilityItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.accounts import Account
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.facilities import Facility
from chalicelib.domain.users import AuditEvent


def _item(facility: Facility) -> FacilityItem:
    return FacilityItem(
        keys.FACILITIES_PK,
        keys.facility_sk(facility.id),
        item_type=FacilityItem.ITEM_TYPE,
        facility_id=facility.id,
        name=facility.name,
        created_at=facility.created_at,
    )


def _facility(item: FacilityItem) -> Facility:
    return Facility(id=item.facility_id, name=item.name, created_at=item.created_at)


class DynamoFacilityRepository:
    """``services.facilities.FacilityRepository`` on the ledger table."""

    def create(self, facility: Facility, accounts: Sequence[Account], event: AuditEvent) -> None:
        """The facility, its (new) accounts and the audit event, in one write.

        Raises:
            VersionConflict: the facility id, an account id or the event id is taken; nothing
                is written.
        """
        write = AtomicWrite()
        write.put(
            _item(facility), FacilityItem.SK.does_not_exist(), VersionConflict("facility id taken")
        )
        for account in accounts:
            write.put(
                AccountItem.from_domain(account.evolve(stored=True)),
                AccountItem.PK.does_not_exist(),
                VersionConflict("account id taken"),
            )
        write.append_audit(event)
        write.send_or_raise_tag()

    def get(self, facility_id: str) -> Facility | None:
        try:
            item = FacilityItem.get(
                keys.FACILITIES_PK, keys.facility_sk(facility_id), consistent_read=True
            )
        except FacilityItem.DoesNotExist:
            return None
        return _facility(item)

    def all(self) -> list[Facility]:
        """Every facility, in no particular order."""
        return [_facility(item) for item in FacilityItem.query(keys.FACILITIES_PK)]
