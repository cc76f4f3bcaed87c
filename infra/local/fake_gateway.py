"""The FAKE crypto gateway's command line: tell the local stack's fake gateway to confirm a
deposit or settle a payout, which then sends the API a properly signed webhook.

    python -m infra.local.fake_gateway confirm-deposit --address A --currency BTC \\
        --amount 0.01 [--tx-hash H] [--event-id E]
    python -m infra.local.fake_gateway settle-payout --withdrawal-id W [--fail] \\
        [--reason R] [--tx-hash H] [--event-id E]
    python -m infra.local.fake_gateway payouts          # what the gateway was asked to send

By default each command goes through the fake gateway process
(``infra/local/crypto_gateway_server.py``) at ``http://127.0.0.1:<LEDGER_CRYPTO_PORT, 8003>`` (or
``--gateway``), which behaves like a gateway: ``confirm-deposit`` only for an address it handed
out, ``settle-payout`` only for a payout the API requested, with that payout's amount and
currency in the event, and once (asking again redelivers the same event; asking for the other
outcome is refused). The gateway signs with ``CRYPTO_WEBHOOK_SECRET`` and posts to the API's
``/v1/webhooks/crypto``; this command prints the gateway's answer (the payout, and the API's
status and answer to the webhook) and exits 0 on a 2xx.

With ``--url`` (a webhook URL, e.g. the local API's ``http://127.0.0.1:8000/v1/webhooks/crypto``)
the command plays the gateway itself instead: it builds the event, signs it with
``CRYPTO_WEBHOOK_SECRET`` (default ``crypto_local``) and sends it straight there, with no check
of addresses or payouts (e.g. to report a transfer to an address the gateway never issued, or to
replay a delivery with ``--event-id``). Without ``--event-id`` each call is a new event.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

from chalicelib.adapters.crypto_gateway import sign
from chalicelib.config import LOCAL_CRYPTO_WEBHOOK_SECRET

WEBHOOK_PATH = "/v1/webhooks/crypto"
TIMEOUT_SECONDS = 10.0
DEFAULT_GATEWAY_PORT = 8003


def default_url() -> str:
    """The local API's crypto webhook."""
    return f"http://127.0.0.1:{os.environ.get('LEDGER_API_PORT', '8000')}{WEBHOOK_PATH}"


def default_gateway_url() -> str:
    """The local stack's fake gateway process."""
    return f"http://127.0.0.1:{os.environ.get('LEDGER_CRYPTO_PORT', DEFAULT_GATEWAY_PORT)}"


def webhook_secret() -> str:
    return os.environ.get("CRYPTO_WEBHOOK_SECRET") or LOCAL_CRYPTO_WEBHOOK_SECRET


# -- events (shared with the gateway process) -----------------------------------------------------
def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def new_tx_hash() -> str:
    return f"fake_{uuid.uuid4().hex}"


def deposit_event(
    address: str, currency: str, amount: str, tx_hash: str, event_id: str | None = None
) -> dict[str, Any]:
    data = {"address": address, "currency": currency, "amount": amount, "tx_hash": tx_hash}
    return {"id": event_id or new_event_id(), "type": "deposit.confirmed", "data": data}


def payout_event(
    withdrawal_id: str,
    *,
    fail: bool,
    reason: str | None = None,
    tx_hash: str | None = None,
    event_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``withdrawal.completed`` (with a tx_hash) or ``withdrawal.failed`` (with a reason)."""
    if fail:
        data = {"withdrawal_id": withdrawal_id, "reason": reason or "payout failed"}
        event_type = "withdrawal.failed"
    else:
        data = {"withdrawal_id": withdrawal_id, "tx_hash": tx_hash or new_tx_hash()}
        event_type = "withdrawal.completed"
    return {"id": event_id or new_event_id(), "type": event_type, "data": {**data, **(extra or {})}}


def signed_request(url: str, secret: str, event: dict) -> urllib.request.Request:
    raw = json.dumps(event).encode()
    return urllib.request.Request(  # noqa: S310 - the URL is the local API's, or the caller's
        url,
        data=raw,
        method="POST",
        headers={"Content-Type": "application/json", "X-Signature": sign(secret, raw)},
    )


def exchange(request: urllib.request.Request) -> tuple[int, str]:
    """Status and body of an HTTP exchange (a 4xx/5xx too). Raises URLError when nothing answers."""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def deliver(url: str, secret: str, event: dict) -> tuple[int, str]:
    """Send one signed event; the API's status and answer. Raises URLError when it is down."""
    return exchange(signed_request(url, secret, event))


# -- the command line -----------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m infra.local.fake_gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = root.add_mutually_exclusive_group()
    target.add_argument("--gateway", default=None, help="the fake gateway's URL (default: local)")
    target.add_argument("--url", default=None, help="send the webhook straight to this URL")
    commands = root.add_subparsers(dest="command", required=True)
    deposit = commands.add_parser("confirm-deposit", help="report a confirmed deposit")
    deposit.add_argument("--address", required=True)
    deposit.add_argument("--currency", required=True)
    deposit.add_argument("--amount", required=True, help="decimal string, e.g. 0.01")
    deposit.add_argument("--tx-hash", help="default: a new one")
    deposit.add_argument("--event-id")
    payout = commands.add_parser("settle-payout", help="report a payout completed (or --fail)")
    payout.add_argument("--withdrawal-id", required=True)
    payout.add_argument("--fail", action="store_true")
    payout.add_argument("--reason", default="payout failed at the fake gateway")
    payout.add_argument("--tx-hash")
    payout.add_argument("--event-id")
    commands.add_parser("payouts", help="list the payouts the gateway was asked to send")
    return root


def _direct(args: argparse.Namespace) -> tuple[urllib.request.Request, str]:
    if args.command == "confirm-deposit":
        event = deposit_event(
            args.address, args.currency, args.amount, args.tx_hash or new_tx_hash(), args.event_id
        )
    else:
        event = payout_event(
            args.withdrawal_id,
            fail=args.fail,
            reason=args.reason,
            tx_hash=args.tx_hash,
            event_id=args.event_id,
        )
    return signed_request(args.url, webhook_secret(), event), f"{event['type']} {event['id']} "


def _through_gateway(args: argparse.Namespace) -> tuple[urllib.request.Request, str]:
    base = (args.gateway or default_gateway_url()).rstrip("/")
    if args.command == "payouts":
        return urllib.request.Request(f"{base}/payouts"), ""  # noqa: S310 - the local gateway
    if args.command == "confirm-deposit":
        path = "/deposits"
        body = {"address": args.address, "currency": args.currency, "amount": args.amount}
        body |= {"tx_hash": args.tx_hash, "event_id": args.event_id}
    else:
        path = f"/payouts/{urllib.parse.quote(args.withdrawal_id, safe='')}/settle"
        body = {"fail": args.fail, "tx_hash": args.tx_hash, "event_id": args.event_id}
        body |= {"reason": args.reason} if args.fail else {}
    clean = {k: v for k, v in body.items() if v is not None}
    request = urllib.request.Request(  # noqa: S310 - the local gateway, or the caller's
        base + path,
        data=json.dumps(clean).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    return request, ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.url and args.command == "payouts":
        print("payouts lists the gateway's payouts: use --gateway, not --url", file=sys.stderr)
        return 2
    request, label = _direct(args) if args.url else _through_gateway(args)
    try:
        status, body = exchange(request)
    except urllib.error.URLError as exc:
        print(f"cannot reach {request.full_url}: {exc.reason}", file=sys.stderr)
        return 1
    print(f"{label}-> {status} {body}")
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
