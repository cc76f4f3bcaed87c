"""Facility API keys in the domain: scopes, the secret's shape, the keyed hash, revocation and the
rate-limit window (``chalicelib/domain/api_keys.py``). No I/O."""

from __future__ import annotations

import pytest

from chalicelib.domain.api_keys import (
    ALL_SCOPES,
    ApiKey,
    ApiKeyStatus,
    Scope,
    Window,
    hash_secret,
    key_id_for,
    parse_scopes,
    parse_secret,
    prefix_of_key_id,
)
from chalicelib.domain.errors import InvalidRequest

AT = "2026-12-01T10:00:00.000000Z"


def issue(**kwargs) -> tuple[ApiKey, str]:
    return ApiKey.issue(
        "fac_1", kwargs.pop("name", "server"), kwargs.pop("scopes", None), at=AT, by="adm", **kwargs
    )


def test_no_scopes_means_all_and_given_ones_are_kept_once_in_order():
    assert parse_scopes(None) == ALL_SCOPES
    assert parse_scopes(["payouts", "read", "payouts"]) == (Scope.READ, Scope.PAYOUTS)


@pytest.mark.parametrize("raw", [[], ["admin"], ["read", "READ"], [""]])
def test_unknown_or_no_scopes_are_refused(raw):
    with pytest.raises(InvalidRequest):
        parse_scopes(raw)


def test_a_new_key_has_a_secret_named_by_its_public_prefix():
    key, secret = issue(scopes=["read"])
    assert secret.startswith(f"fk_{key.prefix}_")
    assert parse_secret(secret) == key.prefix
    assert key.id == key_id_for(key.prefix)
    assert prefix_of_key_id(key.id) == key.prefix
    assert (key.status, key.scopes, key.last_used_at) == (ApiKeyStatus.ACTIVE, (Scope.READ,), None)
    assert key.allows(Scope.READ)
    assert not key.allows(Scope.PAYOUTS)


def test_only_the_keyed_hash_is_kept_and_it_verifies_the_secret_alone():
    key, secret = issue()
    assert secret not in repr(key)
    assert key.secret_hash == hash_secret(key.salt, secret)
    assert key.verifies(secret)
    for wrong in (secret + "x", secret[:-1], f"fk_{key.prefix}_guess", ""):
        assert not key.verifies(wrong)


def test_each_key_has_its_own_salt():
    first, _ = issue()
    second, _ = issue()
    assert first.salt != second.salt
    assert hash_secret(first.salt, "same") != hash_secret(second.salt, "same")


def test_a_revoked_key_authenticates_nothing_and_stays_revoked():
    key, secret = issue()
    revoked = key.revoked(at=AT, by="adm")
    assert key.authenticates(secret)
    assert not revoked.authenticates(secret)
    assert (revoked.status, revoked.revoked_at, revoked.revoked_by) == (
        ApiKeyStatus.REVOKED,
        AT,
        "adm",
    )
    assert revoked.revoked(at="later", by="other") == revoked


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fk_",
        "fk_0123456789abcdef",
        "fk_0123456789abcdef_",
        "fk_0123456789ABCDEF_x",
        "fk_0123_x",
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
        "fk_0123456789abcdef_" + "x" * 300,
    ],
)
def test_a_secret_not_shaped_like_ours_names_no_key(text):
    assert parse_secret(text) is None


@pytest.mark.parametrize("key_id", ["key_", "key_xyz", "0123456789abcdef", "key_0123456789abcdeF"])
def test_a_key_id_not_ours_names_no_prefix(key_id):
    assert prefix_of_key_id(key_id) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"rate_limit_per_minute": 100_001}, "rate_limit_per_minute"),
    ],
)
def test_a_key_needs_a_name_and_a_sane_limit(kwargs, field):
    with pytest.raises(InvalidRequest) as raised:
        issue(**kwargs)
    assert raised.value.details[0]["field"] == field


def test_the_limit_is_the_keys_own_or_the_default():
    assert issue()[0].limit(100) == 100
    assert issue(rate_limit_per_minute=7)[0].limit(100) == 7


@pytest.mark.parametrize(
    ("now", "start", "retry_after"), [(120, 120, 60), (121, 120, 59), (179, 120, 1)]
)
def test_a_window_is_a_minute_and_says_when_the_next_begins(now, start, retry_after):
    window = Window.at(now)
    assert (window.start, window.retry_after) == (start, retry_after)
