"""The local stack's fake crypto gateway process (infra/local/crypto_gateway_server.py) and the
API's HTTP client for it (HttpCryptoGateway), together: the server runs on a free 127.0.0.1 port
in a thread, the API is the real app behind chalice's test client with ``CRYPTO_GATEWAY_URL``
pointing at the server, and the server's webhooks reach the app's ``/v1/webhooks/crypto`` through
a small relay (the test client is not an HTTP server)."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from chalicelib.adapters.crypto_gateway import (
    CryptoGatewayError,
    LocalCryptoGateway,
    Payout,
    derive_address,
)
from chalicelib.adapters.crypto_gateway_http import HttpCryptoGateway
from chalicelib.api import dependencies
from chalicelib.api.dependencies import get_crypto_gateway
from chalicelib.config import LOCAL_CRYPTO_ADDRESS_SECRET, LOCAL_CRYPTO_WEBHOOK_SECRET, get_settings
from chalicelib.domain.errors import InvalidWebhook
from chalicelib.services import crypto as crypto_service
from chalicelib.services import payouts
from infra.local import fake_gateway
from infra.local.crypto_gateway_server import FakeGatewayState, make_server
from tests.api import test_crypto
from tests.api.helpers import balances, call
from tests.api.test_crypto import (
    DESTINATION,
    payout_status,
    status_of,
)

people = test_crypto.people  # the same fixture: alice, bob, an admin, their tokens

HOST = "127.0.0.1"


@dataclass
class Running:
    url: str
    state: FakeGatewayState
    delivered: list[tuple[bytes, str | None, int]]  # raw body, X-Signature, the API's status


def serve(server: http.server.HTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def gateway(api_client, monkeypatch) -> Iterator[Running]:
    """The fake gateway on a free port, its webhooks relayed into the app; the app configured
    with ``CRYPTO_GATEWAY_URL``."""
    delivered: list[tuple[bytes, str | None, int]] = []
    relay_lock = threading.Lock()  # the app serves one request at a time

    class Relay(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            signature = self.headers.get("X-Signature")
            headers = {"content-type": "application/json"}
            if signature is not None:
                headers["x-signature"] = signature
            with relay_lock:
                response = api_client.http.request(
                    "POST", "/v1/webhooks/crypto", headers=headers, body=raw
                )
            delivered.append((raw, signature, response.status_code))
            self.send_response(response.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, *args: object) -> None:
            pass

    relay = http.server.ThreadingHTTPServer((HOST, 0), Relay)
    serve(relay)
    state = FakeGatewayState(
        address_secret=LOCAL_CRYPTO_ADDRESS_SECRET,
        webhook_url=f"http://{HOST}:{relay.server_port}/v1/webhooks/crypto",
        webhook_secret=LOCAL_CRYPTO_WEBHOOK_SECRET,
    )
    server = make_server(0, state)
    serve(server)
    url = f"http://{HOST}:{server.server_port}"
    monkeypatch.setenv("CRYPTO_GATEWAY_URL", url)
    get_settings.cache_clear()
    dependencies.reset()
    try:
        yield Running(url, state, delivered)
    finally:
        for s in (server, relay):
            s.shutdown()
            s.server_close()


def ask(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    status, answer = fake_gateway.exchange(request)
    return status, json.loads(answer)


def address_of(client, token: str, currency: str = "BTC") -> str:
    response, body = call(
        client, "POST", "/v1/deposits/crypto/address", token, {"currency": currency}
    )
    assert response.status_code == 200, body
    return body["address"]["address"]


def admin_approves(client, people, withdrawal_id: str) -> dict:
    path = f"/v1/admin/withdrawals/{withdrawal_id}/approve"
    response, answer = call(client, "POST", path, people["tokens"]["admin"])
    assert response.status_code == 200, answer
    return answer["withdrawal"]


def withdraw(client, people, amount: str, key: str) -> dict:
    body = {"amount": amount, "currency": "BTC", "destination": DESTINATION}
    response, answer = call(client, "POST", "/v1/withdrawals", people["tokens"]["alice"], body, key)
    assert response.status_code == 201, answer
    return answer["withdrawal"]


# -- the whole loop -------------------------------------------------------------------------------
def test_deposit_withdraw_and_settle_through_the_gateway_process(api_client, people, gateway):
    assert isinstance(get_crypto_gateway(), HttpCryptoGateway)
    alice = people["alice"]
    address = address_of(api_client, people["tokens"]["alice"])
    # The same function of (secret, user, currency) as the in-process gateway.
    assert address == derive_address(LOCAL_CRYPTO_ADDRESS_SECRET, alice.id, "BTC")
    assert address == LocalCryptoGateway(LOCAL_CRYPTO_ADDRESS_SECRET).deposit_address(
        alice.id, "BTC"
    )

    deposit = {"address": address, "currency": "BTC", "amount": "1", "tx_hash": "tx_in"}
    status, answer = ask(f"{gateway.url}/deposits", "POST", deposit)
    assert (status, answer["webhook"]["status"]) == (200, 200), answer
    assert answer["webhook"]["answer"]["outcome"] == "credited"
    status, answer = ask(f"{gateway.url}/deposits", "POST", deposit)  # the same transfer again
    assert answer["webhook"]["answer"]["outcome"] == "duplicate_tx"
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    # Every webhook it sent carries a valid signature for the API's secret, and only that one.
    for raw, signature, _ in gateway.delivered:
        crypto_service.verify(raw, signature, LOCAL_CRYPTO_WEBHOOK_SECRET)
        with pytest.raises(InvalidWebhook):
            crypto_service.verify(raw, signature, "another secret")

    w = withdraw(api_client, people, "0.25", "w1")
    assert admin_approves(api_client, people, w["id"])["status"] == "processing"
    assert payout_status(w["id"]) == "sent"
    status, listed = ask(f"{gateway.url}/payouts")
    assert status == 200
    [payout] = listed["data"]
    assert (payout["withdrawal_id"], payout["amount"], payout["currency"]) == (
        w["id"],
        25_000_000,
        "BTC",
    )
    assert (payout["status"], payout["requests"], payout["destination"]) == (
        "requested",
        1,
        DESTINATION,
    )

    status, settled = ask(f"{gateway.url}/payouts/{w['id']}/settle", "POST", {})
    assert status == 200, settled
    assert settled["webhook"]["answer"]["outcome"] == "completed"
    assert settled["event"]["data"]["amount"] == "0.25000000"
    assert settled["payout"]["status"] == "completed"
    assert status_of(w["id"]) == "completed"
    assert payout_status(w["id"]) == "completed"
    assert balances(people["btc"]) == (75_000_000, 75_000_000)

    # Settling again redelivers the same event (a no-op); the other outcome is refused.
    status, again = ask(f"{gateway.url}/payouts/{w['id']}/settle", "POST", {})
    assert (status, again["event"]["id"]) == (200, settled["event"]["id"])
    assert again["webhook"]["answer"]["outcome"] == "duplicate"
    status, refused = ask(f"{gateway.url}/payouts/{w['id']}/settle", "POST", {"fail": True})
    assert status == 409, refused
    assert balances(people["btc"]) == (75_000_000, 75_000_000)
    people["world"].check_guarantees()


def test_a_failed_payout_at_the_gateway_process_releases_the_hold(api_client, people, gateway):
    address = address_of(api_client, people["tokens"]["alice"])
    deposit = {"address": address, "currency": "BTC", "amount": "1"}
    assert ask(f"{gateway.url}/deposits", "POST", deposit)[0] == 200
    w = withdraw(api_client, people, "0.25", "w1")
    admin_approves(api_client, people, w["id"])
    body = {"fail": True, "reason": "node down"}
    status, answer = ask(f"{gateway.url}/payouts/{w['id']}/settle", "POST", body)
    assert (status, answer["webhook"]["answer"]["outcome"]) == (200, "failed"), answer
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    assert status_of(w["id"]) == "failed"


def test_payouts_switched_off_leave_it_requested_and_the_retry_sends_it_once(
    api_client, people, gateway
):
    address = address_of(api_client, people["tokens"]["alice"])
    ask(f"{gateway.url}/deposits", "POST", {"address": address, "currency": "BTC", "amount": "1"})
    assert ask(f"{gateway.url}/_config/payouts", "POST", {"fail": True}) == (
        200,
        {"payouts_fail": True},
    )
    w = withdraw(api_client, people, "0.25", "w1")
    assert admin_approves(api_client, people, w["id"])["status"] == "processing"
    assert payout_status(w["id"]) == "requested"
    assert ask(f"{gateway.url}/payouts")[1] == {"data": []}
    status, _ = ask(f"{gateway.url}/payouts/{w['id']}/settle", "POST", {})
    assert status == 404  # nothing to settle: the gateway never got it

    ask(f"{gateway.url}/_config/payouts", "POST", {"fail": False})
    client = HttpCryptoGateway(gateway.url)
    repositories = dependencies.get_payout_repository(), dependencies.get_withdrawal_repository()
    assert payouts.retry_requested(client, *repositories).sent == [w["id"]]
    assert payouts.retry_requested(client, *repositories).outcomes == {}
    [payout] = ask(f"{gateway.url}/payouts")[1]["data"]
    assert (payout["withdrawal_id"], payout["requests"]) == (w["id"], 1)
    assert payout_status(w["id"]) == "sent"


def test_the_address_route_answers_503_when_the_gateway_is_down(api_client, people, monkeypatch):
    monkeypatch.setenv("CRYPTO_GATEWAY_URL", f"http://{HOST}:9")  # discard: nothing listens
    get_settings.cache_clear()
    dependencies.reset()
    response, body = call(
        api_client,
        "POST",
        "/v1/deposits/crypto/address",
        people["tokens"]["alice"],
        {"currency": "BTC"},
    )
    assert (response.status_code, body["error"]["code"]) == (503, "provider_unavailable")


# -- the client -----------------------------------------------------------------------------------
PAYOUT = Payout("wd_1", "BTC", 1_000, "bc1qdestination000")


def test_the_client_is_idempotent_on_the_withdrawal_id(gateway):
    client = HttpCryptoGateway(gateway.url)
    client.request_payout(PAYOUT)
    client.request_payout(PAYOUT)
    [payout] = gateway.state.list_payouts()
    assert (payout["withdrawal_id"], payout["requests"], payout["amount"]) == ("wd_1", 2, 1_000)
    with pytest.raises(CryptoGatewayError, match="409"):
        client.request_payout(Payout("wd_1", "BTC", 2_000, "bc1qdestination000"))
    assert len(gateway.state.list_payouts()) == 1


def test_the_client_sends_the_idempotency_key_header():
    seen: list[tuple[str, str | None, dict]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Idempotency-Key"), body))
            raw = b'{"payout": {}}'
            self.send_response(201)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer((HOST, 0), Recorder)
    serve(server)
    try:
        HttpCryptoGateway(f"http://{HOST}:{server.server_port}/").request_payout(PAYOUT)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [
        (
            "/payouts",
            "wd_1",
            {
                "withdrawal_id": "wd_1",
                "currency": "BTC",
                "amount": 1000,
                "destination": PAYOUT.destination,
            },
        )
    ]


@pytest.mark.parametrize("answer", ["slow", "not_json", "500", "no_address"])
def test_the_client_raises_crypto_gateway_error_on_any_failure(answer):
    class Bad(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            if answer == "slow":
                time.sleep(1.0)
            status, raw = {
                "not_json": (200, b"<html>"),
                "500": (500, b'{"error": "boom"}'),
                "no_address": (200, b'{"address": 7}'),
            }.get(answer, (200, b'{"address": "late"}'))
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Bad)
    server.daemon_threads = True
    serve(server)
    client = HttpCryptoGateway(f"http://{HOST}:{server.server_port}", timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(CryptoGatewayError):
            client.deposit_address("usr_1", "BTC")
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 1.0  # the timeout holds


def test_the_client_raises_when_nothing_listens():
    with pytest.raises(CryptoGatewayError):
        HttpCryptoGateway(f"http://{HOST}:9", timeout=1).request_payout(PAYOUT)


# -- the server's refusals ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/addresses", {"user_id": "usr_1", "currency": "USD"}, 400),
        ("/addresses", {"currency": "BTC"}, 400),
        ("/payouts", {**PAYOUT.__dict__, "amount": "10"}, 400),
        ("/payouts", {**PAYOUT.__dict__, "amount": 0}, 400),
        ("/payouts", {**PAYOUT.__dict__, "currency": "USD"}, 400),
        ("/deposits", {"address": "bc1qnever", "currency": "BTC", "amount": "1"}, 404),
        ("/payouts/wd_unknown/settle", {}, 404),
        ("/payouts/wd_1/settle", {"fail": "yes"}, 400),
        ("/_config/payouts", {"fail": 1}, 400),
        ("/nowhere", {}, 404),
    ],
)
def test_the_server_refuses_bad_requests(gateway, path, body, status):
    got, answer = ask(f"{gateway.url}{path}", "POST", body)
    assert got == status, answer
    assert answer["error"]["message"]
    assert gateway.state.list_payouts() == []
    assert gateway.delivered == []


def test_a_deposit_to_an_address_of_another_currency_or_a_bad_amount_is_refused(gateway):
    address = gateway.state.address({"user_id": "usr_1", "currency": "BTC"})
    for body in (
        {"address": address, "currency": "ETH", "amount": "1"},
        {"address": address, "currency": "BTC", "amount": "0.000000001"},
        {"address": address, "currency": "BTC", "amount": "1", "tx_hash": "bad hash!"},
    ):
        status, answer = ask(f"{gateway.url}/deposits", "POST", body)
        assert status == 400, answer
    assert gateway.delivered == []


def test_the_server_answers_502_when_the_api_is_down():
    state = FakeGatewayState(LOCAL_CRYPTO_ADDRESS_SECRET, f"http://{HOST}:9/x", "s")
    server = make_server(0, state)
    serve(server)
    url = f"http://{HOST}:{server.server_port}"
    try:
        address = ask(f"{url}/addresses", "POST", {"user_id": "usr_1", "currency": "BTC"})[1]
        body = {"address": address["address"], "currency": "BTC", "amount": "1"}
        status, answer = ask(f"{url}/deposits", "POST", body)
        assert status == 502, answer
        assert answer["webhook"]["status"] is None
        assert ask(f"{url}/health") == (200, {"status": "ok"})
    finally:
        server.shutdown()
        server.server_close()
