"""Risk rules on payment-request payments (API.md, "Risk"; docs/facilities.md, "Payment requests"):
a ``block`` rule declines the pay and nothing moves; a ``review`` rule holds the money and the
request (still open, with ``review_id``) until the review's decision turns it paid or releases it
for another attempt."""

from __future__ import annotations

import threading
from datetime import timedelta

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.api.dependencies import (
    get_auth_service,
    get_ledger_service,
    get_payment_request_repository,
    get_risk,
)
from chalicelib.domain.errors import ReviewNotOpen
from chalicelib.domain.payment_requests import payment_transaction_id
from chalicelib.services import payment_requests as service
from chalicelib.services import risk as risk_service
from tests.api import test_payment_requests as base
from tests.api.helpers import call
from tests.api.test_risk import decide, set_rules
from tests.support import check_guarantees, scan

people = base.people  # alice (10.00 USD), bob, an MFA admin; their tokens
clinic = base.clinic
_fixed_rate_window = base._fixed_rate_window
asked, pay, alice_usd, facility_usd = base.asked, base.pay, base.alice_usd, base.facility_usd
events, payments, code_of, CREATE = base.events, base.payments, base.code_of, base.CREATE


def rule(action: str, amount: str = "2") -> dict:
    return {
        "id": "big",
        "kind": "amount_over",
        "action": action,
        "currency": "USD",
        "amount": amount,
    }


def seen(client, people, request_id: str) -> dict:
    response, body = call(
        client, "GET", f"/v1/payment-requests/{request_id}", people["tokens"]["alice"]
    )
    assert response.status_code == 200, body
    return body["payment_request"]


def transaction(table: str, transaction_id: str) -> dict:
    [found] = [t for t in payments(table) if t["transaction_id"] == transaction_id]
    return found


def held_request(client, people, clinic) -> tuple[dict, dict]:
    """A 2.50 request whose payment a review rule held: (the request as created, the 202 body)."""
    set_rules(client, people, [rule("review")])
    created = asked(client, clinic)
    response, body = pay(client, people, created["id"])
    assert response.status_code == 202, body
    return created, body


def test_a_block_rule_declines_the_pay_and_nothing_moves(api_client, people, clinic, table):
    set_rules(api_client, people, [rule("block")])
    created = asked(api_client, clinic)
    response, body = pay(api_client, people, created["id"])
    assert (response.status_code, code_of(body)) == (422, "risk_declined")
    assert alice_usd(people) == (10_00, 10_00)
    assert facility_usd(clinic["id"]) == 0
    assert (payments(table), events(table)) == ([], [])
    still = seen(api_client, people, created["id"])
    assert (still["status"], still["transaction_id"], still["review_id"]) == ("open", None, None)

    set_rules(api_client, people, [])  # the request can still be paid
    response, body = pay(api_client, people, created["id"], key="pay-2")
    assert response.status_code == 201, body
    assert body["payment_request"]["transaction_id"] == payment_transaction_id(created["id"])
    assert alice_usd(people) == (7_50, 7_50)
    check_guarantees(table)


def test_a_review_rule_holds_the_money_and_the_request(api_client, people, clinic, table):
    created, body = held_request(api_client, people, clinic)
    held_id = payment_transaction_id(created["id"])
    assert body["payment_request"]["status"] == "open"
    assert body["payment_request"]["review_id"] == body["review"]["id"]
    assert body["payment_request"]["transaction_id"] == held_id
    assert (body["transaction"]["id"], body["transaction"]["status"]) == (held_id, "pending")
    assert (body["review"]["status"], body["review"]["transaction_id"]) == ("open", held_id)
    assert alice_usd(people) == (10_00, 7_50)  # held: available drops at once
    assert facility_usd(clinic["id"]) == 0
    assert events(table) == []  # no payment_request.paid while held
    shown = seen(api_client, people, created["id"])
    assert (shown["status"], shown["review_id"]) == ("open", body["review"]["id"])

    again, replayed = pay(api_client, people, created["id"])  # the same key: its answer
    assert (again.status_code, replayed) == (202, body)
    for key in ("pay-2", None):
        response, answer = pay(api_client, people, created["id"], key=key or "pay-3")
        assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    path = f"/v1/payment-requests/{created['id']}/decline"
    response, answer = call(api_client, "POST", path, people["tokens"]["alice"])
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    path = f"{CREATE}/{created['id']}/cancel"
    response, answer = call(api_client, "POST", path, clinic["secret"])
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    # The expiry job passes a held request by, even past expires_at.
    late = to_iso(parse_iso(created["expires_at"]).replace(year=2099))
    assert service.expire_due(get_payment_request_repository(), late) == []
    assert get_payment_request_repository().get(created["id"]).held
    assert alice_usd(people) == (10_00, 7_50)
    assert len(payments(table)) == 1
    assert events(table) == []
    check_guarantees(table)


def test_approving_pays_the_request_with_the_held_payment(api_client, people, clinic, table):
    created, body = held_request(api_client, people, clinic)
    response, decided = decide(api_client, people, body["review"]["id"], "approve")
    assert response.status_code == 200, decided
    assert decided["transaction"]["status"] == "posted"
    paid = seen(api_client, people, created["id"])
    assert (paid["status"], paid["transaction_id"]) == ("paid", body["transaction"]["id"])
    assert paid["paid_at"]
    assert paid["review_id"] == body["review"]["id"]
    assert transaction(table, paid["transaction_id"])["status"] == "posted"
    assert [e["event_type"] for e in events(table)] == ["payment_request.paid"]
    assert alice_usd(people) == (7_50, 7_50)
    assert facility_usd(clinic["id"]) == 2_50
    response, again = decide(api_client, people, body["review"]["id"], "approve")
    assert (response.status_code, code_of(again)) == (409, "invalid_state")
    response, answer = pay(api_client, people, created["id"], key="pay-2")
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    assert len(events(table)) == 1
    assert facility_usd(clinic["id"]) == 2_50
    check_guarantees(table)


def released_then_paid_again(client, people, clinic, table, created: dict, body: dict) -> None:
    """After a rejection or an expiry: hold voided, request open with no hold; paid again with
    another transaction id once the rule lets it through."""
    first = body["transaction"]["id"]
    assert transaction(table, first)["status"] == "voided"
    released = seen(client, people, created["id"])
    assert (released["status"], released["transaction_id"], released["review_id"]) == (
        "open",
        None,
        None,
    )
    assert alice_usd(people) == (10_00, 10_00)
    assert events(table) == []

    set_rules(client, people, [rule("review", amount="5")])
    response, paid = pay(client, people, created["id"], key="pay-again")
    assert response.status_code == 201, paid
    second = paid["payment_request"]["transaction_id"]
    assert second == payment_transaction_id(created["id"], 1) != first
    assert paid["payment_request"]["status"] == "paid"
    assert transaction(table, second)["status"] == "posted"
    assert alice_usd(people) == (7_50, 7_50)
    assert facility_usd(clinic["id"]) == 2_50
    assert [e["event_type"] for e in events(table)] == ["payment_request.paid"]
    check_guarantees(table)


def test_rejecting_voids_the_hold_and_releases_the_request(api_client, people, clinic, table):
    created, body = held_request(api_client, people, clinic)
    reason = {"reason": "unusual"}
    response, decided = decide(api_client, people, body["review"]["id"], "reject", reason)
    assert response.status_code == 200, decided
    assert decided["transaction"]["status"] == "voided"
    released_then_paid_again(api_client, people, clinic, table, created, body)


def test_an_expired_review_releases_the_request(api_client, people, clinic, table):
    created, body = held_request(api_client, people, clinic)
    later = to_iso(parse_iso(body["review"]["created_at"]) + timedelta(hours=72, seconds=1))
    ledger, risk = get_ledger_service(), get_risk()
    assert risk_service.expire_stale(ledger, risk, now=later) == [body["review"]["id"]]
    released_then_paid_again(api_client, people, clinic, table, created, body)


def test_parallel_approve_clicks_post_once(api_client, people, clinic, table):
    created, body = held_request(api_client, people, clinic)
    admin = get_auth_service().repository.find_user_by_email("admin@example.com")
    ledger, risk = get_ledger_service(), get_risk()
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def click() -> None:
        start.wait()
        try:
            risk_service.approve(ledger, risk, admin, body["review"]["id"], None)
            outcomes.append("approved")
        except ReviewNotOpen:
            outcomes.append("invalid_state")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=click) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved"] + ["invalid_state"] * 5, outcomes
    assert seen(api_client, people, created["id"])["status"] == "paid"
    assert [e["event_type"] for e in events(table)] == ["payment_request.paid"]
    assert alice_usd(people) == (7_50, 7_50)
    assert facility_usd(clinic["id"]) == 2_50
    audit = [i["action"] for i in scan(table) if i["item_type"] == "audit"]
    assert audit.count("risk.review_approved") == 1
    check_guarantees(table)
