"""Facilities: the healthcare providers users pay (``chalicelib/domain/facilities.py``). Each has
one account per currency, opened with it; a ``FacilityRepository``
(``adapters/dynamo/facility_repository.py``) keeps them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.accounts import Account, OwnerType, wallet_id
from chalicelib.domain.errors import InvalidRequest
from chalicelib.domain.facilities import Facility
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.users import AuditEvent


class FacilityRepository(Protocol):
    def create(self, facility: Facility, accounts: Sequence[Account], event: AuditEvent) -> None:
        """The facility, its accounts and the audit event in one write; raises VersionConflict
        (nothing written) if any of them exists."""
        ...

    def get(self, facility_id: str) -> Facility | None: ...

    def all(self) -> list[Facility]: ...


def create_facility(
    facilities: FacilityRepository, name: str, *, admin_id: str, ip: str | None
) -> Facility:
    """The facility, its accounts and the audit event, in one write.

    Raises:
        InvalidRequest: the name is blank or longer than 200 characters.
        VersionConflict: an id was taken; nothing is written.
    """
    now = now_iso()
    facility = Facility.new(f"fac_{secrets.token_hex(12)}", name, now)
    accounts = [
        Account.open(
            wallet_id(OwnerType.FACILITY, facility.id, code),
            code,
            OwnerType.FACILITY,
            facility.id,
            now,
        )
        for code in CURRENCIES
    ]
    event = AuditEvent.new(
        "facility.created", at=now, actor_id=admin_id, target=facility.id, ip=ip, name=facility.name
    )
    facilities.create(facility, accounts, event)
    return facility


def list_facilities(facilities: FacilityRepository) -> list[Facility]:
    return sorted(facilities.all(), key=lambda f: (f.name.lower(), f.id))


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


def get_facility(facilities: FacilityRepository, facility_id: str) -> Facility | None:
    return facilities.get(facility_id)
