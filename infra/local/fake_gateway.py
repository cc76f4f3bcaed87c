"""A FAKE crypto gateway for the local stack: a command line that plays the gateway's part by
sending properly signed webhooks to the API. No chain, no custody, no server process.

    python -m infra.local.fake_gateway confirm-deposit --address A --currency BTC \\
        --amount 0.01 --tx-hash H [--event-id E]
    python -m infra.local.fake_gateway settle-payout --withdrawal-id W [--fail] \\
        [--reason R] [--tx-hash H] [--event-id E]

Each sends one event to ``http://127.0.0.1:<LEDGER_API_PORT, 8000>/v1/webhooks/crypto`` (or
``--url``), signed with ``CRYPTO_WEBHOOK_SECRET`` (default ``crypto_local``), prints the status
and the answer, and exits 0 on a 2xx. Without ``--event-id`` each call is a new event; pass the
same id again to replay a delivery. The API's payout hand-off goes to its in-process
``LocalCryptoGateway``; this command is how a payout is then reported completed or failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence

from chalicelib.adapters.crypto_gateway import sign
from chalicelib.config import LOCAL_CRYPTO_WEBHOOK_SECRET

WEBHOOK_PATH = "/v1/webhooks/crypto"
TIMEOUT_SECONDS = 10.0


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('LEDGER_API_PORT', '8000')}{WEBHOOK_PATH}"


def build_event(args: argparse.Namespace) -> dict:
    event_id = args.event_id or f"evt_{uuid.uuid4().hex}"
    if args.command == "confirm-deposit":
        data = {
            "address": args.address,
            "currency": args.currency,
            "amount": args.amount,
            "tx_hash": args.tx_hash,
        }
        return {"id": event_id, "type": "deposit.confirmed", "data": data}
    if args.fail:
        data = {"withdrawal_id": args.withdrawal_id, "reason": args.reason}
        return {"id": event_id, "type": "withdrawal.failed", "data": data}
    tx_hash = args.tx_hash or f"fake_{uuid.uuid4().hex}"
    data = {"withdrawal_id": args.withdrawal_id, "tx_hash": tx_hash}
    return {"id": event_id, "type": "withdrawal.completed", "data": data}


def signed_request(url: str, secret: str, event: dict) -> urllib.request.Request:
    raw = json.dumps(event).encode()
    return urllib.request.Request(  # noqa: S310 - the URL is the local API's, or the caller's
        url,
        data=raw,
        method="POST",
        headers={"Content-Type": "application/json", "X-Signature": sign(secret, raw)},
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m infra.local.fake_gateway", description=__doc__)
    root.add_argument("--url", default=None, help="webhook URL (default: the local API's)")
    commands = root.add_subparsers(dest="command", required=True)
    deposit = commands.add_parser("confirm-deposit", help="report a confirmed deposit")
    deposit.add_argument("--address", required=True)
    deposit.add_argument("--currency", required=True)
    deposit.add_argument("--amount", required=True, help="decimal string, e.g. 0.01")
    deposit.add_argument("--tx-hash", required=True)
    deposit.add_argument("--event-id")
    payout = commands.add_parser("settle-payout", help="report a payout completed (or --fail)")
    payout.add_argument("--withdrawal-id", required=True)
    payout.add_argument("--fail", action="store_true")
    payout.add_argument("--reason", default="payout failed at the fake gateway")
    payout.add_argument("--tx-hash")
    payout.add_argument("--event-id")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    secret = os.environ.get("CRYPTO_WEBHOOK_SECRET") or LOCAL_CRYPTO_WEBHOOK_SECRET
    event = build_event(args)
    request = signed_request(args.url or default_url(), secret, event)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        print(f"cannot reach {request.full_url}: {exc.reason}", file=sys.stderr)
        return 1
    print(f"{event['type']} {event['id']} -> {status} {body}")
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
