"""Crypto deposit addresses in memory: ``services.crypto.AddressRepository``."""

from __future__ import annotations


class MemoryAddressRepository:
    def __init__(self) -> None:
        self.owners: dict[tuple[str, str], str] = {}

    def claim(self, code: str, address: str, user_id: str, at: str) -> bool:
        if (code, address) in self.owners:
            return False
        self.owners[(code, address)] = user_id
        return True

    def owner(self, code: str, address: str) -> str | None:
        return self.owners.get((code, address))
