"""The contract of ``services.api_keys.ApiKeyRepository``, run against the in-memory repository
and ``DynamoApiKeyRepository`` (moto); and the service's authentication on the in-memory one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.adapters.dynamo.api_key_repository import DynamoApiKeyRepository
from chalicelib.domain.api_keys import ApiKey, ApiKeyStatus, Scope
from chalicelib.domain.errors import Forbidden, RateLimited, Unauthenticated, VersionConflict
from chalicelib.domain.users import AuditEvent
from chalicelib.services import api_keys
from tests.memory.api_keys import MemoryApiKeyRepository

AT = "2026-03-14T10:00:00.000000Z"
LATER = "2026-03-14T11:00:00.000000Z"


def key_of(facility_id: str = "fac_1", at: str = AT, **kwargs) -> tuple[ApiKey, str]:
    return ApiKey.issue(
        facility_id, "server", kwargs.pop("scopes", None), at=at, by="adm", **kwargs
    )


def event(action: str, key: ApiKey) -> AuditEvent:
    return AuditEvent.new(action, at=AT, actor_id="adm", target=key.id, ip=None)


class TestApiKeyRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def repository(self, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
        if request.param == "memory":
            return MemoryApiKeyRepository()
        request.getfixturevalue("table")
        return DynamoApiKeyRepository()

    def test_a_created_key_reads_back_by_prefix_and_in_its_facility(self, repository):
        first, _ = key_of(scopes=["read"], rate_limit_per_minute=7)
        second, _ = key_of(at=LATER)
        other, _ = key_of("fac_2")
        for key in (first, second, other):
            repository.create(key, event("facility.api_key_created", key))
        assert repository.get(first.prefix) == first
        assert repository.get("0123456789abcdef") is None
        assert repository.of_facility("fac_1") == [second, first]
        assert repository.of_facility("fac_3") == []

    def test_a_taken_prefix_creates_nothing(self, repository):
        key, _ = key_of()
        repository.create(key, event("facility.api_key_created", key))
        again = replace(key_of("fac_2")[0], prefix=key.prefix)
        with pytest.raises(VersionConflict):
            repository.create(again, event("facility.api_key_created", again))
        assert repository.get(key.prefix) == key

    def test_a_key_is_revoked_once(self, repository):
        key, _ = key_of()
        repository.create(key, event("facility.api_key_created", key))
        revoked = key.revoked(at=LATER, by="adm2")
        repository.revoke(revoked, event("facility.api_key_revoked", key))
        stored = repository.get(key.prefix)
        assert (stored.status, stored.revoked_at, stored.revoked_by) == (
            ApiKeyStatus.REVOKED,
            LATER,
            "adm2",
        )
        with pytest.raises(VersionConflict):
            repository.revoke(revoked, event("facility.api_key_revoked", key))

    def test_a_window_counts_up_to_its_limit_and_a_new_window_starts_over(self, repository):
        key, _ = key_of()
        repository.create(key, event("facility.api_key_created", key))
        counts = [repository.count_request(key.prefix, 60, 3, 600) for _ in range(5)]
        assert counts == [1, 2, 3, 0, 0]
        assert repository.count_request(key.prefix, 120, 3, 600) == 1

    def test_touch_sets_last_used_at(self, repository):
        key, _ = key_of()
        repository.create(key, event("facility.api_key_created", key))
        repository.touch(key.prefix, LATER)
        repository.touch("0123456789abcdef", LATER)  # no such key: nothing
        assert repository.get(key.prefix).last_used_at == LATER
        assert repository.get("0123456789abcdef") is None


def test_authentication_counts_each_request_and_touches_once_a_window():
    repository = MemoryApiKeyRepository()
    key, secret = key_of(scopes=["read"], rate_limit_per_minute=2)
    repository.create(key, event("facility.api_key_created", key))

    first = api_keys.authenticate(repository, secret, default_limit=100, now=61.0)
    touched = repository.get(key.prefix).last_used_at
    second = api_keys.authenticate(repository, secret, default_limit=100, now=62.0)
    assert (first.limit, first.remaining, second.remaining) == (2, 1, 0)
    assert touched == "1970-01-01T00:01:01.000000Z"
    assert repository.get(key.prefix).last_used_at == touched  # not written again this minute
    with pytest.raises(RateLimited) as raised:
        api_keys.authenticate(repository, secret, default_limit=100, now=75.0)
    assert (raised.value.limit, raised.value.retry_after) == (2, 45)
    assert api_keys.authenticate(repository, secret, default_limit=100, now=120.0).remaining == 1

    api_keys.require_scope(first, Scope.READ)
    with pytest.raises(Forbidden):
        api_keys.require_scope(first, Scope.PAYOUTS)


@pytest.mark.parametrize("wrong", ["", "fk_0123456789abcdef_x", "eyJ.x.y"])
def test_authentication_refuses_what_is_not_an_active_key(wrong):
    repository = MemoryApiKeyRepository()
    key, secret = key_of()
    repository.create(key, event("facility.api_key_created", key))
    for presented in (wrong, f"fk_{key.prefix}_wrong"):
        with pytest.raises(Unauthenticated):
            api_keys.authenticate(repository, presented, default_limit=100)
    repository.revoke(key.revoked(at=LATER, by="adm"), event("facility.api_key_revoked", key))
    with pytest.raises(Unauthenticated):
        api_keys.authenticate(repository, secret, default_limit=100)
    assert repository.counters == {}  # nothing refused was counted
