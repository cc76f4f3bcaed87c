"""Facility API keys (``chalicelib/domain/api_keys.py``): issued, listed and revoked by admins,
and presented by a facility on each of its requests (API.md, "Facilities").

Authenticating a request costs one strongly consistent read (the key, by the secret's prefix) and
one conditional write (the key's counter of the current minute: ``count_request``), which refuses
past the limit however many requests race for it. The key's ``last_used_at`` is written only by
the first request of a window, so most requests write nothing else. An ``ApiKeyRepository``
(``adapters/dynamo/api_key_repository.py``) keeps the keys and counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chalicelib.adapters.clock import now_iso, to_iso
from chalicelib.domain.api_keys import (
    WINDOW_SECONDS,
    ApiKey,
    Scope,
    Window,
    parse_secret,
    prefix_of_key_id,
)
from chalicelib.domain.errors import (
    ApiKeyNotFound,
    FacilityNotFound,
    Forbidden,
    RateLimited,
    Unauthenticated,
)
from chalicelib.domain.users import AuditEvent
from chalicelib.services.facilities import FacilityRepository

# A window's counter outlives its minute by this much, then the table's TTL removes it.
COUNTER_TTL_SECONDS = 5 * 60


def epoch_now() -> float:
    """Seconds since the epoch: the clock of the rate-limit windows."""
    return time.time()


class ApiKeyRepository(Protocol):
    def create(self, key: ApiKey, event: AuditEvent) -> None:
        """The key and the audit event in one write; raises VersionConflict (nothing written)
        if the key's prefix is taken."""
        ...

    def get(self, prefix: str) -> ApiKey | None:
        """The key with this prefix, read strongly consistent."""
        ...

    def of_facility(self, facility_id: str) -> list[ApiKey]:
        """The facility's keys, newest first."""
        ...

    def revoke(self, key: ApiKey, event: AuditEvent) -> None:
        """Store ``key`` (revoked) and the audit event in one write, if the stored key is still
        active; raises VersionConflict (nothing written) otherwise."""
        ...

    def count_request(self, prefix: str, window_start: int, limit: int, expires_at: int) -> int:
        """Count one request of the key in the window, unless ``limit`` are counted already:
        returns the window's count with this request, or 0 when refused (nothing counted)."""
        ...

    def touch(self, prefix: str, at: str) -> None:
        """Set the key's ``last_used_at``."""
        ...


class GatewayKeys(Protocol):
    """The API Gateway keys of a deployed stage's usage plan, one per facility key (the outer
    rate guard: ``chalicelib/api/gateway_authorizer.py``). Locally there is no gateway and
    nothing to do (``adapters/api_gateway_keys.NoGatewayKeys``)."""

    def register(self, prefix: str, facility_id: str) -> None:
        """Make the key's usage identifier a key of the usage plan; registering it again is
        harmless. Raises ProviderUnavailable: the gateway refused or did not answer."""
        ...

    def remove(self, prefix: str) -> None:
        """Drop the key's API Gateway key (if any); failures are logged, not raised: a dangling
        gateway key admits nothing the app does not refuse."""
        ...


@dataclass(frozen=True)
class FacilityCaller:
    """A facility authenticated by one of its keys, and where its key stands in this minute."""

    key: ApiKey
    limit: int
    remaining: int

    @property
    def facility_id(self) -> str:
        return self.key.facility_id


def issue_key(
    keys: ApiKeyRepository,
    facilities: FacilityRepository,
    facility_id: str,
    name: str,
    scopes: Iterable[str] | None,
    *,
    rate_limit_per_minute: int | None,
    admin_id: str,
    ip: str | None,
    gateway: GatewayKeys,
) -> tuple[ApiKey, str]:
    """A new key of the facility and its secret; the key and its audit event in one write.

    The key's API Gateway key is registered first: a key the app stores is never one the gateway
    would refuse. If the write then fails, the gateway key names a prefix no key has, which the
    app refuses anyway.

    Raises:
        FacilityNotFound: no such facility.
        InvalidRequest: a bad name, scope or rate limit.
        ProviderUnavailable: API Gateway could not register the key; nothing is written.
        VersionConflict: the random prefix was taken; nothing is written.
    """
    if facilities.get(facility_id) is None:
        raise FacilityNotFound(f"facility {facility_id} does not exist")
    now = now_iso()
    key, secret = ApiKey.issue(
        facility_id,
        name,
        scopes,
        at=now,
        by=admin_id,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    event = AuditEvent.new(
        "facility.api_key_created",
        at=now,
        actor_id=admin_id,
        target=key.id,
        ip=ip,
        facility_id=facility_id,
        name=key.name,
        scopes=",".join(key.scopes),
    )
    gateway.register(key.prefix, facility_id)
    keys.create(key, event)
    return key, secret


def keys_of_facility(
    keys: ApiKeyRepository, facilities: FacilityRepository, facility_id: str
) -> list[ApiKey]:
    """The facility's keys, newest first.

    Raises:
        FacilityNotFound: no such facility.
    """
    if facilities.get(facility_id) is None:
        raise FacilityNotFound(f"facility {facility_id} does not exist")
    return keys.of_facility(facility_id)


def revoke_key(
    keys: ApiKeyRepository,
    facilities: FacilityRepository,
    facility_id: str,
    key_id: str,
    *,
    admin_id: str,
    ip: str | None,
    gateway: GatewayKeys,
) -> ApiKey:
    """Revoke the key: the next request with it is refused (by the app at once; its API Gateway
    key is removed after). Revoking a revoked key changes nothing and answers it as it is.

    Raises:
        FacilityNotFound: no such facility.
        ApiKeyNotFound: the facility has no key with this id.
        VersionConflict: the key was revoked by a concurrent request; safe to retry.
    """
    if facilities.get(facility_id) is None:
        raise FacilityNotFound(f"facility {facility_id} does not exist")
    prefix = prefix_of_key_id(key_id)
    key = keys.get(prefix) if prefix is not None else None
    if key is None or key.facility_id != facility_id:
        raise ApiKeyNotFound(f"api key {key_id} does not exist")
    if not key.active:
        return key
    now = now_iso()
    revoked = key.revoked(at=now, by=admin_id)
    event = AuditEvent.new(
        "facility.api_key_revoked",
        at=now,
        actor_id=admin_id,
        target=key.id,
        ip=ip,
        facility_id=facility_id,
    )
    keys.revoke(revoked, event)
    gateway.remove(key.prefix)
    return revoked


def authenticate(
    keys: ApiKeyRepository,
    secret: str,
    *,
    default_limit: int,
    now: float | None = None,
) -> FacilityCaller:
    """The facility whose active key ``secret`` is, once this request is counted.

    Raises:
        Unauthenticated: not one of our secrets, no such key, a wrong secret or a revoked key.
        RateLimited: the key used up its requests of this minute (nothing counted).
    """
    prefix = parse_secret(secret)
    key = keys.get(prefix) if prefix is not None else None
    if key is None or not key.authenticates(secret):
        raise Unauthenticated("the API key is not valid")
    moment = epoch_now() if now is None else now
    window = Window.at(int(moment))
    limit = key.limit(default_limit)
    counted = keys.count_request(
        key.prefix,
        window.start,
        limit,
        expires_at=window.start + WINDOW_SECONDS + COUNTER_TTL_SECONDS,
    )
    if counted == 0:
        raise RateLimited(limit, window.retry_after)
    if counted == 1:  # the window's first request: the one write of last_used_at this minute
        keys.touch(key.prefix, to_iso(datetime.fromtimestamp(moment, UTC)))
    return FacilityCaller(key=key, limit=limit, remaining=limit - counted)


def require_scope(caller: FacilityCaller, scope: Scope) -> None:
    """Raises Forbidden: the caller's key does not have ``scope``."""
    if not caller.key.allows(scope):
        raise Forbidden(f"this API key does not have the {scope} scope")
