"""The reconciliation on the real local stack: after a mixed day (a card deposit confirmed in
localstripe, a partial refund through localstripe, a transfer), the seeded admin runs today's
reconciliation (a partial day) over HTTP and reads an ``ok`` report in which the Stripe balance
transactions match the ledger's deposit and refund."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from chalicelib.services import reconciliation as recon
from tests.e2e.test_card_deposit import (
    admin_sign_in,
    pay_in_localstripe,
    post,
    sign_in,
    usd_posted,
)
from tests.e2e.test_local_stack import (
    HOST,
    Stack,
    get,
    mailed_token,
)

pytestmark = pytest.mark.e2e

CREDIT_TIMEOUT_SECONDS = 20


def test_an_admin_reconciles_a_mixed_day_on_the_local_stack(stack: Stack):
    api = f"http://{HOST}:{stack.api}"
    dora = sign_in(api, "dora@example.com")
    sign_in(api, "eve@example.com")
    token = mailed_token(stack, "eve@example.com")  # only a verified email receives money
    status, body = post(f"{api}/v1/auth/email/verify", {"token": token}, {})
    assert status == 200, body

    status, body = post(
        f"{api}/v1/deposits/card",
        {"amount": "40.00", "currency": "USD"},
        {**dora, "Idempotency-Key": "recon-card-1"},
    )
    assert status == 201, body
    deposit = body["deposit"]
    pay_in_localstripe(stack, deposit["payment_intent_id"])
    deadline = time.monotonic() + CREDIT_TIMEOUT_SECONDS
    while usd_posted(api, dora) != "40.00":
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.25)

    status, body = post(
        f"{api}/v1/transfers",
        {"amount": "5.00", "currency": "USD", "to_email": "eve@example.com"},
        {**dora, "Idempotency-Key": "recon-transfer-1"},
    )
    assert status == 201, body

    admin = admin_sign_in(api)
    status, body = post(
        f"{api}/v1/admin/deposits/{deposit['id']}/refunds",
        {"amount": "10.00", "reason": "partial"},
        {**admin, "Idempotency-Key": "recon-refund-1"},
    )
    assert status == 201, body
    assert usd_posted(api, dora) == "25.00"

    # A run closes every account a moment before it starts (reconciliation.closing_cutoff).
    time.sleep(recon.CUTOFF_MARGIN.total_seconds() + 0.5)
    today = datetime.now(UTC).date().isoformat()
    status, body = post(f"{api}/v1/admin/reconciliations", {"date": today}, admin)
    assert status == 201, body
    report = body["report"]
    assert report["status"] == "ok", report
    assert report["trial_balance"]["USD"] == "0.00"
    assert report["transactions_checked"] >= 3
    assert report["stripe"] == {"matched": 2, "unmatched_ledger": [], "unmatched_stripe": []}

    status, _, got = get(f"{api}/v1/admin/reconciliations/{today}", admin)
    assert (status, got) == (200, {"report": report})
