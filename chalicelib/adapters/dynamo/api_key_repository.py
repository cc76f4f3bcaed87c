"""Facility API keys and their per-minute request counters in DynamoDB.
Implements ``services.api_keys.ApiKeyRepository``.

- a key: PK ``APIKEY#<prefix>`` (found by the secret's prefix with one strongly consistent
  GetItem), in GSI2 under ``FACKEYS#<facility id>`` for the facility's list; created with its
  audit event in one write, revoked with its audit event in one write conditioned on
  ``status = active``;
- a counter: PK ``RATE#<prefix>#<window start>``, one ``UpdateItem`` per request:
  ``ADD count :one`` on condition ``attribute_not_exists(count) OR count < :limit``, so parallel
  requests can never count past the limit; ``expires_at`` (TTL) removes it.
"""

from __future__ import annotations

from pynamodb.exceptions import UpdateError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import ApiKeyItem, RateCounterItem
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.domain.api_keys import ApiKey, ApiKeyStatus, Scope
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.users import AuditEvent


def _item(key: ApiKey) -> ApiKeyItem:
    return ApiKeyItem(
        keys.api_key_pk(key.prefix),
        keys.API_KEY_SK,
        item_type=ApiKeyItem.ITEM_TYPE,
        GSI2PK=keys.facility_keys_gsi_pk(key.facility_id),
        GSI2SK=keys.facility_keys_gsi_sk(key.created_at, key.id),
        key_id=key.id,
        facility_id=key.facility_id,
        name=key.name,
        prefix=key.prefix,
        scopes=[str(scope) for scope in key.scopes],
        salt=key.salt,
        secret_hash=key.secret_hash,
        status=str(key.status),
        created_at=key.created_at,
        created_by=key.created_by,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
        revoked_by=key.revoked_by,
        rate_limit_per_minute=key.rate_limit_per_minute,
    )


def _key(item: ApiKeyItem) -> ApiKey:
    limit = item.rate_limit_per_minute
    return ApiKey(
        id=item.key_id,
        facility_id=item.facility_id,
        name=item.name,
        prefix=item.prefix,
        scopes=tuple(Scope(scope) for scope in item.scopes),
        salt=item.salt,
        secret_hash=item.secret_hash,
        status=ApiKeyStatus(item.status),
        created_at=item.created_at,
        created_by=item.created_by,
        last_used_at=item.last_used_at,
        revoked_at=item.revoked_at,
        revoked_by=item.revoked_by,
        rate_limit_per_minute=int(limit) if limit is not None else None,
    )


class DynamoApiKeyRepository:
    """``services.api_keys.ApiKeyRepository`` on the ledger table."""

    def create(self, key: ApiKey, event: AuditEvent) -> None:
        """The key and its audit event, in one write.

        Raises:
            VersionConflict: the prefix (or the event id) is taken; nothing is written.
        """
        write = AtomicWrite()
        write.put(_item(key), ApiKeyItem.PK.does_not_exist(), VersionConflict("prefix taken"))
        write.append_audit(event)
        write.send_or_raise_tag()

    def get(self, prefix: str) -> ApiKey | None:
        try:
            item = ApiKeyItem.get(keys.api_key_pk(prefix), keys.API_KEY_SK, consistent_read=True)
        except ApiKeyItem.DoesNotExist:
            return None
        return _key(item)

    def of_facility(self, facility_id: str) -> list[ApiKey]:
        """Every key of the facility, newest first (GSI2; a few per facility)."""
        found = ApiKeyItem.facility_index.query(
            keys.facility_keys_gsi_pk(facility_id), scan_index_forward=False
        )
        return [_key(item) for item in found]

    def revoke(self, key: ApiKey, event: AuditEvent) -> None:
        """The revoked key and its audit event, in one write, if the stored key is active.

        Raises:
            VersionConflict: the key is not (or no longer) active; nothing is written.
        """
        write = AtomicWrite()
        write.update(
            _item(key),
            [
                ApiKeyItem.status.set(str(key.status)),
                ApiKeyItem.revoked_at.set(key.revoked_at),
                ApiKeyItem.revoked_by.set(key.revoked_by),
            ],
            ApiKeyItem.status == str(ApiKeyStatus.ACTIVE),
            VersionConflict("the key is not active"),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def count_request(self, prefix: str, window_start: int, limit: int, expires_at: int) -> int:
        item = RateCounterItem(keys.rate_pk(prefix, window_start), keys.RATE_SK)
        try:
            item.update(
                actions=[
                    RateCounterItem.requests.add(1),
                    RateCounterItem.item_type.set(RateCounterItem.ITEM_TYPE),
                    RateCounterItem.expires_at.set(expires_at),
                ],
                condition=RateCounterItem.requests.does_not_exist()
                | (RateCounterItem.requests < limit),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return 0
            raise
        return int(item.requests or 0)  # update() reads back the item as written

    def touch(self, prefix: str, at: str) -> None:
        """Set ``last_used_at`` on an existing key (a key deleted meanwhile is left alone)."""
        item = ApiKeyItem(keys.api_key_pk(prefix), keys.API_KEY_SK)
        try:
            item.update(actions=[ApiKeyItem.last_used_at.set(at)], condition=ApiKeyItem.PK.exists())
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
