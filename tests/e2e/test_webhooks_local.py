"""Outbound webhooks on the local stack: a facility registers an endpoint at a receiver on
127.0.0.1, a user pays the facility, and the stack's scheduler (infra/local/scheduler.py) delivers
the signed ``payment.received`` event on its own, within a few seconds."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.e2e.test_local_stack import Stack, require_running
from tests.e2e.test_races_http import (
    CURRENCY,
    admin,  # noqa: F401 (a fixture)
    call,
    deliver,
    deposit_to,
    sign_up_and_log_in,
)
from tests.webhook_receiver import receiver, verify

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-webhooks")]

# Generous: two cores shared with other work; nothing here asserts how fast it is.
DEADLINE_SECONDS = 90


def test_a_payment_reaches_the_facilitys_endpoint_signed(stack: Stack, admin):  # noqa: F811
    require_running(stack)
    token = admin["access_token"]
    status, body = call(stack, "/v1/admin/facilities", token, {"name": "Webhook Clinic"})
    assert status == 201, body
    facility_id = body["facility"]["id"]
    wanted = {"name": "hooks", "scopes": ["webhooks"]}
    status, body = call(stack, f"/v1/admin/facilities/{facility_id}/api-keys", token, wanted)
    assert status == 201, body
    key = body["secret"]

    with receiver() as hooks:
        endpoint = {"url": hooks.url, "events": ["payment.received"]}
        status, body = call(stack, "/v1/facility/webhook-endpoints", key, endpoint)
        assert status == 201, body
        secret = body["secret"]

        payer = sign_up_and_log_in(stack, f"payer-{uuid.uuid4().hex[:8]}@example.com")
        event = deposit_to(
            stack, payer["access_token"], "10", f"evt_{uuid.uuid4().hex}", f"tx_{uuid.uuid4().hex}"
        )
        assert deliver(stack, event)[0] == 200
        payment = {"amount": "4", "currency": CURRENCY, "to_facility_id": facility_id}
        status, body = call(stack, "/v1/transfers", payer["access_token"], payment, "pay-1")
        assert status == 201, body
        transaction_id = body["transaction"]["id"]

        (received,) = hooks.wait_for(1, timeout=DEADLINE_SECONDS)[:1]
        assert verify(secret, received.headers["X-Signature"], received.body)
        sent = json.loads(received.body)
        assert sent["type"] == "payment.received"
        assert sent["data"]["transaction_id"] == transaction_id
        assert sent["data"]["amount"] == "4.000000"

        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:  # the delivery is recorded as succeeded once the receiver has answered
            status, listed = call(stack, "/v1/facility/webhook-deliveries", key)
            assert status == 200, listed
            if listed["data"] and listed["data"][0]["status"] == "succeeded":
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.5)
        (delivery,) = listed["data"]
        assert delivery["event_id"] == sent["id"]
        assert delivery["attempts"] == 1
        assert len(hooks.received) == 1
