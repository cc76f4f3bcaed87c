"""Disputes of card deposits: Stripe's ``charge.dispute.created`` / ``.closed`` events, signed here
and verified by the real adapter, delivered in any order and more than once. The fixtures
(``people``, ``stripe``) are the refund tests', imported by name."""

# ruff: noqa: F811 - pytest fixtures imported from test_refunds are "redefined" as parameters

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.adapters.dynamo.deposit_repository import DynamoDepositRepository
from chalicelib.adapters.dynamo.dispute_repository import DynamoDisputeRepository
from chalicelib.api.dependencies import get_deposit_repository
from tests.api.helpers import call
from tests.api.test_deposits import deliver
from tests.api.test_refunds import (  # noqa: F401 - fixtures
    audit_actions,
    credited,
    people,
    rollback,
    stripe,
    stripe_event,
    usd,
)
from tests.support import check_guarantees, scan


def dispute(intent_id: str, status: str = "needs_response", amount: int = 2500) -> dict:
    return {
        "id": "dp_1",
        "object": "dispute",
        "payment_intent": intent_id,
        "charge": "ch_1",
        "amount": amount,
        "status": status,
    }


def opened(client, d: dict, event_id: str = "evt_open", amount: int = 2500):
    payload = stripe_event(
        event_id, "charge.dispute.created", dispute(d["payment_intent_id"], amount=amount)
    )
    return deliver(client, payload)


def closed(client, d: dict, status: str, event_id: str = "evt_close", amount: int = 2500):
    obj = dispute(d["payment_intent_id"], status, amount)
    return deliver(client, stripe_event(event_id, "charge.dispute.closed", obj))


def dispute_item(table: str) -> dict:
    [item] = [i for i in scan(table) if i["item_type"] == "dispute"]
    return item


def spend(client, people, amount: str) -> None:
    body = {"amount": amount, "currency": "USD", "to_email": "bob@example.com"}
    response, _ = call(client, "POST", "/v1/transfers", people["alice_token"], body, amount)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("status", "after"),
    [("won", (2500, 2500)), ("lost", (0, 0)), ("warning_closed", (2500, 2500))],
)
def test_a_dispute_holds_the_amount_then_releases_or_takes_it(
    api_client, people, stripe, status, after
):
    d = credited(api_client, people, stripe)

    for _ in range(2):  # a redelivery holds nothing more
        assert opened(api_client, d).status_code == 200
    assert usd(people) == (2500, 0)
    assert dispute_item(people["table"])["status"] == "open"

    for event_id in ("evt_close", "evt_close", "evt_close_again"):
        assert closed(api_client, d, status, event_id).status_code == 200

    assert usd(people) == after
    assert dispute_item(people["table"])["status"] == status
    assert {"dispute.opened", f"dispute.{status}"} <= set(audit_actions(people["table"]))
    check_guarantees(people["table"])


def test_a_close_that_arrives_before_the_open_still_applies_once(api_client, people, stripe):
    d = credited(api_client, people, stripe)

    assert closed(api_client, d, "lost").status_code == 200
    assert opened(api_client, d).status_code == 200  # late: changes nothing

    assert usd(people) == (0, 0)
    item = dispute_item(people["table"])
    assert (item["status"], item["held_amount"]) == ("lost", 2500)
    txns = [i for i in scan(people["table"]) if i.get("type") == "adjustment"]
    assert len([t for t in txns if t["item_type"] == "transaction"]) == 1
    check_guarantees(people["table"])


def test_a_dispute_of_money_already_spent_holds_what_is_left_and_records_the_shortfall(
    api_client, people, stripe
):
    d = credited(api_client, people, stripe)
    spend(api_client, people, "20.00")

    assert opened(api_client, d).status_code == 200
    item = dispute_item(people["table"])
    assert (item["amount"], item["held_amount"]) == (2500, 500)
    assert usd(people) == (500, 0)  # never below zero: guarantee 3

    assert closed(api_client, d, "lost").status_code == 200
    assert usd(people) == (0, 0)
    audits = [i for i in scan(people["table"]) if i["item_type"] == "audit"]
    [lost] = [a for a in audits if a["action"] == "dispute.lost"]
    assert lost["details"]["shortfall"] == "2000"
    check_guarantees(people["table"])


def test_a_dispute_with_nothing_left_to_hold_is_still_recorded(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    spend(api_client, people, "25.00")

    assert opened(api_client, d).status_code == 200
    assert closed(api_client, d, "won").status_code == 200

    item = dispute_item(people["table"])
    assert (item["held_amount"], item["status"]) == (0, "won")
    assert usd(people) == (0, 0)
    check_guarantees(people["table"])


def test_a_dispute_of_an_unknown_payment_is_acknowledged(api_client, people, stripe):
    d = credited(api_client, people, stripe)
    stripe.intents["pi_other"] = stripe.intents[d["payment_intent_id"]].__class__(
        id="pi_other", status="succeeded", amount=100, currency="USD", client_secret=None
    )

    response = opened(api_client, {"payment_intent_id": "pi_other"})

    assert response.status_code == 200
    assert usd(people) == (2500, 2500)
    assert [i for i in scan(people["table"]) if i["item_type"] == "dispute"] == []


# -- a dispute and a rollback never both take the money back --------------------------------------
@pytest.mark.parametrize(("status", "after"), [("lost", (10000, 10000)), ("won", (12500, 12500))])
def test_a_disputed_deposit_cannot_be_rolled_back(api_client, people, stripe, status, after):
    """The bank already returned a lost dispute's money to the card: a rollback on top would
    take it from the wallet a second time."""
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")  # the wallet alone would allow the rollback
    assert opened(api_client, d).status_code == 200
    txn_id = get_deposit_repository().get(d["id"]).transaction_id

    response, body = rollback(api_client, people["admin"], txn_id)
    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")
    assert usd(people) == (12500, 10000)

    assert closed(api_client, d, status).status_code == 200
    response, body = rollback(api_client, people["admin"], txn_id, key="rb2")
    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")
    assert usd(people) == after
    assert not any(i.get("type") == "reversal" for i in scan(people["table"]))
    check_guarantees(people["table"])


def test_a_rollback_between_the_disputes_read_and_write_makes_it_hold_nothing(
    api_client, people, stripe, monkeypatch
):
    """The dispute read the deposit before an admin rolled it back (a stale read, what a race
    gives): the deposit's condition in the dispute's write catches it, and nothing is held."""
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")
    stale = get_deposit_repository().get(d["id"])
    response, body = rollback(api_client, people["admin"], stale.transaction_id)
    assert response.status_code == 201, body
    assert usd(people) == (10000, 10000)
    monkeypatch.setattr(
        DynamoDepositRepository, "get", lambda self, _id: dataclasses.replace(stale)
    )

    assert opened(api_client, d).status_code == 200
    assert closed(api_client, d, "lost").status_code == 200

    assert (int(dispute_item(people["table"])["held_amount"]), usd(people)) == (0, (10000, 10000))
    check_guarantees(people["table"])


def test_a_created_event_that_loses_a_race_is_recorded_as_a_duplicate(
    api_client, people, stripe, monkeypatch
):
    """A second ``created`` delivery (another event id) that read no dispute yet (what a race
    gives) finds the hold already written: its own write is a replay, and the event is still
    recorded, as a duplicate, with nothing held twice."""
    d = credited(api_client, people, stripe)
    credited(api_client, people, stripe, "100.00")
    assert opened(api_client, d).status_code == 200
    monkeypatch.setattr(DynamoDisputeRepository, "get", lambda self, _id: None)

    assert opened(api_client, d, "evt_open_again").status_code == 200

    outcomes = {i["event_id"]: i["outcome"] for i in scan(people["table"]) if "outcome" in i}
    assert (outcomes["evt_open"], outcomes["evt_open_again"]) == ("dispute_opened", "duplicate")
    assert usd(people) == (12500, 10000)
    check_guarantees(people["table"])
