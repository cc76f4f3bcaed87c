"""A worked story over HTTP: fund, pay a facility, swap, withdraw, cancel; every balance after
every step, and the guarantees over the whole table at the end."""

from __future__ import annotations

import json

import pyotp

from chalicelib.api.dependencies import get_auth_service, get_ledger_service
from chalicelib.auth import passwords
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.money import parse_amount
from tests.support import LedgerWorld, verified

PASSWORD = "correct horse battery"


def test_fund_pay_a_facility_swap_withdraw_and_cancel(table, api_client):
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    _, secret = auth.create_admin("admin@example.com", PASSWORD)
    alice_token = auth.login("alice@example.com", PASSWORD, None, None).access_token
    admin_token = auth.login(
        "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
    ).access_token
    world = LedgerWorld.create(table)
    ledger = get_ledger_service()

    def call(path: str, body: dict, token: str = alice_token, key: str | None = None):
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        if key:
            headers["idempotency-key"] = key
        response = api_client.http.post(path, body=json.dumps(body).encode(), headers=headers)
        answer = json.loads(response.body)
        assert response.status_code in (200, 201), answer
        return answer

    def balance(code: str) -> tuple[int, int]:
        a = ledger.repository.get_account(wallet_id(OwnerType.USER, alice.id, code))
        return a.posted, a.available

    # 1. Alice is funded with 100.00 USD (through the engine: card deposits come later).
    world.fund(wallet_id(OwnerType.USER, alice.id, "USD"), 100_00)
    assert balance("USD") == (100_00, 100_00)

    # 2. She pays a clinic 30.00.
    clinic = call("/v1/admin/facilities", {"name": "Clinic"}, admin_token)["facility"]
    call(
        "/v1/transfers",
        {"amount": "30.00", "currency": "USD", "to_facility_id": clinic["id"]},
        key="pay",
    )
    assert balance("USD") == (70_00, 70_00)
    clinic_usd = ledger.repository.get_account(wallet_id(OwnerType.FACILITY, clinic["id"], "USD"))
    assert clinic_usd.posted == 30_00

    # 3. She swaps 50.00 USD to BTC at the quoted rate.
    quote = call(
        "/v1/fx/quotes", {"from_currency": "USD", "to_currency": "BTC", "from_amount": "50.00"}
    )["quote"]
    btc_bought = parse_amount(quote["to_amount"], "BTC")
    call("/v1/fx/swaps", {"quote_id": quote["id"]}, key="swap")
    assert balance("USD") == (20_00, 20_00)
    assert balance("BTC") == (btc_bought, btc_bought)
    assert ledger.platform_balance(PlatformAccount(PlatformKind.FX_POOL, "USD")) == 50_00
    assert ledger.platform_balance(PlatformAccount(PlatformKind.FX_POOL, "BTC")) == -btc_bought

    # 4. She asks to withdraw all her BTC: held, not yet posted.
    amount = quote["to_amount"]
    withdrawal = call(
        "/v1/withdrawals",
        {"amount": amount, "currency": "BTC", "destination": "bc1qexampleaddress0000000000"},
        key="out",
    )["withdrawal"]
    assert withdrawal["status"] == "pending_review"
    assert balance("BTC") == (btc_bought, 0)

    # 5. She cancels: the hold is released.
    cancelled = call(f"/v1/withdrawals/{withdrawal['id']}/cancel", {})["withdrawal"]
    assert cancelled["status"] == "cancelled"
    assert balance("BTC") == (btc_bought, btc_bought)
    assert balance("USD") == (20_00, 20_00)
    world.check_guarantees()
