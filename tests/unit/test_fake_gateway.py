"""The fake crypto gateway's command line sends events the webhook route accepts."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from chalicelib.config import LOCAL_CRYPTO_WEBHOOK_SECRET
from chalicelib.domain.errors import InvalidWebhook
from chalicelib.services.crypto import verify
from infra.local import fake_gateway


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
