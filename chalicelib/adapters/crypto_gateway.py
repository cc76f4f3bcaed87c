"""The crypto gateway: deposit addresses, payouts, and the signature of its webhooks.

``CryptoGateway`` is what the services talk to. ``LocalCryptoGateway`` is the local and test
implementation: deterministic and offline. Its addresses are an HMAC of user and currency under
``CRYPTO_ADDRESS_SECRET``, shaped like the real thing (``bc1q...`` for BTC, ``0x...`` for ETH and
USDT) but not valid on any chain; its payouts are remembered in memory and never leave the
process. ``HttpCryptoGateway`` (``crypto_gateway_http.py``) implements the same two methods over
HTTP; the API uses it when ``CRYPTO_GATEWAY_URL`` is set (the local stack's fake gateway process
answers with the same addresses).

Webhooks carry ``X-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``;
``sign`` builds that header (the local fake gateway and the tests use it), the webhook service
checks it; the scheme itself is ``domain/signatures.py``, which outbound webhooks use too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Protocol

from chalicelib.domain.signatures import signature_header

DEPOSIT_CURRENCIES = ("BTC", "ETH", "USDT")
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class CryptoGatewayError(Exception):
    """The gateway refused or did not answer; the caller may try again later."""


@dataclass(frozen=True)
class Payout:
    """A payout to send: the withdrawal id is the gateway's idempotency key."""

    withdrawal_id: str
    currency: str
    amount: int  # minor units
    destination: str


class CryptoGateway(Protocol):
    def deposit_address(self, user_id: str, currency: str) -> str: ...
    def request_payout(self, payout: Payout) -> None: ...


def derive_address(secret: str, user_id: str, currency: str) -> str:
    """The same address for the same user and currency, and no other user's."""
    digest = hmac.new(
        secret.encode(), f"deposit\x1f{user_id}\x1f{currency}".encode(), hashlib.sha256
    ).digest()
    if currency == "BTC":
        return "bc1q" + "".join(_BECH32[b % 32] for b in digest)
    return "0x" + digest[:20].hex()


@dataclass
class LocalCryptoGateway:
    """Deterministic and offline (local stack and tests). ``fail`` makes payouts raise."""

    address_secret: str
    payouts: list[Payout] = field(default_factory=list)
    fail: bool = False

    def deposit_address(self, user_id: str, currency: str) -> str:
        return derive_address(self.address_secret, user_id, currency)

    def request_payout(self, payout: Payout) -> None:
        if self.fail:
            raise CryptoGatewayError(f"payout {payout.withdrawal_id} refused")
        if payout not in self.payouts:  # idempotent on the withdrawal id
            self.payouts.append(payout)


def sign(secret: str, raw_body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Signature`` header for ``raw_body`` (now, unless ``timestamp`` is given)."""
    t = int(time.time()) if timestamp is None else timestamp
    return signature_header(secret, t, raw_body)
