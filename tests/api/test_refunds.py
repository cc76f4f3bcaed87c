"""Refunds of card deposits (``POST /v1/admin/deposits/{id}/refunds``) and Stripe's refund events.

Stripe is a fake with the adapter's interface that honours idempotency keys like real Stripe
(``tests/stripe_fake.py``); events are signed here with Stripe's scheme and verified by the real
adapter. Each test that moves money ends with ``check_guarantees``.
"""

from __future__ import annotations

import json
import threading

import pyotp
import pytest

from chalicelib.adapters.stripe_gateway import StripeRefund
from chalicelib.api import deposits as deposits_api
from chalicelib.api.dependencies import (
    get_auth_service,
    get_deposit_repository,
    get_inbox,
    get_ledger_service,
    get_refund_repository,
)
from chalicelib.auth import passwords
from chalicelib.domain.errors import ProviderRefused, RefundExceedsDeposit
from chalicelib.services import refunds
from tests.api.helpers import balances, call, wallet
from tests.api.test_deposits import PASSWORD, deliver, event, handle_event
from tests.stripe_fake import FakeStripe
from tests.support import check_guarantees, lose_the_first_answer, scan, verified


@pytest.fixture
def stripe(monkeypatch) -> FakeStripe:
    fake = FakeStripe()
    monkeypatch.setattr(deposits_api, "get_payment_gateway", lambda: fake)
    return fake


@pytest.fixture
def people(table, api_client, stripe):
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    bob = verified(auth.sign_up("bob@example.com", PASSWORD, True, None))
    _, secret = auth.create_admin("admin@example.com", PASSWORD)
    return {
        "alice": alice,
        "bob": bob,
        "table": table,
        "alice_token": auth.login("alice@example.com", PASSWORD, None, None).access_token,
        "admin": auth.login(
            "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
        ).access_token,
    }


def stores() -> dict:
    """What the refund service is given besides the ledger and Stripe, as the routes wire it."""
    return {
        "refunds": get_refund_repository(),
        "deposits": get_deposit_repository(),
        "inbox": get_inbox(),
    }


def finish_pending(ledger, stripe, **options) -> dict[str, int]:
    return refunds.finish_pending(ledger, stripe, **stores(), **options)


def pending_refunds() -> list[str]:
    return refunds.pending(get_refund_repository())


def credited(client, people, stripe, amount: str = "25.00") -> dict:
    """A card deposit of Alice's that Stripe confirmed and the webhook credited."""
    _, body = call(
        client,
        "POST",
        "/v1/deposits/card",
        people["alice_token"],
        {"amount": amount, "currency": "USD"},
        f"dep-{amount}",
    )
    d = body["deposit"]
    stripe.settle(d["payment_intent_id"])
    payload = event(f"evt_{d['id']}", "payment_intent.succeeded", d["payment_intent_id"])
    assert deliver(client, payload).status_code == 200
    return d


def refund(client, token: str, deposit_id: str, key: str = "r1", **body):
    body = {"reason": "customer asked", **body}
    return call(client, "POST", f"/v1/admin/deposits/{deposit_id}/refunds", token, body, key)


def deposit_of(client, people, deposit_id: str) -> dict:
    _, body = call(client, "GET", f"/v1/deposits/{deposit_id}", people["alice_token"])
    return body["deposit"]


def usd(people) -> tuple[int, int]:
    return balances(wallet(people["alice"].id, "USD"))


def audit_actions(table: str) -> list[str]:
    return sorted(i["action"] for i in scan(table) if i["item_type"] == "audit")


def stripe_event(event_id: str, event_type: str, obj: dict) -> bytes:
    body = {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}
    return json.dumps(body).encode()


# -- the happy paths ------------------------------------------------------------------------------
def test_a_full_refund_posts_and_marks_the_deposit_refunded(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    assert usd(people) == (2500, 2500)

    response, body = refund(api_client, people["admin"], d["id"])

    assert response.status_code == 201, body
    r = body["refund"]
    assert (r["deposit_id"], r["amount"], r["status"]) == (d["id"], "25.00", "succeeded")
    assert usd(people) == (0, 0)
    seen = deposit_of(api_client, people, d["id"])
    assert (seen["status"], seen["refunded_amount"]) == ("refunded", "25.00")
    [sent] = stripe.refunds.values()
    assert (sent.amount, sent.metadata["refund_id"]) == (2500, r["id"])
    assert sent.payment_intent_id == d["payment_intent_id"]
    actions = audit_actions(people["table"])
    assert {"refund.requested", "refund.succeeded"} <= set(actions)
    check_guarantees(people["table"])


def test_partial_refunds_add_up_and_never_exceed_the_deposit(api_client, people, stripe):
    d = credited(api_client, people, stripe)

    response, _ = refund(api_client, people["admin"], d["id"], "r1", amount="10.00")
    assert response.status_code == 201
    assert deposit_of(api_client, people, d["id"])["status"] == "partially_refunded"

    response, body = refund(api_client, people["admin"], d["id"], "r2", amount="15.01")
    assert (response.status_code, body["error"]["code"]) == (422, "refund_exceeds_deposit")

    response, body = refund(api_client, people["admin"], d["id"], "r3")  # the rest: 15.00
    assert (response.status_code, body["refund"]["amount"]) == (201, "15.00")
    assert deposit_of(api_client, people, d["id"])["status"] == "refunded"

    response, body = refund(api_client, people["admin"], d["id"], "r4", amount="0.01")
    assert (response.status_code, body["error"]["code"]) == (422, "refund_exceeds_deposit")
    assert usd(people) == (0, 0)
    assert len(stripe.refunds) == 2
    check_guarantees(people["table"])


def test_a_refund_of_money_already_spent_is_refused_and_changes_nothing(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    response, _ = call(
        api_client,
        "POST",
        "/v1/transfers",
        people["alice_token"],
        {"amount": "20.00", "currency": "USD", "to_email": "bob@example.com"},
        "spend",
    )
    assert response.status_code == 201
    before = [i for i in scan(people["table"]) if i["item_type"] != "idempotency"]

    response, body = refund(api_client, people["admin"], d["id"])

    assert (response.status_code, body["error"]["code"]) == (422, "insufficient_funds")
    after = [i for i in scan(people["table"]) if i["item_type"] != "idempotency"]
    assert after == before  # no hold, no refund item, no reservation, no audit event
    assert stripe.create_calls == 0

    response, body = refund(api_client, people["admin"], d["id"], "r2", amount="5.00")
    assert (response.status_code, body["refund"]["status"]) == (201, "succeeded")
    assert usd(people) == (0, 0)
    check_guarantees(people["table"])


# -- exactly once ---------------------------------------------------------------------------------
def test_a_retried_request_refunds_once_even_after_its_replay_record_is_gone(
    api_client, people, stripe
):
    d = credited(api_client, people, stripe)
    response, first = refund(api_client, people["admin"], d["id"], amount="5.00")
    response2, again = refund(api_client, people["admin"], d["id"], amount="5.00")
    assert (response2.status_code, again) == (response.status_code, first)

    for item in scan(people["table"]):  # replay records expire; the derived ids remain
        if item["item_type"] == "idempotency":
            from chalicelib.adapters.dynamo.models import IdempotencyItem

            IdempotencyItem(item["PK"], item["SK"]).delete()
    response3, third = refund(api_client, people["admin"], d["id"], amount="5.00")

    assert response3.status_code == 201
    assert third["refund"]["id"] == first["refund"]["id"]
    assert len(stripe.refunds) == 1
    assert usd(people) == (2000, 2000)
    check_guarantees(people["table"])


@pytest.mark.parametrize(
    ("after", "step"), [(0, "the hold and the refund item"), (1, "the hold's posting")]
)
def test_a_refund_whose_write_answer_was_lost_is_finished_once_by_its_retry(
    api_client, people, stripe, monkeypatch, after, step
):
    """Fault injection: a write of the refund commits, then its answer is lost (first the hold,
    then, in another run, the hold's posting once Stripe said yes). The request answers 500;
    the same request again (same key) finds its refund by its derived id and finishes it: one
    Stripe refund, the money moved once."""
    d = credited(api_client, people, stripe)
    lost = lose_the_first_answer(monkeypatch, after=after)

    first, _ = refund(api_client, people["admin"], d["id"], key="lost", amount="10.00")
    assert first.status_code == 500, step
    assert lost

    again, body = refund(api_client, people["admin"], d["id"], key="lost", amount="10.00")
    assert again.status_code == 201, body
    assert (body["refund"]["amount"], body["refund"]["status"]) == ("10.00", "succeeded")
    assert len(stripe.refunds) == 1
    assert usd(people) == (1500, 1500)
    assert audit_actions(people["table"]).count("refund.succeeded") == 1
    check_guarantees(people["table"])


@pytest.mark.parametrize("completion", ["retry", "refund.updated", "charge.refunded"])
def test_a_crash_between_stripe_and_the_ledger_is_completed_later(
    api_client, people, stripe, monkeypatch, completion
):
    d = credited(api_client, people, stripe)
    ledger_type = type(get_ledger_service())
    real_post = ledger_type.post_pending
    crashes = {"left": 1}

    def crashing_post(self, transaction_id, extra=()):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("injected: the process died after Stripe refunded")
        return real_post(self, transaction_id, extra)

    monkeypatch.setattr(ledger_type, "post_pending", crashing_post)

    response, body = refund(api_client, people["admin"], d["id"])
    assert response.status_code == 500
    assert usd(people) == (2500, 0)  # held, not lost: Stripe has refunded, the hold stays
    [sent] = stripe.refunds.values()

    if completion == "retry":
        response, body = refund(api_client, people["admin"], d["id"])
        assert (response.status_code, body["refund"]["status"]) == (201, "succeeded")
    elif completion == "refund.updated":
        payload = stripe_event("evt_r1", "refund.updated", {"id": sent.id, "object": "refund"})
        assert deliver(api_client, payload).status_code == 200
    else:
        obj = {"id": "ch_1", "object": "charge", "payment_intent": d["payment_intent_id"]}
        payload = stripe_event("evt_c1", "charge.refunded", obj)
        assert deliver(api_client, payload).status_code == 200

    assert len(stripe.refunds) == 1  # Stripe was not asked twice
    assert usd(people) == (0, 0)
    assert deposit_of(api_client, people, d["id"])["status"] == "refunded"
    # Everything after is a no-op: a retry, a redelivery, the other event.
    refund(api_client, people["admin"], d["id"])
    deliver(api_client, stripe_event("evt_r1", "refund.updated", {"id": sent.id}))
    deliver(api_client, stripe_event("evt_r2", "refund.updated", {"id": sent.id}))
    obj = {"id": "ch_1", "object": "charge", "payment_intent": d["payment_intent_id"]}
    deliver(api_client, stripe_event("evt_c2", "charge.refunded", obj))
    assert usd(people) == (0, 0)
    txns = [i for i in scan(people["table"]) if i.get("type") == "refund"]
    assert len([t for t in txns if t["item_type"] == "transaction"]) == 1
    check_guarantees(people["table"])


# -- Stripe says no, later, or nothing ------------------------------------------------------------
def test_a_refund_stripe_refuses_releases_the_hold(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    stripe.refuse = True

    response, body = refund(api_client, people["admin"], d["id"])

    assert (response.status_code, body["refund"]["status"]) == (201, "failed")
    assert body["refund"]["failure_reason"].startswith("Stripe refused")
    assert usd(people) == (2500, 2500)
    assert deposit_of(api_client, people, d["id"])["status"] == "succeeded"
    stripe.refuse = False
    response, body = refund(api_client, people["admin"], d["id"], "r2")  # the reservation is back
    assert (response.status_code, body["refund"]["amount"]) == (201, "25.00")
    assert "refund.failed" in audit_actions(people["table"])
    check_guarantees(people["table"])


def test_stripe_unreachable_answers_503_keeps_the_hold_and_a_retry_finishes(
    api_client, people, stripe
):
    d = credited(api_client, people, stripe)
    stripe.down = True

    response, body = refund(api_client, people["admin"], d["id"])
    assert (response.status_code, body["error"]["code"]) == (503, "provider_unavailable")
    assert usd(people) == (2500, 0)

    stripe.down = False
    response, body = refund(api_client, people["admin"], d["id"])  # same key: not a replay of 503
    assert (response.status_code, body["refund"]["status"]) == (201, "succeeded")
    assert usd(people) == (0, 0)
    check_guarantees(people["table"])


@pytest.mark.parametrize(("final", "posted"), [("succeeded", 0), ("failed", 2500)])
def test_a_pending_stripe_refund_is_finished_by_its_event_once(
    api_client, people, stripe, final, posted
):
    d = credited(api_client, people, stripe)
    stripe.outcome = "pending"
    response, body = refund(api_client, people["admin"], d["id"])
    assert (response.status_code, body["refund"]["status"]) == (201, "pending")
    assert body["refund"]["stripe_refund_id"] == "re_fake1"
    assert usd(people) == (2500, 0)

    stripe.set_status("re_fake1", final)
    for event_id in ("evt_1", "evt_1", "evt_2"):
        payload = stripe_event(event_id, "refund.updated", {"id": "re_fake1", "object": "refund"})
        assert deliver(api_client, payload).status_code == 200

    assert usd(people) == (posted, posted)
    items = {i["refund_id"]: i for i in scan(people["table"]) if i["item_type"] == "refund"}
    assert [i["status"] for i in items.values()] == [final]
    check_guarantees(people["table"])


@pytest.mark.parametrize("event_type", ["refund.failed", "refund.updated"])
def test_a_refund_stripe_fails_after_it_succeeded_gives_the_money_back_once(
    api_client, people, stripe, event_type
):
    """Stripe can fail a refund it reported succeeded (the card could not take it) and return
    the money to the platform balance: the wallet must get it back, exactly once."""
    d = credited(api_client, people, stripe)
    response, body = refund(api_client, people["admin"], d["id"], amount="10.00")
    assert (response.status_code, body["refund"]["status"]) == (201, "succeeded")
    assert usd(people) == (1500, 1500)

    stripe.set_status("re_fake1", "failed")
    for event_id in ("evt_f1", "evt_f1", "evt_f2"):
        payload = stripe_event(event_id, event_type, {"id": "re_fake1", "object": "refund"})
        assert deliver(api_client, payload).status_code == 200

    assert usd(people) == (2500, 2500)
    [item] = [i for i in scan(people["table"]) if i["item_type"] == "refund"]
    assert item["status"] == "failed"
    got = deposit_of(api_client, people, d["id"])
    assert (got["status"], got["refunded_amount"]) == ("succeeded", "0.00")
    reversals = [
        i
        for i in scan(people["table"])
        if (i["item_type"], i.get("type")) == ("transaction", "reversal")
    ]
    assert len(reversals) == 1
    assert "refund.failed" in audit_actions(people["table"])
    # The money can be refunded again, and only up to the deposit.
    response, body = refund(api_client, people["admin"], d["id"], key="r2")
    assert (response.status_code, body["refund"]["status"]) == (201, "succeeded")
    assert usd(people) == (0, 0)
    check_guarantees(people["table"])


def test_a_refund_made_outside_the_ledger_is_acknowledged_not_applied(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    stripe.refunds["re_dash"] = StripeRefund(
        "re_dash", "succeeded", 500, "USD", d["payment_intent_id"], {}
    )
    payload = stripe_event("evt_1", "refund.updated", {"id": "re_dash", "object": "refund"})

    assert deliver(api_client, payload).status_code == 200
    assert usd(people) == (2500, 2500)  # reconciliation lists it as unmatched at Stripe
    outcomes = {i["event_id"]: i["outcome"] for i in scan(people["table"]) if "outcome" in i}
    assert outcomes["evt_1"] == "unmatched"


# -- races ----------------------------------------------------------------------------------------
def test_concurrent_refunds_cannot_exceed_the_deposit(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")  # the wallet alone would allow every refund
    admin = get_auth_service().authenticate(f"Bearer {people['admin']}").user
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def run(n: int) -> None:
        start.wait()
        try:
            r = refunds.request_refund(
                get_ledger_service(),
                stripe,
                **stores(),
                admin=admin,
                deposit_id=d["id"],
                amount="10.00",
                reason="race",
                idempotency_key=f"k{n}",
                ip=None,
            )
            outcomes.append(r.status)
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["RefundExceedsDeposit"] * 2 + ["succeeded"] * 2
    assert usd(people) == (10500, 10500)
    check_guarantees(people["table"])


def test_the_database_refuses_an_over_refund_the_service_let_through(api_client, people, stripe):
    """A stale read of the deposit (what a racing request would see) is caught by the deposit's
    condition in the hold write, not by the service's own check."""
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")  # the wallet alone would allow both
    stale = get_deposit_repository().get(d["id"])
    admin = get_auth_service().authenticate(f"Bearer {people['admin']}").user
    ledger = get_ledger_service()
    refunds.hold(
        ledger,
        refunds=get_refund_repository(),
        deposits=get_deposit_repository(),
        admin=admin,
        deposit=stale,
        refund_id="rf_a",
        amount="15.00",
        reason="first",
        ip=None,
    )

    with pytest.raises(RefundExceedsDeposit):
        refunds.hold(
            ledger,
            refunds=get_refund_repository(),
            deposits=get_deposit_repository(),
            admin=admin,
            deposit=stale,
            refund_id="rf_b",
            amount="15.00",
            reason="second",
            ip=None,
        )
    assert usd(people) == (12500, 11000)
    check_guarantees(people["table"])


# -- refusals -------------------------------------------------------------------------------------
def test_refund_refusals(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    _, pending = call(
        api_client,
        "POST",
        "/v1/deposits/card",
        people["alice_token"],
        {"amount": "5.00", "currency": "USD"},
        "never-paid",
    )
    admin = people["admin"]
    cases = [
        (refund(api_client, people["alice_token"], d["id"]), 403, "forbidden"),
        (refund(api_client, admin, "dep_missing"), 404, "not_found"),
        (refund(api_client, admin, pending["deposit"]["id"]), 409, "idempotency_key_reused"),
        (refund(api_client, admin, pending["deposit"]["id"], "k1"), 409, "invalid_state"),
        (refund(api_client, admin, d["id"], "k2", amount="0"), 400, "invalid_amount"),
        (refund(api_client, admin, d["id"], "k3", amount=5), 400, "invalid_amount"),
        (refund(api_client, admin, d["id"], "k4", reason=""), 400, "invalid_request"),
        (refund(api_client, admin, d["id"], key=None), 400, "idempotency_key_required"),
    ]
    for (response, body), status, code in cases:
        assert (response.status_code, body["error"]["code"]) == (status, code), body
    assert usd(people) == (2500, 2500)
    assert stripe.create_calls == 0


# -- rollback and refund never both take the money back -------------------------------------------
def rollback(client, token: str, transaction_id: str, key: str = "rb1"):
    path = f"/v1/admin/transactions/{transaction_id}/rollback"
    return call(client, "POST", path, token, {"reason": "fraud"}, key)


def test_a_rolled_back_deposit_cannot_be_refunded(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")  # the wallet alone would allow the refund
    txn_id = get_deposit_repository().get(d["id"]).transaction_id

    response, body = rollback(api_client, people["admin"], txn_id)
    assert response.status_code == 201, body
    response, body = refund(api_client, people["admin"], d["id"])

    assert (response.status_code, body["error"]["code"]) == (409, "invalid_state")
    assert usd(people) == (10000, 10000)
    assert stripe.create_calls == 0
    check_guarantees(people["table"])


def test_a_refunded_deposit_cannot_be_rolled_back(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")
    assert refund(api_client, people["admin"], d["id"], amount="5.00")[0].status_code == 201
    txn_id = get_deposit_repository().get(d["id"]).transaction_id

    response, body = rollback(api_client, people["admin"], txn_id)

    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")
    assert usd(people) == (12000, 12000)
    assert not any(i.get("type") == "reversal" for i in scan(people["table"]))
    check_guarantees(people["table"])


def test_a_succeeded_refund_cannot_be_rolled_back(api_client, people, stripe):
    """Issue: rolling back a refund Stripe had made gave the user the money again, while the
    card already had it back: paid twice, and reconciliation said ok."""
    from chalicelib.adapters.dynamo.models import RefundItem

    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")
    response, body = refund(api_client, people["admin"], d["id"], amount="5.00")
    assert response.status_code == 201, body
    stored = RefundItem.get(f"REFUND#{body['refund']['id']}", "REFUND")
    assert usd(people) == (12000, 12000)

    response, body = rollback(api_client, people["admin"], stored.transaction_id)

    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")
    assert usd(people) == (12000, 12000)
    assert not any(i.get("type") == "reversal" for i in scan(people["table"]))
    check_guarantees(people["table"])


# -- the scheduled finisher ----------------------------------------------------------------------
def later(minutes: int = 10) -> str:
    from datetime import UTC, datetime, timedelta

    from chalicelib.adapters.clock import to_iso

    return to_iso(datetime.now(UTC) + timedelta(minutes=minutes))


def test_a_refund_stripe_never_got_is_finished_by_the_schedule_once(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    stripe.down = True
    response, _ = refund(api_client, people["admin"], d["id"])
    assert response.status_code == 503
    [refund_id] = pending_refunds()
    ledger = get_ledger_service()

    assert finish_pending(ledger, stripe) == {}  # too young: its own request may retry
    assert finish_pending(ledger, stripe, now=later()) == {"unavailable": 1}
    stripe.down = False
    assert finish_pending(ledger, stripe, now=later()) == {"succeeded": 1}
    assert finish_pending(ledger, stripe, now=later()) == {}  # out of the queue

    assert pending_refunds() == []
    assert get_refund_repository().get(refund_id).status == "succeeded"
    assert len(stripe.refunds) == 1
    assert usd(people) == (0, 0)
    check_guarantees(people["table"])


def test_a_refund_whose_stripe_event_never_came_is_finished_by_the_schedule(
    api_client, people, stripe
):
    d = credited(api_client, people, stripe)
    stripe.outcome = "pending"
    refund(api_client, people["admin"], d["id"])
    stripe.set_status("re_fake1", "succeeded")

    outcomes = finish_pending(get_ledger_service(), stripe, now=later())

    assert outcomes == {"succeeded": 1}
    assert usd(people) == (0, 0)
    assert stripe.create_calls == 1
    check_guarantees(people["table"])


def test_one_refund_that_fails_to_finish_does_not_stop_the_others(
    api_client, people, stripe, monkeypatch
):
    first = credited(api_client, people, stripe)
    second = credited(api_client, people, stripe, "10.00")
    stripe.down = True
    assert refund(api_client, people["admin"], first["id"], key="r1")[0].status_code == 503
    assert refund(api_client, people["admin"], second["id"], key="r2")[0].status_code == 503
    stripe.down = False
    looked_up = stripe.list_refunds

    def list_refunds(payment_intent_id: str):
        if payment_intent_id == first["payment_intent_id"]:
            raise ProviderRefused("Stripe refused the lookup")
        return looked_up(payment_intent_id)

    monkeypatch.setattr(stripe, "list_refunds", list_refunds)

    outcomes = finish_pending(get_ledger_service(), stripe, now=later())

    assert outcomes == {"error": 1, "succeeded": 1}
    assert usd(people) == (2500, 0)  # 25.00 still held for the first, 10.00 refunded
    assert len(pending_refunds()) == 1
    check_guarantees(people["table"])


def test_a_refund_stripe_keeps_pending_goes_to_the_back_of_the_queue(api_client, people, stripe):
    first = credited(api_client, people, stripe)
    second = credited(api_client, people, stripe, "10.00")
    stripe.outcome = "pending"  # Stripe holds the first refund (e.g. a low platform balance)
    assert refund(api_client, people["admin"], first["id"], key="r1")[0].status_code == 201
    stripe.down = True
    assert refund(api_client, people["admin"], second["id"], key="r2")[0].status_code == 503
    stripe.down, stripe.outcome = False, "succeeded"
    ledger = get_ledger_service()

    assert finish_pending(ledger, stripe, now=later(), limit=1) == {"pending": 1}
    assert finish_pending(ledger, stripe, now=later(), limit=1) == {"succeeded": 1}

    assert usd(people) == (2500, 0)  # the first still held, the second refunded
    check_guarantees(people["table"])


def test_the_schedule_runs_through_the_app(api_client, people, stripe, monkeypatch):
    from chalicelib.api import jobs

    monkeypatch.setattr(jobs, "get_payment_gateway", lambda: stripe)
    response = api_client.lambda_.invoke(
        "finish_refunds", api_client.events.generate_cw_event("Scheduled Event", "", [], {})
    )
    assert response.payload == {"outcomes": {}}


def test_the_event_the_finisher_and_a_redelivery_racing_finish_a_refund_once(
    api_client, people, stripe
):
    """Stripe's event, its redelivery under another id and the scheduled finisher all try to
    finish one pending refund at once (service level): the hold is posted exactly once."""
    d = credited(api_client, people, stripe)
    stripe.outcome = "pending"
    assert refund(api_client, people["admin"], d["id"])[0].status_code == 201
    stripe.set_status("re_fake1", "succeeded")
    ledger = get_ledger_service()
    start = threading.Barrier(3)
    outcomes: list[str] = []

    def deliver_event(event_id: str) -> str:
        payload = stripe_event(event_id, "refund.updated", {"id": "re_fake1", "object": "refund"})
        return handle_event(ledger, stripe, payload)

    def finisher() -> str:
        return str(finish_pending(ledger, stripe, now=later()))

    def run(act) -> None:
        start.wait()
        try:
            outcomes.append(act())
        except Exception as exc:
            outcomes.append(repr(exc))

    acts = [lambda: deliver_event("evt_a"), lambda: deliver_event("evt_b"), finisher]
    threads = [threading.Thread(target=run, args=(act,)) for act in acts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not [o for o in outcomes if "Error" in o or "Exception" in o], outcomes
    assert usd(people) == (0, 0)
    [item] = [i for i in scan(people["table"]) if i["item_type"] == "refund"]
    assert item["status"] == "succeeded"
    got = deposit_of(api_client, people, d["id"])
    assert (got["status"], got["refunded_amount"]) == ("refunded", "25.00")
    assert audit_actions(people["table"]).count("refund.succeeded") == 1
    check_guarantees(people["table"])
