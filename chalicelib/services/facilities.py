"""Facilities: the healthcare providers users pay. Each has one account per currency."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import AccountItem, FacilityItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.domain.accounts import Account, OwnerType, wallet_id
from chalicelib.domain.errors import InvalidRequest, VersionConflict
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.users import AuditEvent

MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    created_at: str


def create_facility(name: str, *, admin_id: str, ip: str | None) -> Facility:
    """The facility, its accounts and the audit event, in one write.

    Raises:
        InvalidRequest: the name is blank or longer than 200 characters.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"name must have 1 to {MAX_NAME_LENGTH} characters",
            [{"field": "name", "message": "blank or too long"}],
        )
    now = now_iso()
    facility = Facility(id=f"fac_{secrets.token_hex(12)}", name=name, created_at=now)
    write = AtomicWrite()
    item = FacilityItem(
        keys.FACILITIES_PK,
        keys.facility_sk(facility.id),
        item_type=FacilityItem.ITEM_TYPE,
        facility_id=facility.id,
        name=facility.name,
        created_at=now,
    )
    write.put(item, FacilityItem.SK.does_not_exist(), VersionConflict("facility id taken"))
    for code in CURRENCIES:
        account = Account.open(
            wallet_id(OwnerType.FACILITY, facility.id, code),
            code,
            OwnerType.FACILITY,
            facility.id,
            now,
        )
        write.put(
            AccountItem.from_domain(account.evolve(stored=True)),
            AccountItem.PK.does_not_exist(),
            VersionConflict("account id taken"),
        )
    event = AuditEvent.new(
        "facility.created", at=now, actor_id=admin_id, target=facility.id, ip=ip, name=facility.name
    )
    write.append_audit(event)
    write.send_or_raise_tag()
    return facility


def _facility(item: FacilityItem) -> Facility:
    return Facility(id=item.facility_id, name=item.name, created_at=item.created_at)


def list_facilities() -> list[Facility]:
    return sorted(
        (_facility(i) for i in FacilityItem.query(keys.FACILITIES_PK)),
        key=lambda f: (f.name.lower(), f.id),
    )


def page_of(
    found: list[Facility], limit: int, cursor: str | None
) -> tuple[list[Facility], str | None]:
    """One page of ``found`` (in its order) after ``cursor`` (the last id of the previous page,
    as ``next_cursor`` gave it), and the next page's cursor or None.

    Raises:
        InvalidRequest: a cursor this API did not return.
    """
    start = 0
    if cursor is not None:
        ids = [f.id for f in found]
        if cursor not in ids:
            raise InvalidRequest(
                "query parameters are not valid",
                [{"field": "cursor", "message": "is not a cursor this API returned"}],
            )
        start = ids.index(cursor) + 1
    page = found[start : start + limit]
    more = start + limit < len(found)
    return page, (page[-1].id if more and page else None)


def get_facility(facility_id: str) -> Facility | None:
    try:
        return _facility(
            FacilityItem.get(
                keys.FACILITIES_PK, keys.facility_sk(facility_id), consistent_read=True
            )
        )
    except FacilityItem.DoesNotExist:
        return None
