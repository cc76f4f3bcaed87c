"""The contract of ``services.crypto.AddressRepository``, run against the in-memory repository
and ``DynamoAddressRepository`` (moto): an address is stored once, for one owner."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.crypto_address_repository import DynamoAddressRepository
from tests.memory.crypto_addresses import MemoryAddressRepository

AT = "2026-03-14T10:00:00.000000Z"


class TestAddressRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def repository(self, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
        if request.param == "memory":
            return MemoryAddressRepository()
        request.getfixturevalue("table")
        return DynamoAddressRepository()

    def test_an_address_is_claimed_once_and_keeps_its_owner(self, repository):
        assert repository.owner("BTC", "bc1qaddress01") is None
        assert repository.claim("BTC", "bc1qaddress01", "usr_ann", AT)
        assert not repository.claim("BTC", "bc1qaddress01", "usr_bob", AT)
        assert not repository.claim("BTC", "bc1qaddress01", "usr_ann", AT)
        assert repository.owner("BTC", "bc1qaddress01") == "usr_ann"

    def test_the_same_address_in_another_currency_is_another_address(self, repository):
        repository.claim("BTC", "bc1qaddress01", "usr_ann", AT)
        assert repository.owner("ETH", "bc1qaddress01") is None
        assert repository.claim("ETH", "bc1qaddress01", "usr_bob", AT)
