"""A FAKE crypto gateway for the local stack, as a process (like localstripe for Stripe): no chain,
no custody, nothing leaves this machine. It speaks the protocol of ``HttpCryptoGateway``
(``chalicelib/adapters/crypto_gateway_http.py``), keeps everything in memory, binds 127.0.0.1 only.

Asked by the API:

- ``POST /addresses`` ``{user_id, currency}`` -> ``200 {"address"}``: deterministic, the same
  function of (``CRYPTO_ADDRESS_SECRET``, user, currency) as ``LocalCryptoGateway``;
- ``POST /payouts`` ``{withdrawal_id, currency, amount (minor units), destination}`` ->
  ``201 {"payout"}`` the first time, ``200`` with the same payout on a repeat (the withdrawal id is
  the idempotency key: one payout however often it is asked), ``409`` for the same id with other
  fields, ``503`` while payouts are switched off (below).

Told by a person (or ``python -m infra.local.fake_gateway``, or a test), each of which sends one
webhook signed with ``CRYPTO_WEBHOOK_SECRET`` (``X-Signature``) to ``CRYPTO_WEBHOOK_URL`` (default
the local API's ``/v1/webhooks/crypto``):

- ``POST /deposits`` ``{address, currency, amount (decimal string), tx_hash?, event_id?}``: an
  incoming transfer to an address this gateway handed out -> ``deposit.confirmed``;
- ``POST /payouts/<withdrawal id>/settle`` ``{fail?, reason?, tx_hash?, event_id?}``: a requested
  payout went out (``withdrawal.completed``, with the payout's amount and currency) or failed
  (``withdrawal.failed``). A payout settles once: asking again redelivers the same event, asking
  for the other outcome answers ``409``.

Both answer ``200`` with the API's status and answer under ``webhook`` when the API took the
event (2xx), ``502`` when it refused it or could not be reached (the settlement is kept, so asking
again redelivers it); ``404`` for an unknown address or payout, ``400`` for bad input.

And: ``GET /payouts`` (every payout, oldest first), ``GET /payouts/<id>``, ``GET /health``, and
``POST /_config/payouts`` ``{"fail": true|false}`` to make ``POST /payouts`` answer ``503`` (to
watch a payout stay ``requested`` and the retry send it later).

Usage: ``python -m infra.local.crypto_gateway_server PORT`` (the stack starts it; see stack.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import urllib.error
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.crypto_gateway import DEPOSIT_CURRENCIES, derive_address
from chalicelib.config import LOCAL_CRYPTO_ADDRESS_SECRET
from chalicelib.domain.errors import InvalidAmount, UnsupportedCurrency
from chalicelib.domain.money import format_amount, parse_amount
from infra.local import fake_gateway
from infra.local.child import stack_id_headers

HOST = "127.0.0.1"
MAX_BODY_BYTES = 64 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9:._-]{1,128}")
_SETTLE = re.compile(r"/payouts/([A-Za-z0-9:._-]{1,128})/settle")
_ONE_PAYOUT = re.compile(r"/payouts/([A-Za-z0-9:._-]{1,128})")
REQUESTED, COMPLETED, FAILED = "requested", "completed", "failed"


class Refused(Exception):
    """An answer other than 2xx: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakePayout:
    withdrawal_id: str
    currency: str
    amount: int
    destination: str
    status: str
    requested_at: str
    requests: int = 1  # how often the API asked for it (all but the first were repeats)
    settled_at: str | None = None
    event: dict[str, Any] | None = field(default=None, repr=False)  # the settlement, to redeliver

    def view(self) -> dict[str, Any]:
        shown = asdict(self)
        shown.pop("event")
        shown["amount_decimal"] = format_amount(self.amount, self.currency)
        shown["tx_hash"] = (self.event or {}).get("data", {}).get("tx_hash")
        return shown


class FakeGatewayState:
    """What the fake gateway knows: the addresses it handed out and the payouts it was asked for.

    One lock guards it; webhooks are sent outside the lock (the API may call back meanwhile).
    """

    def __init__(self, address_secret: str, webhook_url: str, webhook_secret: str) -> None:
        self.address_secret = address_secret
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.addresses: dict[str, tuple[str, str]] = {}  # address -> (user, currency)
        self.payouts: dict[str, FakePayout] = {}
        self.payouts_fail = False
        self.lock = threading.Lock()

    # -- asked by the API -------------------------------------------------------------------
    def address(self, body: dict[str, Any]) -> str:
        user_id, code = body.get("user_id"), body.get("currency")
        if not isinstance(user_id, str) or not _TOKEN.fullmatch(user_id):
            raise Refused(400, "user_id must be 1 to 128 letters, digits or :._-")
        if code not in DEPOSIT_CURRENCIES:
            raise Refused(400, f"currency must be one of {', '.join(DEPOSIT_CURRENCIES)}")
        address = derive_address(self.address_secret, user_id, code)
        with self.lock:
            self.addresses[address] = (user_id, code)
        return address

    def request_payout(self, body: dict[str, Any]) -> tuple[bool, FakePayout]:
        """``(created, payout)``; a repeat of the same request is not a second payout."""
        wanted = self._payout_fields(body)
        with self.lock:
            if self.payouts_fail:
                raise Refused(503, "payouts are switched off (POST /_config/payouts)")
            known = self.payouts.get(wanted["withdrawal_id"])
            if known is not None:
                if any(getattr(known, name) != value for name, value in wanted.items()):
                    raise Refused(409, "this withdrawal id was requested with other fields")
                known.requests += 1
                return False, known
            payout = FakePayout(**wanted, status=REQUESTED, requested_at=now_iso())
            self.payouts[payout.withdrawal_id] = payout
            return True, payout

    @staticmethod
    def _payout_fields(body: dict[str, Any]) -> dict[str, Any]:
        withdrawal_id, code = body.get("withdrawal_id"), body.get("currency")
        amount, destination = body.get("amount"), body.get("destination")
        if not isinstance(withdrawal_id, str) or not _TOKEN.fullmatch(withdrawal_id):
            raise Refused(400, "withdrawal_id must be 1 to 128 letters, digits or :._-")
        if code not in DEPOSIT_CURRENCIES:
            raise Refused(400, f"currency must be one of {', '.join(DEPOSIT_CURRENCIES)}")
        if type(amount) is not int or amount <= 0:
            raise Refused(400, "amount must be a positive integer (minor units)")
        if not isinstance(destination, str) or not _TOKEN.fullmatch(destination):
            raise Refused(400, "destination must be 1 to 128 letters, digits or :._-")
        return {
            "withdrawal_id": withdrawal_id,
            "currency": code,
            "amount": amount,
            "destination": destination,
        }

    def list_payouts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p.view() for p in self.payouts.values()]

    def payout(self, withdrawal_id: str) -> dict[str, Any]:
        with self.lock:
            found = self.payouts.get(withdrawal_id)
            if found is None:
                raise Refused(404, f"no payout was requested for {withdrawal_id}")
            return found.view()

    def set_payouts_fail(self, body: dict[str, Any]) -> bool:
        fail = body.get("fail")
        if not isinstance(fail, bool):
            raise Refused(400, "fail must be true or false")
        with self.lock:
            self.payouts_fail = fail
        return fail

    # -- told by a person ---------------------------------------------------------------------
    def confirm_deposit(self, body: dict[str, Any]) -> dict[str, Any]:
        address, code, amount = body.get("address"), body.get("currency"), body.get("amount")
        with self.lock:
            owner = self.addresses.get(address) if isinstance(address, str) else None
        if owner is None:
            raise Refused(404, "this gateway never handed out that address")
        if code != owner[1]:
            raise Refused(400, f"the address is a {owner[1]} address")
        try:
            parse_amount(amount, code)
        except (InvalidAmount, UnsupportedCurrency) as exc:
            raise Refused(400, f"amount: {exc}") from exc
        tx_hash = _optional_token(body, "tx_hash") or fake_gateway.new_tx_hash()
        event = fake_gateway.deposit_event(
            address, code, amount, tx_hash, _optional_token(body, "event_id")
        )
        return {"event": event, "webhook": self._deliver(event)}

    def settle(self, withdrawal_id: str, body: dict[str, Any]) -> dict[str, Any]:
        fail = body.get("fail", False)
        if not isinstance(fail, bool):
            raise Refused(400, "fail must be true or false")
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or not 0 < len(reason) <= 500):
            raise Refused(400, "reason must be 1 to 500 characters")
        outcome = FAILED if fail else COMPLETED
        with self.lock:
            payout = self.payouts.get(withdrawal_id)
            if payout is None:
                raise Refused(404, f"no payout was requested for {withdrawal_id}")
            if payout.status not in (REQUESTED, outcome):
                raise Refused(409, f"payout {withdrawal_id} already {payout.status}")
            if payout.event is None:  # the first settlement; later ones redeliver it
                amount = {
                    "currency": payout.currency,
                    "amount": format_amount(payout.amount, payout.currency),
                }
                payout.event = fake_gateway.payout_event(
                    withdrawal_id,
                    fail=fail,
                    reason=reason or "payout failed at the fake gateway",
                    tx_hash=_optional_token(body, "tx_hash"),
                    event_id=_optional_token(body, "event_id"),
                    extra=amount,
                )
                payout.status, payout.settled_at = outcome, now_iso()
            event, shown = payout.event, payout.view()
        return {"payout": shown, "event": event, "webhook": self._deliver(event)}

    def _deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            status, answer = fake_gateway.deliver(self.webhook_url, self.webhook_secret, event)
        except urllib.error.URLError as exc:
            return {"url": self.webhook_url, "status": None, "error": str(exc.reason)}
        try:
            parsed: Any = json.loads(answer)
        except ValueError:
            parsed = answer
        return {"url": self.webhook_url, "status": status, "answer": parsed}


def _optional_token(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise Refused(400, f"{name} must be 1 to 128 letters, digits or :._-")
    return value


def _delivered(answer: dict[str, Any]) -> int:
    status = answer["webhook"].get("status")
    return 200 if status is not None and 200 <= status < 300 else 502


def make_handler(state: FakeGatewayState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(self._get)

        def do_POST(self) -> None:
            self._answer(self._post)

        def _get(self) -> tuple[int, dict[str, Any]]:
            if self.path == "/health":
                return 200, {"status": "ok"}
            if self.path == "/payouts":
                return 200, {"data": state.list_payouts()}
            match = _ONE_PAYOUT.fullmatch(self.path)
            if match:
                return 200, {"payout": state.payout(match.group(1))}
            raise Refused(404, f"no route GET {self.path}")

        def _post(self) -> tuple[int, dict[str, Any]]:
            body = self._body()
            if self.path == "/addresses":
                return 200, {"address": state.address(body)}
            if self.path == "/payouts":
                created, payout = state.request_payout(body)
                return (201 if created else 200), {"payout": payout.view()}
            if self.path == "/deposits":
                answer = state.confirm_deposit(body)
                return _delivered(answer), answer
            match = _SETTLE.fullmatch(self.path)
            if match:
                answer = state.settle(match.group(1), body)
                return _delivered(answer), answer
            if self.path == "/_config/payouts":
                return 200, {"payouts_fail": state.set_payouts_fail(body)}
            raise Refused(404, f"no route POST {self.path}")

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise Refused(413, "body too large")
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise Refused(400, "body is not JSON") from exc
            if not isinstance(body, dict):
                raise Refused(400, "body must be a JSON object")
            return body

        def _answer(self, route: Any) -> None:
            try:
                status, body = route()
            except Refused as exc:
                status = exc.status
                body = {"error": {"code": HTTPStatus(status).phrase, "message": exc.message}}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in stack_id_headers():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the stack's output is for what matters

    return Handler


def make_server(port: int, state: FakeGatewayState) -> ThreadingHTTPServer:
    """The fake gateway on 127.0.0.1:``port`` (0: any free port), not yet serving."""
    server = ThreadingHTTPServer((HOST, port), make_handler(state))
    server.daemon_threads = True
    return server


def state_from_environment(environ: dict[str, str] | os._Environ[str]) -> FakeGatewayState:
    return FakeGatewayState(
        address_secret=environ.get("CRYPTO_ADDRESS_SECRET") or LOCAL_CRYPTO_ADDRESS_SECRET,
        webhook_url=environ.get("CRYPTO_WEBHOOK_URL") or fake_gateway.default_url(),
        webhook_secret=environ.get("CRYPTO_WEBHOOK_SECRET") or fake_gateway.webhook_secret(),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m infra.local.crypto_gateway_server PORT", file=sys.stderr)
        return 2
    from infra.local.child import exit_with_supervisor

    try:
        server = make_server(int(argv[0]), state_from_environment(os.environ))
    except OSError as exc:
        print(f"crypto: cannot listen on {HOST}:{argv[0]}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    exit_with_supervisor()
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
