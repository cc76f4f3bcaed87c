"""Helpers shared by the API tests of the money routes."""

from __future__ import annotations

import json

from chalicelib.api.dependencies import get_ledger_service
from chalicelib.domain.accounts import OwnerType, wallet_id


def wallet(user_id: str, code: str) -> str:
    return wallet_id(OwnerType.USER, user_id, code)


def balances(account_id: str) -> tuple[int, int]:
    """(posted, available) of an account, read now."""
    a = get_ledger_service().repository.get_account(account_id)
    return a.posted, a.available


def call(client, method: str, path: str, token: str, body=None, key: str | None = None):
    """A JSON request as ``token``'s user (with an Idempotency-Key if given)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    if key:
        headers["idempotency-key"] = key
    raw = json.dumps(body).encode() if body is not None else b""
    response = client.http.request(method, path, headers=headers, body=raw)
    return response, json.loads(response.body)
