"""The contract of ``services.facilities.FacilityRepository``, run against the in-memory
repository and ``DynamoFacilityRepository`` (moto)."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.facility_repository import DynamoFacilityRepository
from chalicelib.domain.accounts import Account, OwnerType, wallet_id
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.facilities import Facility
from chalicelib.domain.users import AuditEvent
from tests.memory.facilities import MemoryFacilityRepository

AT = "2026-03-14T10:00:00.000000Z"


def accounts(facility: Facility) -> list[Account]:
    return [
        Account.open(
            wallet_id(OwnerType.FACILITY, facility.id, code),
            code,
            OwnerType.FACILITY,
            facility.id,
            AT,
        )
        for code in ("USD", "BTC")
    ]


def created(facility: Facility) -> AuditEvent:
    return AuditEvent.new("facility.created", at=AT, actor_id="adm", target=facility.id, ip=None)


class TestFacilityRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def repository(self, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
        if request.param == "memory":
            return MemoryFacilityRepository()
        request.getfixturevalue("table")
        return DynamoFacilityRepository()

    def test_a_created_facility_reads_back(self, repository):
        assert repository.get("fac_1") is None
        north = Facility.new("fac_1", "North Clinic", AT)
        south = Facility.new("fac_2", "South Clinic", AT)
        repository.create(north, accounts(north), created(north))
        repository.create(south, accounts(south), created(south))
        assert repository.get("fac_1") == north
        assert sorted(repository.all(), key=lambda f: f.id) == [north, south]

    def test_a_taken_id_creates_nothing(self, repository):
        north = Facility.new("fac_1", "North Clinic", AT)
        repository.create(north, accounts(north), created(north))
        again = Facility.new("fac_1", "Another Clinic", AT)
        with pytest.raises(VersionConflict):
            repository.create(again, [], created(again))
        assert repository.all() == [north]

    def test_a_taken_account_id_creates_nothing(self, repository):
        north = Facility.new("fac_1", "North Clinic", AT)
        repository.create(north, accounts(north), created(north))
        other = Facility.new("fac_2", "South Clinic", AT)
        with pytest.raises(VersionConflict):
            repository.create(other, accounts(north), created(other))
        assert repository.get("fac_2") is None
