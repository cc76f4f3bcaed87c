"""The crypto gateway over HTTP: the ``CryptoGateway`` the API uses when ``CRYPTO_GATEWAY_URL``
is set (the local stack points it at its fake gateway process,
``infra/local/crypto_gateway_server.py``).

Two calls, JSON both ways, stdlib ``urllib`` only (no dependency, nothing imported before the
first call):

- ``POST /addresses`` ``{user_id, currency}`` -> ``{address}``: the user's deposit address;
- ``POST /payouts`` ``{withdrawal_id, currency, amount, destination}`` with header
  ``Idempotency-Key: <withdrawal id>`` -> ``200``/``201``: the gateway sends one payout per
  withdrawal id however often it is asked, so a retry after a lost answer is safe. A ``409``
  (the same withdrawal id with other fields) is a refusal, never a second payout.

Every failure (unreachable, timeout, a non-2xx answer, a body that is not what was promised)
raises ``CryptoGatewayError``: the caller keeps the payout ``requested`` and tries again later.
Amounts travel as integer minor units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.adapters.crypto_gateway import CryptoGatewayError, Payout

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpCryptoGateway:
    """``base_url`` e.g. ``http://127.0.0.1:8003``; ``timeout`` bounds each call (seconds)."""

    base_url: str
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def deposit_address(self, user_id: str, currency: str) -> str:
        answer = self._post("/addresses", {"user_id": user_id, "currency": currency})
        address = answer.get("address")
        if not isinstance(address, str) or not address:
            raise CryptoGatewayError("the gateway answered without an address")
        return address

    def request_payout(self, payout: Payout) -> None:
        body = {
            "withdrawal_id": payout.withdrawal_id,
            "currency": payout.currency,
            "amount": payout.amount,
            "destination": payout.destination,
        }
        self._post("/payouts", body, idempotency_key=payout.withdrawal_id)

    def _post(
        self, path: str, body: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = self.base_url.rstrip("/") + path
        request = urllib.request.Request(  # noqa: S310 - the configured gateway's URL
            url, data=json.dumps(body).encode(), method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            detail = exc.read(1024).decode(errors="replace")
            raise CryptoGatewayError(f"POST {path} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout
            raise CryptoGatewayError(f"POST {path} failed: {exc}") from exc
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CryptoGatewayError(f"POST {path} answered with a body that is not JSON") from exc
        if not isinstance(answer, dict):
            raise CryptoGatewayError(f"POST {path} answered with a body that is not an object")
        return answer
