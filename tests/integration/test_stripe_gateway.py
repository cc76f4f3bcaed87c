"""The Stripe adapter against localstripe (the Stripe fake the local stack runs), on a free
127.0.0.1 port: PaymentIntents as the deposit flow creates and re-fetches them, and a webhook
signed the way localstripe signs the events it sends."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.adapters.stripe_gateway import StripeGateway
from chalicelib.domain.errors import InvalidWebhook

PROJECT_DIR = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SECRET = "whsec_local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.localstripe_server", str(port)], cwd=PROJECT_DIR
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            request = urllib.request.Request(  # noqa: S310 (127.0.0.1 only)
                f"{base}/v1/balance", headers={"Authorization": "Bearer sk_test_local"}
            )
            try:
                with urllib.request.urlopen(request, timeout=1):  # noqa: S310
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def gateway(localstripe: str) -> StripeGateway:
    return StripeGateway("sk_test_local", SECRET, localstripe)


def test_a_payment_intent_carries_the_deposit_and_is_refetched(gateway: StripeGateway):
    created = gateway.create_payment_intent(
        amount=2500, currency="USD", deposit_id="dep_1", user_id="usr_1"
    )
    assert created.id.startswith("pi_")
    assert (created.amount, created.currency) == (2500, "USD")
    assert created.metadata == {"deposit_id": "dep_1", "user_id": "usr_1"}
    assert created.client_secret

    fetched = gateway.retrieve_payment_intent(created.id)
    assert (fetched.id, fetched.status, fetched.amount) == (
        created.id,
        "requires_payment_method",
        2500,
    )


def test_an_event_signed_with_the_endpoint_secret_verifies(gateway: StripeGateway):
    payload = json.dumps(
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}
    ).encode()
    at = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()

    verified = gateway.verify_event(payload, f"t={at},v1={mac}")

    assert (verified.id, verified.type, verified.object_id) == (
        "evt_1",
        "payment_intent.succeeded",
        "pi_1",
    )
    with pytest.raises(InvalidWebhook):
        gateway.verify_event(payload + b" ", f"t={at},v1={mac}")


def test_a_payment_intent_stripe_refuses_is_a_provider_refusal(gateway: StripeGateway):
    """A 4xx from Stripe when creating the intent is ``ProviderRefused`` (422 provider_refused),
    not an unhandled error (once a 500)."""
    from chalicelib.domain.errors import ProviderRefused

    with pytest.raises(ProviderRefused):
        gateway.create_payment_intent(
            amount=-5, currency="USD", deposit_id="dep_refused", user_id="usr_x"
        )
