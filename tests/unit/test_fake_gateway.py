"""The fake crypto gateway's command line sends events the webhook route accepts: straight to a
webhook URL (``--url``), or through the fake gateway process (``--gateway``), which checks that
the address was handed out or the payout requested."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from chalicelib.adapters.crypto_gateway import Payout, derive_address
from chalicelib.adapters.crypto_gateway_http import HttpCryptoGateway
from chalicelib.config import LOCAL_CRYPTO_ADDRESS_SECRET, LOCAL_CRYPTO_WEBHOOK_SECRET
from chalicelib.domain.errors import InvalidWebhook
from chalicelib.services.crypto import verify
from infra.local import fake_gateway
from infra.local.crypto_gateway_server import FakeGatewayState, make_server


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, str | None]]]]:
    """A one-route HTTP server on a free port that records what it gets and answers 200."""
    received: list[tuple[bytes, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((raw, self.headers.get("X-Signature")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"received": true}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/webhooks/crypto", received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("argv", "type_", "data"),
    [
        (
            "confirm-deposit --address bc1qabc12345 --currency BTC --amount 0.01 --tx-hash h1"
            " --event-id evt_1",
            "deposit.confirmed",
            {"address": "bc1qabc12345", "currency": "BTC", "amount": "0.01", "tx_hash": "h1"},
        ),
        (
            "settle-payout --withdrawal-id wd_1 --tx-hash h2 --event-id evt_1",
            "withdrawal.completed",
            {"withdrawal_id": "wd_1", "tx_hash": "h2"},
        ),
        (
            "settle-payout --withdrawal-id wd_1 --fail --reason no --event-id evt_1",
            "withdrawal.failed",
            {"withdrawal_id": "wd_1", "reason": "no"},
        ),
    ],
)
def test_the_cli_sends_signed_events(receiver, monkeypatch, argv, type_, data):
    monkeypatch.delenv("CRYPTO_WEBHOOK_SECRET", raising=False)
    url, received = receiver
    assert fake_gateway.main(["--url", url, *argv.split()]) == 0
    [(raw, header)] = received
    event = verify(raw, header, LOCAL_CRYPTO_WEBHOOK_SECRET)
    assert (event.id, event.type, event.data) == ("evt_1", type_, data)
    with pytest.raises(InvalidWebhook):
        verify(raw, header, "another secret")
    assert json.loads(raw)["type"] == type_


def test_an_unreachable_api_exits_1():
    argv = ["--url", "http://127.0.0.1:9/v1/webhooks/crypto", "settle-payout", "--withdrawal-id"]
    assert fake_gateway.main([*argv, "wd_1"]) == 1


# -- through the fake gateway process -------------------------------------------------------------
@pytest.fixture
def gateway(receiver) -> Iterator[tuple[str, FakeGatewayState]]:
    """The fake gateway on a free port, sending its webhooks to ``receiver``."""
    url, _ = receiver
    state = FakeGatewayState(LOCAL_CRYPTO_ADDRESS_SECRET, url, LOCAL_CRYPTO_WEBHOOK_SECRET)
    server = make_server(0, state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def test_settle_payout_goes_through_the_gateway_and_uses_the_requested_payout(
    receiver, gateway, capsys
):
    _, received = receiver
    url, _ = gateway
    assert fake_gateway.main(["--gateway", url, "settle-payout", "--withdrawal-id", "wd_1"]) == 1
    assert "no payout was requested for wd_1" in capsys.readouterr().out
    assert received == []

    HttpCryptoGateway(url).request_payout(Payout("wd_1", "ETH", 10**17, "0xdestination"))
    argv = ["--gateway", url, "settle-payout", "--withdrawal-id", "wd_1", "--event-id", "evt_9"]
    assert fake_gateway.main([*argv, "--tx-hash", "0xhash"]) == 0
    [(raw, header)] = received
    event = verify(raw, header, LOCAL_CRYPTO_WEBHOOK_SECRET)
    assert (event.id, event.type) == ("evt_9", "withdrawal.completed")
    assert event.data == {
        "withdrawal_id": "wd_1",
        "tx_hash": "0xhash",
        "currency": "ETH",
        "amount": "0.100000000000000000",
    }
    # The other outcome is refused now; the listing shows the settled payout.
    assert (
        fake_gateway.main(["--gateway", url, "settle-payout", "--withdrawal-id", "wd_1", "--fail"])
        == 1
    )
    capsys.readouterr()
    assert fake_gateway.main(["--gateway", url, "payouts"]) == 0
    listed = json.loads(capsys.readouterr().out.split(" ", 2)[2])
    assert [(p["withdrawal_id"], p["status"], p["tx_hash"]) for p in listed["data"]] == [
        ("wd_1", "completed", "0xhash")
    ]


def test_confirm_deposit_goes_through_the_gateway_for_an_address_it_handed_out(receiver, gateway):
    _, received = receiver
    url, _ = gateway
    argv = ["--gateway", url, "confirm-deposit", "--currency", "BTC", "--amount", "0.5"]
    assert fake_gateway.main([*argv, "--address", "bc1qneverhandedout"]) == 1
    address = HttpCryptoGateway(url).deposit_address("usr_1", "BTC")
    assert address == derive_address(LOCAL_CRYPTO_ADDRESS_SECRET, "usr_1", "BTC")
    assert fake_gateway.main([*argv, "--address", address, "--tx-hash", "tx_1"]) == 0
    [(raw, header)] = received
    event = verify(raw, header, LOCAL_CRYPTO_WEBHOOK_SECRET)
    assert event.type == "deposit.confirmed"
    assert event.data == {"address": address, "currency": "BTC", "amount": "0.5", "tx_hash": "tx_1"}


def test_an_unreachable_gateway_exits_1(capsys):
    argv = ["--gateway", "http://127.0.0.1:9", "settle-payout", "--withdrawal-id", "wd_1"]
    assert fake_gateway.main(argv) == 1
    assert "cannot reach http://127.0.0.1:9/payouts/wd_1/settle" in capsys.readouterr().err
