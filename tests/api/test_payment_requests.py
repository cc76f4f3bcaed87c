"""Payment requests over HTTP (API.md, "Facilities"): a facility creates, reads, lists and cancels
them with its API key; the payer lists, pays and declines them. Paying moves money exactly once
and marks the request paid in the same write; the webhook events are written with their effects;
expiry is shown at once and stored by the job."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.api import jobs
from chalicelib.api import payment_requests as routes
from chalicelib.api.dependencies import (
    get_auth_service,
    get_ledger_service,
    get_payment_request_repository,
    get_risk,
    get_webhook_events,
)
from chalicelib.domain.accounts import OwnerType, wallet_id
from chalicelib.domain.errors import PaymentRequestNotOpen
from chalicelib.domain.payment_requests import payment_transaction_id
from chalicelib.domain.transactions import derive_transaction_id
from chalicelib.services import api_keys
from chalicelib.services import payment_requests as service
from tests.api import test_transfers
from tests.api.helpers import call
from tests.support import lose_the_first_answer, scan

people = test_transfers.people  # the fixture: alice (10.00 USD), bob, an MFA admin
PASSWORD = test_transfers.PASSWORD
posted = test_transfers.posted

NOW = 1_800_000_030.0  # the rate-limit clock: every request of a test falls in one minute
CREATE = "/v1/facility/payment-requests"


@pytest.fixture(autouse=True)
def _fixed_rate_window(monkeypatch):
    monkeypatch.setattr(api_keys, "epoch_now", lambda: NOW)


def new_facility(client, people, name: str = "Clinic", scopes=None, **key) -> dict:
    admin = people["tokens"]["admin"]
    response, body = call(client, "POST", "/v1/admin/facilities", admin, {"name": name})
    assert response.status_code == 201, body
    facility_id = body["facility"]["id"]
    wanted = {"name": "server"} | ({"scopes": scopes} if scopes else {}) | key
    path = f"/v1/admin/facilities/{facility_id}/api-keys"
    response, key = call(client, "POST", path, admin, wanted)
    assert response.status_code == 201, key
    return {"id": facility_id, "secret": key["secret"], "key_id": key["api_key"]["id"]}


@pytest.fixture
def clinic(api_client, people):
    return new_facility(api_client, people)


def ask(client, facility: dict, key: str | None = None, **body):
    wanted = {"amount": "2.50", "currency": "USD", "payer_email": "alice@example.com"} | body
    return call(client, "POST", CREATE, facility["secret"], wanted, key=key)


def asked(client, facility: dict, **body) -> dict:
    response, answer = ask(client, facility, **body)
    assert response.status_code == 201, answer
    return answer["payment_request"]


def pay(client, people, request_id: str, key: str | None = "pay-1", who: str = "alice"):
    path = f"/v1/payment-requests/{request_id}/pay"
    return call(client, "POST", path, people["tokens"][who], key=key)


def facility_usd(facility_id: str) -> int:
    return posted(wallet_id(OwnerType.FACILITY, facility_id, "USD"))


def alice_usd(people) -> tuple[int, int]:
    account = get_ledger_service().repository.get_account(people["usd"][people["alice"].id])
    return account.posted, account.available


def events(table: str) -> list[dict]:
    """The outbound webhook events written (the outbox)."""
    return [i for i in scan(table) if i["item_type"] == "outbound_event" and "facility_id" in i]


def payments(table: str) -> list[dict]:
    return [i for i in scan(table) if i["item_type"] == "transaction" and i["type"] == "payment"]


def code_of(body: dict) -> str:
    return body["error"]["code"]


# -- the facility's side ---------------------------------------------------------------------------
def test_a_facility_creates_reads_lists_and_cancels_a_request(api_client, people, clinic, table):
    created = asked(api_client, clinic, memo="Check-up", expires_in=3600)
    assert created["id"].startswith("pr_")
    assert (created["status"], created["amount"], created["currency"]) == ("open", "2.50", "USD")
    assert (created["payer_email"], created["memo"], created["facility_id"]) == (
        "alice@example.com",
        "Check-up",
        clinic["id"],
    )
    lasts = parse_iso(created["expires_at"]) - parse_iso(created["created_at"])
    assert lasts == timedelta(seconds=3600)
    assert created["transaction_id"] is None
    default = asked(api_client, clinic)
    lasts = parse_iso(default["expires_at"]) - parse_iso(default["created_at"])
    assert lasts == timedelta(days=7)

    path = f"{CREATE}/{created['id']}"
    response, body = call(api_client, "GET", path, clinic["secret"])
    assert (response.status_code, body["payment_request"]) == (200, created)
    response, listed = call(api_client, "GET", CREATE, clinic["secret"])
    assert response.status_code == 200, listed
    assert [r["id"] for r in listed["data"]] == [default["id"], created["id"]]

    response, cancelled = call(api_client, "POST", f"{path}/cancel", clinic["secret"])
    assert response.status_code == 200, cancelled
    assert cancelled["payment_request"]["status"] == "cancelled"
    assert cancelled["payment_request"]["decided_at"]
    again, body = call(api_client, "POST", f"{path}/cancel", clinic["secret"])
    assert (again.status_code, code_of(body)) == (409, "invalid_state")

    response, listed = call(api_client, "GET", f"{CREATE}?status=cancelled", clinic["secret"])
    assert [r["id"] for r in listed["data"]] == [created["id"]]
    response, listed = call(api_client, "GET", f"{CREATE}?status=open", clinic["secret"])
    assert [r["id"] for r in listed["data"]] == [default["id"]]
    response, page = call(api_client, "GET", f"{CREATE}?limit=1", clinic["secret"])
    assert [r["id"] for r in page["data"]] == [default["id"]]
    response, rest = call(
        api_client, "GET", f"{CREATE}?limit=1&cursor={page['next_cursor']}", clinic["secret"]
    )
    assert [r["id"] for r in rest["data"]] == [created["id"]]

    audit = [i for i in scan(table) if i["item_type"] == "audit"]
    mine = [(i["action"], i["actor_id"]) for i in audit if i.get("target") == created["id"]]
    assert sorted(mine) == [
        ("payment_request.cancelled", clinic["key_id"]),
        ("payment_request.created", clinic["key_id"]),
    ]
    assert payments(table) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"payer_email": "nobody@example.com"}, 404, "recipient_not_found"),
        ({"payer_email": "carol@example.com"}, 404, "recipient_not_found"),  # not verified
        ({"expires_in": 59}, 400, "invalid_request"),
        ({"expires_in": 90 * 24 * 3600 + 1}, 400, "invalid_request"),
        ({"expires_in": "3600"}, 400, "invalid_request"),
        ({"expires_in": True}, 400, "invalid_request"),
        ({"expires_in": 60.5}, 400, "invalid_request"),
        ({"memo": "x" * 501}, 400, "invalid_request"),
        ({"amount": 2.5}, 400, "invalid_amount"),
        ({"amount": "0"}, 400, "invalid_amount"),
        ({"amount": "1.001"}, 400, "invalid_amount"),
        ({"currency": "EUR"}, 400, "unsupported_currency"),
        ({"fee": "1"}, 400, "invalid_request"),
        ({"payer_email": 7}, 400, "invalid_request"),
    ],
)
def test_a_bad_request_is_refused_and_writes_nothing(
    api_client,
    people,
    clinic,
    table,
    body,
    status,
    code,
):
    get_auth_service().sign_up("carol@example.com", PASSWORD, True, None)
    response, answer = ask(api_client, clinic, **body)
    assert (response.status_code, code_of(answer)) == (status, code), answer
    assert not [i for i in scan(table) if i["item_type"].startswith("payment_request")]


def test_a_key_without_the_scope_and_a_users_token_are_forbidden(api_client, people, clinic):
    created = asked(api_client, clinic)
    reader = new_facility(api_client, people, "Reader", scopes=["read", "payouts"])
    alice = people["tokens"]["alice"]
    routes_ = [
        ("POST", CREATE, {"amount": "1", "currency": "USD", "payer_email": "alice@example.com"}),
        ("GET", CREATE, None),
        ("GET", f"{CREATE}/{created['id']}", None),
        ("POST", f"{CREATE}/{created['id']}/cancel", None),
    ]
    for method, path, body in routes_:
        for token in (reader["secret"], alice):
            response, answer = call(api_client, method, path, token, body)
            assert (response.status_code, code_of(answer)) == (403, "forbidden"), path
        response = api_client.http.request(method, path, headers={}, body=b"")
        assert response.status_code == 401, path
    for path in ("/v1/payment-requests", f"/v1/payment-requests/{created['id']}"):
        response, answer = call(api_client, "GET", path, clinic["secret"])
        assert (response.status_code, code_of(answer)) == (401, "unauthenticated")
    response, answer = pay(api_client, {"tokens": {"x": clinic["secret"]}}, created["id"], who="x")
    assert (response.status_code, code_of(answer)) == (401, "unauthenticated")


def test_another_facilitys_request_is_not_found(api_client, people, clinic):
    created = asked(api_client, clinic)
    other = new_facility(api_client, people, "Other")
    for method, path in (
        ("GET", f"{CREATE}/{created['id']}"),
        ("POST", f"{CREATE}/{created['id']}/cancel"),
        ("GET", f"{CREATE}/pr_nothing"),
        ("GET", f"{CREATE}/{'x' * 3000}"),
    ):
        response, answer = call(api_client, method, path, other["secret"])
        assert (response.status_code, code_of(answer)) == (404, "not_found"), path
    response, listed = call(api_client, "GET", CREATE, other["secret"])
    assert listed["data"] == []
    response, body = call(api_client, "GET", f"{CREATE}/{created['id']}", clinic["secret"])
    assert body["payment_request"]["status"] == "open"


def test_bad_list_queries_are_refused(api_client, people, clinic):
    for query in ("status=unpaid", "limit=0", "cursor=nonsense", "status=open&status=paid"):
        response, answer = call(api_client, "GET", f"{CREATE}?{query}", clinic["secret"])
        assert (response.status_code, code_of(answer)) == (400, "invalid_request"), query
        path = f"/v1/payment-requests?{query}"
        response, answer = call(api_client, "GET", path, people["tokens"]["alice"])
        assert (response.status_code, code_of(answer)) == (400, "invalid_request"), query


def test_a_retried_creation_with_its_key_makes_one_request(api_client, people, clinic, table):
    first, body = ask(api_client, clinic, key="create-1", memo="visit")
    again, replayed = ask(api_client, clinic, key="create-1", memo="visit")
    assert (first.status_code, again.status_code) == (201, 201)
    assert replayed == body
    reused, refusal = ask(api_client, clinic, key="create-1", memo="another visit")
    assert (reused.status_code, code_of(refusal)) == (409, "idempotency_key_reused")
    other = new_facility(api_client, people, "Other")
    response, theirs = ask(api_client, other, key="create-1", memo="visit")  # keys are per facility
    assert response.status_code == 201
    assert theirs["payment_request"]["id"] != body["payment_request"]["id"]
    without_key = [asked(api_client, clinic)["id"] for _ in range(2)]
    assert len(set(without_key)) == 2
    stored = [i for i in scan(table) if i["item_type"] == "payment_request"]
    assert len(stored) == 4


def test_a_creation_whose_answer_was_lost_is_answered_by_its_retry(
    api_client,
    people,
    clinic,
    table,
    monkeypatch,
):
    lost = lose_the_first_answer(monkeypatch)
    first, _ = ask(api_client, clinic, key="lost")
    assert (first.status_code, lost) == (500, [1])
    again, body = ask(api_client, clinic, key="lost")
    assert again.status_code == 201, body
    assert len([i for i in scan(table) if i["item_type"] == "payment_request"]) == 1


# -- the payer's side ------------------------------------------------------------------------------
def test_the_payer_pays_once_money_request_and_event_together(api_client, people, clinic, table):
    created = asked(api_client, clinic, memo="Check-up")
    response, listed = call(api_client, "GET", "/v1/payment-requests", people["tokens"]["alice"])
    assert [r["id"] for r in listed["data"]] == [created["id"]]
    response, listed = call(api_client, "GET", "/v1/payment-requests", people["tokens"]["bob"])
    assert listed["data"] == []

    response, body = pay(api_client, people, created["id"])
    assert response.status_code == 201, body
    paid = body["payment_request"]
    assert paid["status"] == "paid"
    assert paid["transaction_id"] == derive_transaction_id("payment_request", created["id"])
    assert paid["paid_at"]
    assert alice_usd(people) == (7_50, 7_50)
    assert facility_usd(clinic["id"]) == 2_50
    (txn,) = payments(table)
    assert txn["transaction_id"] == paid["transaction_id"]
    assert txn["memo"] == "Check-up"
    assert txn["metadata"]["payment_request_id"] == created["id"]

    response, seen = call(
        api_client, "GET", f"/v1/transactions/{paid['transaction_id']}", people["tokens"]["alice"]
    )
    assert (response.status_code, seen["transaction"]["type"]) == (200, "payment")
    response, body = call(api_client, "GET", f"{CREATE}/{created['id']}", clinic["secret"])
    assert body["payment_request"] == paid
    response, body = call(api_client, "GET", "/v1/facility/transactions", clinic["secret"])
    assert [t["id"] for t in body["data"]] == [paid["transaction_id"]]
    response, listed = call(
        api_client, "GET", "/v1/payment-requests?status=paid", people["tokens"]["alice"]
    )
    assert listed["data"] == [paid]

    (event,) = events(table)
    assert (event["event_type"], event["facility_id"]) == ("payment_request.paid", clinic["id"])
    assert json.loads(event["data"]) == paid
    people["world"].check_guarantees()


def test_paying_twice_with_the_same_or_another_key_moves_money_once(
    api_client,
    people,
    clinic,
    table,
):
    created = asked(api_client, clinic)
    first, body = pay(api_client, people, created["id"], key="k1")
    same, replayed = pay(api_client, people, created["id"], key="k1")
    other, refusal = pay(api_client, people, created["id"], key="k2")
    assert (first.status_code, same.status_code) == (201, 201)
    assert replayed == body
    assert (other.status_code, code_of(refusal)) == (409, "invalid_state")
    assert len(payments(table)) == 1
    assert len(events(table)) == 1
    assert alice_usd(people) == (7_50, 7_50)
    assert facility_usd(clinic["id"]) == 2_50
    people["world"].check_guarantees()


def test_a_pay_needs_an_idempotency_key(api_client, people, clinic):
    created = asked(api_client, clinic)
    response, answer = pay(api_client, people, created["id"], key=None)
    assert (response.status_code, code_of(answer)) == (400, "idempotency_key_required")
    assert alice_usd(people) == (10_00, 10_00)


def test_insufficient_funds_move_nothing_and_leave_the_request_open(
    api_client,
    people,
    clinic,
    table,
):
    created = asked(api_client, clinic, amount="10.01")
    response, answer = pay(api_client, people, created["id"])
    assert (response.status_code, code_of(answer)) == (422, "insufficient_funds")
    assert alice_usd(people) == (10_00, 10_00)
    assert facility_usd(clinic["id"]) == 0
    response, body = call(api_client, "GET", f"{CREATE}/{created['id']}", clinic["secret"])
    assert body["payment_request"]["status"] == "open"
    assert (payments(table), events(table)) == ([], [])


def test_someone_elses_request_is_not_found(api_client, people, clinic):
    created = asked(api_client, clinic)
    for path in (f"{created['id']}/pay", f"{created['id']}/decline", "pr_nothing/pay"):
        response, answer = call(
            api_client, "POST", f"/v1/payment-requests/{path}", people["tokens"]["bob"], key=path
        )
        assert (response.status_code, code_of(answer)) == (404, "not_found"), path
    response, answer = call(
        api_client, "GET", f"/v1/payment-requests/{created['id']}", people["tokens"]["bob"]
    )
    assert (response.status_code, code_of(answer)) == (404, "not_found")
    assert alice_usd(people) == (10_00, 10_00)


@pytest.mark.parametrize("how", ["cancel", "decline"])
def test_a_cancelled_or_declined_request_cannot_be_paid(api_client, people, clinic, table, how):
    created = asked(api_client, clinic)
    if how == "cancel":
        response, _ = call(api_client, "POST", f"{CREATE}/{created['id']}/cancel", clinic["secret"])
    else:
        path = f"/v1/payment-requests/{created['id']}/decline"
        response, _ = call(api_client, "POST", path, people["tokens"]["alice"])
    assert response.status_code == 200
    response, answer = pay(api_client, people, created["id"])
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    assert alice_usd(people) == (10_00, 10_00)
    assert payments(table) == []


def test_the_payer_declines_once_with_its_event(api_client, people, clinic, table):
    created = asked(api_client, clinic)
    path = f"/v1/payment-requests/{created['id']}/decline"
    alice = people["tokens"]["alice"]
    response, body = call(api_client, "POST", path, alice, key="no-thanks")
    assert response.status_code == 200, body
    declined = body["payment_request"]
    assert (declined["status"], declined["transaction_id"]) == ("declined", None)
    # The same call again (its answer lost): the same answer; another: invalid_state.
    again, replayed = call(api_client, "POST", path, alice, key="no-thanks")
    assert (again.status_code, replayed["payment_request"]) == (200, declined)
    other, refusal = call(api_client, "POST", path, alice)
    assert (other.status_code, code_of(refusal)) == (409, "invalid_state")
    cancel, refusal = call(api_client, "POST", f"{CREATE}/{created['id']}/cancel", clinic["secret"])
    assert (cancel.status_code, code_of(refusal)) == (409, "invalid_state")

    (event,) = events(table)
    assert (event["event_type"], event["facility_id"]) == ("payment_request.declined", clinic["id"])
    assert json.loads(event["data"]) == declined
    response, body = call(api_client, "GET", f"{CREATE}/{created['id']}", clinic["secret"])
    assert body["payment_request"] == declined


# -- expiry ----------------------------------------------------------------------------------------
def test_a_request_past_its_expiry_is_expired_and_the_job_stores_it_once(
    api_client,
    people,
    clinic,
    table,
    monkeypatch,
):
    due = asked(api_client, clinic, expires_in=60)
    later = asked(api_client, clinic, expires_in=3600)
    after = to_iso(parse_iso(due["expires_at"]) + timedelta(seconds=1))
    monkeypatch.setattr(service, "now_iso", lambda: after)
    monkeypatch.setattr(routes, "now_iso", lambda: after)

    response, body = call(api_client, "GET", f"{CREATE}/{due['id']}", clinic["secret"])
    assert body["payment_request"]["status"] == "expired"
    response, listed = call(api_client, "GET", f"{CREATE}?status=expired", clinic["secret"])
    assert [r["id"] for r in listed["data"]] == [due["id"]]
    response, listed = call(
        api_client, "GET", "/v1/payment-requests?status=open", people["tokens"]["alice"]
    )
    assert [r["id"] for r in listed["data"]] == [later["id"]]
    for how, path, token in (
        ("pay", f"/v1/payment-requests/{due['id']}/pay", people["tokens"]["alice"]),
        ("decline", f"/v1/payment-requests/{due['id']}/decline", people["tokens"]["alice"]),
        ("cancel", f"{CREATE}/{due['id']}/cancel", clinic["secret"]),
    ):
        response, answer = call(api_client, "POST", path, token, key="late")
        assert (response.status_code, code_of(answer)) == (409, "invalid_state"), how
    assert alice_usd(people) == (10_00, 10_00)

    assert jobs.run_payment_request_expiry() == [due["id"]]
    assert jobs.run_payment_request_expiry() == []
    assert jobs.expire_payment_requests.func({}) == {"expired": []}
    stored = {
        i["request_id"]: i for i in scan(table) if i["item_type"].startswith("payment_request")
    }
    assert stored[due["id"]]["status"] == "expired"
    main = [i for i in scan(table) if i["item_type"] == "payment_request"]
    queued = {i["request_id"] for i in main if "GSI2PK" in i}
    assert queued == {later["id"]}
    response, listed = call(api_client, "GET", f"{CREATE}?status=expired", clinic["secret"])
    assert [(r["id"], r["status"]) for r in listed["data"]] == [(due["id"], "expired")]
    assert listed["data"][0]["decided_at"] == after
    assert (payments(table), events(table)) == ([], [])


def test_the_expiry_job_leaves_answered_and_not_yet_due_requests_alone(
    api_client,
    people,
    clinic,
    monkeypatch,
):
    paid = asked(api_client, clinic, expires_in=60)
    assert pay(api_client, people, paid["id"])[0].status_code == 201
    declined = asked(api_client, clinic, expires_in=60)
    path = f"/v1/payment-requests/{declined['id']}/decline"
    assert call(api_client, "POST", path, people["tokens"]["alice"])[0].status_code == 200
    open_ = asked(api_client, clinic, expires_in=3600)
    assert jobs.run_payment_request_expiry() == []
    after = to_iso(parse_iso(paid["expires_at"]) + timedelta(seconds=120))
    assert service.expire_due(get_payment_request_repository(), after) == []
    much_later = to_iso(parse_iso(open_["expires_at"]) + timedelta(seconds=1))
    assert service.expire_due(get_payment_request_repository(), much_later) == [open_["id"]]


# -- the guarantees under races and faults ---------------------------------------------------
def test_a_cancel_between_the_pays_read_and_its_write_leaves_no_money_moved(
    api_client,
    people,
    clinic,
    table,
    monkeypatch,
):
    """The pay read the request open; the facility cancels it before the pay writes. The request's
    update (``status = open``) is in the money's own write, so the whole write is refused: no
    money moved with a cancelled request. Were the status written apart from the money, the
    money would have moved."""
    from chalicelib.adapters.dynamo.payment_request_repository import (
        DynamoPaymentRequestRepository,
    )

    created = asked(api_client, clinic)
    real = DynamoPaymentRequestRepository.paid_writes

    def cancel_first(self, paid, now):
        service.cancel(
            self,
            facility_id=clinic["id"],
            key_id=clinic["key_id"],
            request_id=created["id"],
            ip=None,
        )
        return real(self, paid, now)

    monkeypatch.setattr(DynamoPaymentRequestRepository, "paid_writes", cancel_first)
    response, answer = pay(api_client, people, created["id"])
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    monkeypatch.undo()
    assert alice_usd(people) == (10_00, 10_00)
    assert facility_usd(clinic["id"]) == 0
    assert (payments(table), events(table)) == ([], [])
    response, body = call(api_client, "GET", f"{CREATE}/{created['id']}", clinic["secret"])
    assert body["payment_request"]["status"] == "cancelled"
    people["world"].check_guarantees()


def test_both_lists_take_a_created_at_range(api_client, people, clinic, monkeypatch):
    moments = ["2027-01-10T10:00:00Z", "2027-01-11T10:00:00Z", "2027-01-12T10:00:00Z"]
    made = []
    for moment in moments:
        at = to_iso(parse_iso(moment))
        monkeypatch.setattr(service, "now_iso", lambda at=at: at)
        made.append(asked(api_client, clinic)["id"])
    monkeypatch.undo()
    alice = people["tokens"]["alice"]
    for path, token in ((CREATE, clinic["secret"]), ("/v1/payment-requests", alice)):
        for query, wanted in (
            ({"from": moments[1]}, [made[2], made[1]]),
            ({"to": moments[1]}, [made[1], made[0]]),
            ({"from": "2027-01-10T12:00:00+02:00", "to": moments[1]}, [made[1], made[0]]),
            ({"from": moments[1], "to": moments[1]}, [made[1]]),
            ({"from": moments[2], "to": "2027-01-12T10:00:00.000001Z"}, [made[2]]),
            ({"from": moments[0], "limit": "1"}, [made[2]]),
        ):
            response, listed = call(api_client, "GET", f"{path}?{urlencode(query)}", token)
            assert response.status_code == 200, listed
            assert [r["id"] for r in listed["data"]] == wanted, (path, query)
        page = urlencode({"from": moments[0], "to": moments[1], "limit": "1"})
        response, first = call(api_client, "GET", f"{path}?{page}", token)
        cursor = urlencode({"cursor": first["next_cursor"]})
        response, second = call(api_client, "GET", f"{path}?{page}&{cursor}", token)
        assert [r["id"] for r in first["data"] + second["data"]] == [made[1], made[0]]
        assert second["next_cursor"] is None
        for bad in ({"from": "yesterday"}, {"from": moments[2], "to": moments[0]}):
            response, body = call(api_client, "GET", f"{path}?{urlencode(bad)}", token)
            assert (response.status_code, code_of(body)) == (400, "invalid_request"), bad


def test_a_request_that_expires_between_the_pays_read_and_its_write_is_not_paid(
    api_client, people, clinic, table, monkeypatch
):
    """The pay reads the request before it expires; the ledger's write happens after the expiry
    (a slow read, a retried attempt): the request's condition is held to the attempt's time,
    so nothing is paid."""
    created = asked(api_client, clinic, expires_in=60)
    before = to_iso(parse_iso(created["expires_at"]) - timedelta(seconds=1))
    after = to_iso(parse_iso(created["expires_at"]) + timedelta(seconds=1))
    monkeypatch.setattr(service, "now_iso", lambda: before)
    monkeypatch.setattr(routes, "now_iso", lambda: before)
    monkeypatch.setattr(get_ledger_service(), "clock", lambda: after)
    response, answer = pay(api_client, people, created["id"])
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    monkeypatch.undo()
    assert alice_usd(people) == (10_00, 10_00)
    assert facility_usd(clinic["id"]) == 0
    assert (payments(table), events(table)) == ([], [])


def test_a_pay_between_a_declines_read_and_its_write_wins_alone(
    api_client,
    people,
    clinic,
    table,
    monkeypatch,
):
    from chalicelib.adapters.dynamo.payment_request_repository import (
        DynamoPaymentRequestRepository,
    )

    created = asked(api_client, clinic)
    real = DynamoPaymentRequestRepository.decide

    def pay_first(self, decided, now, event, extra=()):
        service.pay(
            get_ledger_service(),
            self,
            get_webhook_events(),
            get_risk(),
            payer=people["alice"],
            request_id=created["id"],
        )
        return real(self, decided, now, event, extra)

    monkeypatch.setattr(DynamoPaymentRequestRepository, "decide", pay_first)
    path = f"/v1/payment-requests/{created['id']}/decline"
    response, answer = call(api_client, "POST", path, people["tokens"]["alice"])
    assert (response.status_code, code_of(answer)) == (409, "invalid_state")
    monkeypatch.undo()
    response, body = call(api_client, "GET", f"{CREATE}/{created['id']}", clinic["secret"])
    assert body["payment_request"]["status"] == "paid"
    assert [e["event_type"] for e in events(table)] == ["payment_request.paid"]
    assert alice_usd(people) == (7_50, 7_50)
    people["world"].check_guarantees()


def test_ten_racing_pays_and_a_cancel_move_money_at_most_once(people, clinic, table, api_client):
    """Through the service in threads (the test client serves one request at a time): ten pays
    with their own keys and a cancel race for one request; either one pay wins and the cancel
    is refused, or the cancel wins and no money moves."""
    created = asked(api_client, clinic)
    ledger, requests, webhooks, risk = (
        get_ledger_service(),
        get_payment_request_repository(),
        get_webhook_events(),
        get_risk(),
    )
    start = threading.Barrier(11)
    outcomes: list[str] = []

    def paying(_n: int) -> None:
        start.wait()
        try:
            service.pay(
                ledger, requests, webhooks, risk, payer=people["alice"], request_id=created["id"]
            )
            outcomes.append("paid")
        except PaymentRequestNotOpen:
            outcomes.append("invalid_state")
        except Exception as exc:
            outcomes.append(repr(exc))

    def cancelling() -> None:
        start.wait()
        try:
            service.cancel(
                requests,
                facility_id=clinic["id"],
                key_id=clinic["key_id"],
                request_id=created["id"],
                ip=None,
            )
            outcomes.append("cancelled")
        except PaymentRequestNotOpen:
            outcomes.append("invalid_state")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=paying, args=(n,)) for n in range(10)]
    threads.append(threading.Thread(target=cancelling))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(outcomes) - {"invalid_state"}) in (["paid"], ["cancelled"]), outcomes
    assert outcomes.count("paid") + outcomes.count("cancelled") == 1, outcomes
    stored = requests.get(created["id"])
    if "paid" in outcomes:
        assert stored.status.value == "paid"
        assert [t["transaction_id"] for t in payments(table)] == [
            payment_transaction_id(created["id"])
        ]
        assert alice_usd(people) == (7_50, 7_50)
        assert len(events(table)) == 1
    else:
        assert stored.status.value == "cancelled"
        assert (payments(table), events(table)) == ([], [])
        assert alice_usd(people) == (10_00, 10_00)
    people["world"].check_guarantees()


def test_a_pay_whose_write_answer_was_lost_is_replayed_by_its_retry(
    api_client,
    people,
    clinic,
    table,
    monkeypatch,
):
    """Fault injection: the pay's TransactWriteItems (money, request, event, replay record)
    commits, then its answer is lost: 500; the retry with the key gets the pay's answer."""
    created = asked(api_client, clinic)
    lost = lose_the_first_answer(monkeypatch)
    first, _ = pay(api_client, people, created["id"], key="lost")
    assert (first.status_code, lost) == (500, [1])
    again, body = pay(api_client, people, created["id"], key="lost")
    assert again.status_code == 201, body
    assert body["payment_request"]["status"] == "paid"
    assert len(payments(table)) == 1
    assert len(events(table)) == 1
    assert alice_usd(people) == (7_50, 7_50)
    people["world"].check_guarantees()


# -- no input gets a 5xx ---------------------------------------------------------------------------
FIELDS = ["amount", "currency", "payer_email", "memo", "expires_in", "status"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2.50", "USD", "BTC", "alice@example.com", "bob@example.com", "x" * 600]),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner)
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.dictionaries(st.sampled_from(FIELDS), values, max_size=6),
    key=st.one_of(st.none(), st.text(max_size=300)),
    query=st.dictionaries(st.sampled_from(["status", "limit", "cursor"]), st.text(max_size=30)),
)
def test_no_input_to_the_facility_routes_gets_a_5xx(api_client, people, body, key, query):
    facility = FACILITY.get("it") or FACILITY.setdefault(
        "it", new_facility(api_client, people, rate_limit_per_minute=100_000)
    )
    headers = {"content-type": "application/json", "authorization": f"Bearer {facility['secret']}"}
    if key is not None and key.isprintable() and key.isascii():
        headers["idempotency-key"] = key
    raw = json.dumps(body).encode()
    for method, path in (
        ("POST", CREATE),
        ("GET", f"{CREATE}?{urlencode(query)}"),
        ("POST", f"{CREATE}/pr_{'0' * 32}/cancel"),
        ("POST", f"/v1/payment-requests/pr_{'0' * 32}/pay"),
    ):
        response = api_client.http.request(method, path, headers=headers, body=raw)
        assert response.status_code < 500, (method, path, response.body)
        if response.status_code >= 400:
            assert set(json.loads(response.body)) == {"error"}


FACILITY: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def _one_facility_per_test():
    FACILITY.clear()
    yield
    FACILITY.clear()
