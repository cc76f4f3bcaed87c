"""Crypto deposit addresses in DynamoDB: ``ADDR#<currency>#<address>`` -> the user it belongs to,
written once (``attribute_not_exists``), so that a webhook finds the owner of an address and an
address never changes hands. Implements ``services.crypto.AddressRepository``."""

from __future__ import annotations

from pynamodb.exceptions import PutError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import CryptoAddressItem
from chalicelib.adapters.dynamo.transact import condition_failed


class DynamoAddressRepository:
    """``services.crypto.AddressRepository`` on the ledger table."""

    def claim(self, code: str, address: str, user_id: str, at: str) -> bool:
        """Store ``address`` as ``user_id``'s; False (nothing written) if it was stored before,
        for anyone."""
        item = CryptoAddressItem(
            keys.crypto_address_pk(code, address),
            keys.CRYPTO_ADDRESS_SK,
            item_type=CryptoAddressItem.ITEM_TYPE,
            user_id=user_id,
            currency=code,
            address=address,
            created_at=at,
        )
        try:
            item.save(condition=CryptoAddressItem.PK.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def owner(self, code: str, address: str) -> str | None:
        try:
            found = CryptoAddressItem.get(
                keys.crypto_address_pk(code, address), keys.CRYPTO_ADDRESS_SK, consistent_read=True
            )
        except CryptoAddressItem.DoesNotExist:
            return None
        return found.user_id
