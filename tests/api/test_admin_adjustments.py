"""Adjustments over HTTP (``POST /v1/admin/adjustments``, ``.../{id}/approve``): a small one posts
at once against the platform's adjustment account, a large one waits for a second admin, the
admin who asked cannot approve it, it posts exactly once however many approvals race, and every
step is audited."""

from __future__ import annotations

import threading

import pytest

from chalicelib.adapters.dynamo.adjustment_repository import DynamoAdjustmentRepository
from chalicelib.adapters.dynamo.models import AuditItem
from chalicelib.api import dependencies
from chalicelib.api.dependencies import get_auth_service
from chalicelib.domain.accounts import PlatformAccount, PlatformKind
from chalicelib.domain.errors import InvalidState
from chalicelib.services import adjustments
from tests.api.admin_helpers import PASSWORD, operators, sign_in
from tests.api.helpers import balances, call, wallet
from tests.support import LedgerWorld, check_guarantees, lose_the_first_answer, scan

ADJUST = "/v1/admin/adjustments"


@pytest.fixture
def people(table, api_client):
    found = operators()
    second, secret = get_auth_service().create_admin("second@example.com", PASSWORD)
    found["tokens"]["second"] = sign_in("second@example.com", secret)
    found["second"] = second
    world = LedgerWorld.create(table)
    found["world"] = world
    found["usd"] = wallet(found["alice"].id, "USD")
    world.fund(found["usd"], 100_00)
    found["table"] = table
    return found


def adjust(client, token: str, account_id: str, amount: str, key: str, reason="goodwill"):
    body = {"account_id": account_id, "amount": amount, "reason": reason}
    return call(client, "POST", ADJUST, token, body, key)


def approve(client, token: str, adjustment_id: str):
    return call(client, "POST", f"{ADJUST}/{adjustment_id}/approve", token, {})


def audit_actions() -> list[str]:
    items = AuditItem.scan(AuditItem.item_type == "audit")
    return sorted(i.action for i in items if i.action.startswith("adjustment."))


def adjustment_balance() -> int:
    return dependencies.get_ledger_service().platform_balance(
        PlatformAccount(PlatformKind.ADJUSTMENTS, "USD")
    )


def test_a_small_adjustment_posts_at_once_both_ways(api_client, people):
    admin, usd = people["tokens"]["admin"], people["usd"]
    response, body = adjust(api_client, admin, usd, "12.50", "a1")
    assert response.status_code == 201, body
    txn = body["transaction"]
    assert (txn["type"], txn["status"]) == ("adjustment", "posted")
    assert txn["metadata"]["reason"] == "goodwill"
    assert balances(usd) == (112_50, 112_50)
    assert adjustment_balance() == -12_50

    response, body = adjust(api_client, admin, usd, "-2.50", "a2", reason="fee taken twice")
    assert response.status_code == 201, body
    assert balances(usd) == (110_00, 110_00)
    assert adjustment_balance() == -10_00

    replayed, again = adjust(api_client, admin, usd, "-2.50", "a2", reason="fee taken twice")
    assert (replayed.status_code, again) == (201, body)  # the Idempotency-Key's answer
    assert balances(usd) == (110_00, 110_00)
    assert audit_actions() == ["adjustment.posted", "adjustment.posted"]
    check_guarantees(people["table"])


def test_a_large_adjustment_waits_for_another_admin_and_posts_once(api_client, people):
    admin, second, usd = people["tokens"]["admin"], people["tokens"]["second"], people["usd"]
    response, body = adjust(api_client, admin, usd, "1000.00", "big")
    assert response.status_code == 202, body
    pending = body["adjustment"]
    assert (pending["status"], pending["amount"], pending["currency"]) == (
        "pending_approval",
        "1000.00",
        "USD",
    )
    assert balances(usd) == (100_00, 100_00)  # nothing moved yet

    mine, refused = approve(api_client, admin, pending["id"])
    assert (mine.status_code, refused["error"]["code"]) == (403, "forbidden")

    response, posted = approve(api_client, second, pending["id"])
    assert response.status_code == 201, posted
    assert posted["transaction"]["id"] == pending["transaction_id"]
    assert balances(usd) == (1100_00, 1100_00)

    again, body = approve(api_client, second, pending["id"])  # the approver's retry
    assert (again.status_code, body["transaction"]["id"]) == (201, pending["transaction_id"])
    other, body = approve(api_client, people["tokens"]["admin"], pending["id"])
    assert (other.status_code, body["error"]["code"]) == (409, "invalid_state")
    assert balances(usd) == (1100_00, 1100_00)
    assert audit_actions() == ["adjustment.approved", "adjustment.requested"]
    check_guarantees(people["table"])


def test_the_refusals(api_client, people):
    admin, usd = people["tokens"]["admin"], people["usd"]
    response, body = adjust(api_client, admin, usd, "-100.01", "over")
    assert (response.status_code, body["error"]["code"]) == (422, "insufficient_funds")
    for amount in ("0", "0.00", "-0", "1.234", "1e3", "--1", " 1"):
        response, body = adjust(api_client, admin, usd, amount, f"bad{amount}")
        assert response.status_code == 400, (amount, body)
    response, body = adjust(api_client, admin, "acct_nope", "1.00", "nope")
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = approve(api_client, admin, "adj_nope")
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = adjust(api_client, people["tokens"]["alice"], usd, "1.00", "user")
    assert response.status_code == 403
    response, body = adjust(api_client, people["tokens"]["weak_admin"], usd, "1.00", "weak")
    assert response.status_code == 403
    assert balances(usd) == (100_00, 100_00)
    assert audit_actions() == []


def test_a_large_negative_adjustment_the_account_cannot_cover_stays_pending(api_client, people):
    admin, second, usd = people["tokens"]["admin"], people["tokens"]["second"], people["usd"]
    response, body = adjust(api_client, admin, usd, "-5000.00", "claw")
    assert response.status_code == 202, body
    response, refused = approve(api_client, second, body["adjustment"]["id"])
    assert (response.status_code, refused["error"]["code"]) == (422, "insufficient_funds")
    stored = DynamoAdjustmentRepository().get(body["adjustment"]["id"])
    assert stored is not None
    assert stored.status.value == "pending_approval"
    assert balances(usd) == (100_00, 100_00)


def test_parallel_approvals_post_the_adjustment_once(api_client, people):
    """Eight approvals by eight threads, all after reading the adjustment as pending: one
    writes the money, the others are refused (or get the same transaction back)."""
    admin, usd = people["tokens"]["admin"], people["usd"]
    response, body = adjust(api_client, admin, usd, "2000.00", "race")
    assert response.status_code == 202, body
    adjustment_id = body["adjustment"]["id"]
    second = people["second"]
    ledger, repository = dependencies.get_ledger_service(), DynamoAdjustmentRepository()
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def approve_once() -> None:
        start.wait()
        try:
            adjustments.approve(ledger, repository, second, adjustment_id, None)
            outcomes.append("posted")
        except InvalidState:
            outcomes.append("refused")

    threads = [threading.Thread(target=approve_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "posted" in outcomes
    assert balances(usd) == (2100_00, 2100_00)
    assert adjustment_balance() == -2000_00
    assert audit_actions() == ["adjustment.approved", "adjustment.requested"]
    check_guarantees(people["table"])


@pytest.mark.parametrize(("amount", "status"), [("12.50", 201), ("1500.00", 202)])
def test_an_adjustment_whose_answer_was_lost_after_it_committed_moves_money_once(
    api_client, people, monkeypatch, amount, status
):
    """Fault injection: the adjustment's write commits, then its answer is lost. The same request
    sent again (same Idempotency-Key) finds its own adjustment: one adjustment, money moved once.
    The same key with another amount is refused."""
    admin, usd = people["tokens"]["admin"], people["usd"]
    lost = lose_the_first_answer(monkeypatch)
    first, _ = adjust(api_client, admin, usd, amount, "lost-key")
    assert first.status_code == 500
    assert lost
    again, body = adjust(api_client, admin, usd, amount, "lost-key")
    assert again.status_code == status, body
    stored = [i for i in scan(people["table"]) if i["item_type"] == "adjustment"]
    assert len(stored) == 1
    expected = 112_50 if status == 201 else 100_00
    assert balances(usd) == (expected, expected)
    other, body = adjust(api_client, admin, usd, "1.00", "lost-key")
    assert (other.status_code, body["error"]["code"]) == (409, "idempotency_key_reused")
    assert balances(usd) == (expected, expected)
    check_guarantees(people["table"])
