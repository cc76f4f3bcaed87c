"""Facilities in memory: ``services.facilities.FacilityRepository``."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.domain.accounts import Account
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.facilities import Facility
from chalicelib.domain.users import AuditEvent


class MemoryFacilityRepository:
    def __init__(self) -> None:
        self.facilities: dict[str, Facility] = {}
        self.accounts: dict[str, Account] = {}
        self.events: list[AuditEvent] = []

    def create(self, facility: Facility, accounts: Sequence[Account], event: AuditEvent) -> None:
        taken = (
            facility.id in self.facilities
            or any(a.id in self.accounts for a in accounts)
            or any(e.id == event.id for e in self.events)
        )
        if taken:
            raise VersionConflict("facility, account or audit event id taken")
        self.facilities[facility.id] = facility
        self.accounts.update((a.id, a) for a in accounts)
        self.events.append(event)

    def get(self, facility_id: str) -> Facility | None:
        return self.facilities.get(facility_id)

    def all(self) -> list[Facility]:
        return list(self.facilities.values())
