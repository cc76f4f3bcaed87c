"""Facility API keys and their rate counters in memory: ``services.api_keys.ApiKeyRepository``."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.domain.api_keys import ApiKey
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.users import AuditEvent


class MemoryApiKeyRepository:
    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.counters: dict[tuple[str, int], int] = {}
        self.events: list[AuditEvent] = []

    def create(self, key: ApiKey, event: AuditEvent) -> None:
        if key.prefix in self.keys or any(e.id == event.id for e in self.events):
            raise VersionConflict("prefix or audit event id taken")
        self.keys[key.prefix] = key
        self.events.append(event)

    def get(self, prefix: str) -> ApiKey | None:
        return self.keys.get(prefix)

    def of_facility(self, facility_id: str) -> list[ApiKey]:
        found = [k for k in self.keys.values() if k.facility_id == facility_id]
        return sorted(found, key=lambda k: (k.created_at, k.id), reverse=True)

    def revoke(self, key: ApiKey, event: AuditEvent) -> None:
        stored = self.keys.get(key.prefix)
        if stored is None or not stored.active or any(e.id == event.id for e in self.events):
            raise VersionConflict("the key is not active")
        self.keys[key.prefix] = replace(
            stored, status=key.status, revoked_at=key.revoked_at, revoked_by=key.revoked_by
        )
        self.events.append(event)

    def count_request(self, prefix: str, window_start: int, limit: int, expires_at: int) -> int:
        counted = self.counters.get((prefix, window_start), 0)
        if counted >= limit:
            return 0
        self.counters[(prefix, window_start)] = counted + 1
        return counted + 1

    def touch(self, prefix: str, at: str) -> None:
        if prefix in self.keys:
            self.keys[prefix] = replace(self.keys[prefix], last_used_at=at)
