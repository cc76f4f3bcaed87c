"""Payroll payouts (API.md, "Facilities": ``POST /v1/facility/payouts``): all or nothing on funds,
each item paid exactly once across retries, crashes and the scheduled finisher, unknown and
unverified recipients failing alone, and the batch read back."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.adapters.dynamo.models import IdempotencyItem, OutboundEventItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.api import jobs
from chalicelib.api.dependencies import (
    get_auth_service,
    get_ledger_service,
    get_payroll_repository,
    get_webhook_events,
)
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import InsufficientFunds
from chalicelib.domain.webhooks import WebhookEventType, event_id
from chalicelib.services import payroll as service
from tests.api.test_facility_keys import facility_id, issue  # noqa: F401 (a fixture)
from tests.api.test_transfers import PASSWORD, people  # noqa: F401 (a fixture)
from tests.support import check_guarantees, lose_the_first_answer, scan, verified

PATH = "/v1/facility/payouts"


def facility_wallet(facility: str, code: str = "USD") -> str:
    return wallet_id(OwnerType.FACILITY, facility, code)


def user_wallet(user_id: str, code: str = "USD") -> str:
    return wallet_id(OwnerType.USER, user_id, code)


def posted(account_id: str) -> int:
    return get_ledger_service().repository.get_account(account_id).posted


def available(account_id: str) -> int:
    return get_ledger_service().repository.get_account(account_id).available


def transit(code: str = "USD") -> int:
    return get_ledger_service().platform_balance(PlatformAccount(PlatformKind.PAYROLL, code))


@pytest.fixture
def staff(people):  # noqa: F811
    """Alice and Bob (verified, from ``people``), Dan and Erin (verified, empty), Carol (not
    verified)."""
    auth = get_auth_service()
    dan = verified(auth.sign_up("dan@example.com", PASSWORD, True, None))
    erin = verified(auth.sign_up("erin@example.com", PASSWORD, True, None))
    carol = auth.sign_up("carol@example.com", PASSWORD, True, None)
    return {
        "alice": people["alice"],
        "bob": people["bob"],
        "dan": dan,
        "erin": erin,
        "carol": carol,
    }


@pytest.fixture
def clinic(api_client, people, facility_id, table):  # noqa: F811
    """The facility with USD 100.00 and a key of scope ``payouts``."""
    _, created = issue(api_client, people, facility_id, scopes=["payouts"])
    people["world"].fund(facility_wallet(facility_id), 100_00)
    return {"id": facility_id, "secret": created["secret"]}


def post(client, secret: str, body: object, key: str | None = "run-1"):
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
    if key is not None:
        headers["idempotency-key"] = key
    response = client.http.post(PATH, body=json.dumps(body).encode(), headers=headers)
    return response, json.loads(response.body)


def get(client, secret: str, path: str):
    response = client.http.get(path, headers={"authorization": f"Bearer {secret}"})
    return response, json.loads(response.body)


def batch(*lines: tuple[str, str], code: str = "USD") -> dict:
    return {
        "currency": code,
        "items": [
            {"to_email": e, "amount": a, "memo": f"salary {i}"} for i, (e, a) in enumerate(lines)
        ],
    }


def payroll_transactions(table: str) -> list[dict]:
    return [
        i
        for i in scan(table)
        if i["item_type"] == "transaction" and i.get("metadata", {}).get("payroll_id")
    ]


def item_payments(table: str) -> Counter:
    """How often each (batch, item) was paid by a transaction."""
    return Counter(
        (t["metadata"]["payroll_id"], t["metadata"]["payroll_item"])
        for t in payroll_transactions(table)
        if t["metadata"]["payroll_leg"] == "item"
    )


def assert_each_item_paid_once(table: str, items: int) -> None:
    payments = item_payments(table)
    assert set(payments.values()) == {1}
    assert len(payments) == items


def events(table: str) -> list[dict]:
    return [i for i in scan(table) if i["item_type"] == OutboundEventItem.ITEM_TYPE]


# -- the happy path -------------------------------------------------------------------------------
def test_a_batch_pays_every_item_once_and_the_transit_account_ends_empty(
    api_client, clinic, staff, table
):
    alice, bob = staff["alice"], staff["bob"]
    response, body = post(
        api_client,
        clinic["secret"],
        batch(
            ("alice@example.com", "30.00"), ("bob@example.com", "12.5"), ("Alice@Example.com", "1")
        ),
    )

    assert response.status_code == 201, body
    payout = body["payout"]
    assert (payout["status"], payout["currency"], payout["total"], payout["paid_total"]) == (
        "completed",
        "USD",
        "43.50",
        "43.50",
    )
    assert [i["status"] for i in payout["items"]] == ["paid"] * 3
    assert [i["amount"] for i in payout["items"]] == ["30.00", "12.50", "1.00"]
    assert all(i["transaction_id"] and i["error_code"] is None for i in payout["items"])
    assert payout["items"][2]["to_email"] == "Alice@Example.com"
    assert posted(facility_wallet(clinic["id"])) == 100_00 - 43_50
    assert posted(user_wallet(alice.id)) == 10_00 + 31_00
    assert posted(user_wallet(bob.id)) == 12_50
    assert transit() == 0
    # The recipient sees their own transfer, with the item's memo, and nobody else's posting.
    txn = get_ledger_service().repository.get_transaction(payout["items"][1]["transaction_id"])
    assert (txn.type.value, txn.memo) == ("transfer", "salary 1")
    assert {p.account_id for p in txn.postings} >= {user_wallet(bob.id)}
    assert user_wallet(alice.id) not in {p.account_id for p in txn.postings}
    # One payout.completed event, with the payout as the API shows it, written with the money.
    (event,) = events(table)
    assert event["event_id"] == event_id(WebhookEventType.PAYOUT_COMPLETED, payout["id"])
    assert (event["event_type"], event["facility_id"]) == ("payout.completed", clinic["id"])
    assert json.loads(event["data"]) == payout
    check_guarantees(table)


def test_unknown_and_unverified_recipients_fail_alone_and_their_amount_stays(
    api_client, clinic, staff, table
):
    response, body = post(
        api_client,
        clinic["secret"],
        batch(
            ("nobody@example.com", "40.00"),
            ("dan@example.com", "5.00"),
            ("carol@example.com", "30.00"),  # signed up, email not verified
        ),
    )

    assert response.status_code == 201, body
    payout = body["payout"]
    assert (payout["status"], payout["total"], payout["paid_total"]) == (
        "partially_completed",
        "75.00",
        "5.00",
    )
    items = payout["items"]
    assert [(i["status"], i["error_code"]) for i in items] == [
        ("failed", "recipient_not_found"),
        ("paid", None),
        ("failed", "recipient_not_found"),
    ]
    assert [i["transaction_id"] is None for i in items] == [True, False, True]
    assert posted(facility_wallet(clinic["id"])) == 95_00
    assert posted(user_wallet(staff["dan"].id)) == 5_00
    assert posted(user_wallet(staff["carol"].id)) == 0
    assert transit() == 0
    # Only what could be paid was reserved: no return transaction was needed.
    legs = sorted(t["metadata"]["payroll_leg"] for t in payroll_transactions(table))
    assert legs == ["funding", "item"]
    check_guarantees(table)


def test_a_batch_nobody_can_receive_moves_nothing(api_client, clinic, staff, table):
    response, body = post(
        api_client, clinic["secret"], batch(("x@example.com", "1"), ("carol@example.com", "2"))
    )

    assert response.status_code == 201, body
    assert body["payout"]["status"] == "partially_completed"
    assert body["payout"]["paid_total"] == "0.00"
    assert payroll_transactions(table) == []
    assert posted(facility_wallet(clinic["id"])) == 100_00
    assert [e["event_type"] for e in events(table)] == ["payout.completed"]


def test_a_recipient_without_a_wallet_fails_while_processing_and_the_rest_is_returned(
    api_client, clinic, staff, table, monkeypatch
):
    """A verified user whose wallet in the currency is missing: the item fails when it is paid,
    after the total was reserved; what it reserved goes back to the facility in one return."""
    ghost = staff["erin"].id
    real = get_payroll_repository().verified_recipients

    def with_a_ghost(emails):
        found = real(emails)
        found["ghost@example.com"] = "user_without_accounts"
        return found

    monkeypatch.setattr(
        type(get_payroll_repository()), "verified_recipients", staticmethod(with_a_ghost)
    )
    response, body = post(
        api_client,
        clinic["secret"],
        batch(("ghost@example.com", "20.00"), ("erin@example.com", "7.00")),
    )

    assert response.status_code == 201, body
    assert [(i["status"], i["error_code"]) for i in body["payout"]["items"]] == [
        ("failed", "recipient_not_found"),
        ("paid", None),
    ]
    assert posted(facility_wallet(clinic["id"])) == 93_00
    assert posted(user_wallet(ghost)) == 7_00
    assert transit() == 0
    legs = sorted(t["metadata"]["payroll_leg"] for t in payroll_transactions(table))
    assert legs == ["funding", "item", "return"]
    check_guarantees(table)


# -- all or nothing on funds ----------------------------------------------------------------------
def test_insufficient_funds_pays_nothing_and_reserves_nothing(api_client, clinic, staff, table):
    before = [i for i in scan(table) if i["item_type"] in {"transaction", "entry", "account"}]

    response, body = post(
        api_client,
        clinic["secret"],
        batch(("alice@example.com", "60.00"), ("bob@example.com", "40.01")),
    )

    assert (response.status_code, body["error"]["code"]) == (422, "insufficient_funds")
    after = [i for i in scan(table) if i["item_type"] in {"transaction", "entry", "account"}]
    assert after == before
    assert [i for i in scan(table) if i["item_type"].startswith("payroll")] == []
    assert available(facility_wallet(clinic["id"])) == 100_00
    # The refusal is the key's answer: the same request answers it again, moving nothing.
    again, same = post(
        api_client,
        clinic["secret"],
        batch(("alice@example.com", "60.00"), ("bob@example.com", "40.01")),
    )
    assert (again.status_code, same["error"]["code"]) == (422, "insufficient_funds")


def test_only_what_can_be_paid_must_be_covered(api_client, clinic, staff):
    response, body = post(
        api_client,
        clinic["secret"],
        batch(("alice@example.com", "100.00"), ("nobody@example.com", "500.00")),
    )

    assert response.status_code == 201, body
    assert body["payout"]["paid_total"] == "100.00"
    assert posted(facility_wallet(clinic["id"])) == 0


def test_two_concurrent_batches_over_the_balance_exactly_one_passes(clinic, staff, table):
    """Two batches of 60.00 each against 100.00, started together: the facility's overdraft
    condition lets one reserve its total; the other is refused and pays nobody."""
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def run(key: str) -> None:
        payer = service.Payer(get_ledger_service(), get_payroll_repository(), get_webhook_events())
        start.wait()
        try:
            done = service.pay(
                payer,
                facility_id=clinic["id"],
                request=service.PayrollRequest(
                    "USD",
                    [
                        service.PayrollLine("alice@example.com", "30.00"),
                        service.PayrollLine("bob@example.com", "30.00"),
                    ],
                ),
                idempotency_key=key,
            )
            outcomes.append(done.status.value)
        except InsufficientFunds:
            outcomes.append("insufficient_funds")

    threads = [threading.Thread(target=run, args=(f"race-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["completed", "insufficient_funds"]
    assert posted(facility_wallet(clinic["id"])) == 40_00
    assert posted(user_wallet(staff["bob"].id)) == 30_00
    assert transit() == 0
    check_guarantees(table)


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"currency": "USD", "items": []}, 400, "invalid_request"),
        (
            {"currency": "USD", "items": [{"to_email": "a@example.com", "amount": "1"}] * 501},
            400,
            "invalid_request",
        ),
        (batch(("alice@example.com", "0")), 400, "invalid_amount"),
        (batch(("alice@example.com", "1.001")), 400, "invalid_amount"),
        (batch(("alice@example.com", "-1")), 400, "invalid_amount"),
        ({"currency": "USD", "items": [{"to_email": "a@b.c", "amount": 5}]}, 400, "invalid_amount"),
        (batch(("alice@example.com", "1"), code="XYZ"), 400, "unsupported_currency"),
        (batch(("alice@example.com", "1"), code="usd"), 400, "unsupported_currency"),
        ({"currency": "USD"}, 400, "invalid_request"),
        ({"currency": "USD", "items": [{"amount": "1"}]}, 400, "invalid_request"),
        (
            {"currency": "USD", "items": [{"to_email": "   ", "amount": "1"}]},
            400,
            "invalid_request",
        ),
        (
            {"currency": "USD", "items": [{"to_email": "a@b.c", "amount": "1", "memo": "m" * 501}]},
            400,
            "invalid_request",
        ),
        (
            {"currency": "USD", "items": [{"to_email": "a@b.c", "amount": "1", "x": 1}]},
            400,
            "invalid_request",
        ),
        ({"currency": "USD", "items": "alice"}, 400, "invalid_request"),
        ([1, 2], 400, "invalid_request"),
    ],
)
def test_bad_batches_answer_contract_errors_and_move_nothing(
    api_client, clinic, staff, table, body, status, code
):
    response, answer = post(api_client, clinic["secret"], body)

    assert (response.status_code, answer["error"]["code"]) == (status, code), answer
    assert payroll_transactions(table) == []


def test_the_largest_batch_the_body_limit_lets_through_is_paid_whole(
    api_client, clinic, staff, table
):
    """500 items with long memos, just under the 256 KiB body limit: the batch, its event and its
    replay record are each one DynamoDB item (400 KB at most), and all fit."""
    crew = ("alice", "bob", "dan", "erin")  # item i goes to worker i % 4: one recipient each
    body = {
        "currency": "USD",
        "items": [
            {"to_email": f"{crew[i % 4]}@example.com", "amount": "0.01", "memo": "m" * 459}
            for i in range(500)
        ],
    }
    assert 255 * 1024 < len(json.dumps(body).encode()) < 256 * 1024

    response, answer = post(api_client, clinic["secret"], body)

    assert response.status_code == 201, answer
    assert (answer["payout"]["status"], answer["payout"]["paid_total"]) == ("completed", "5.00")
    assert posted(user_wallet(staff["dan"].id)) == 1_25
    assert transit() == 0
    assert_each_item_paid_once(table, 500)


def test_a_batch_too_large_to_store_is_refused_before_anything_moves(
    api_client, clinic, staff, table
):
    """Under the 256 KiB body limit, but memos in a non-Latin script grow to 6 bytes a character
    once JSON-escaped: the answer, its event and its replay record would each pass DynamoDB's
    400 KB item limit (a 5xx after the money moved). Refused first, as a bad request."""
    memo = "\u8a66" * 500  # 500 CJK characters: 1,500 bytes as sent, 3,000 escaped
    body = {
        "currency": "USD",
        "items": [{"to_email": "alice@example.com", "amount": "0.01", "memo": memo}] * 165,
    }
    assert len(json.dumps(body, ensure_ascii=False).encode()) < 256 * 1024

    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {clinic['secret']}",
        "idempotency-key": "big",
    }
    raw = json.dumps(body, ensure_ascii=False).encode()
    response = api_client.http.post(PATH, body=raw, headers=headers)

    answer = json.loads(response.body)
    assert (response.status_code, answer["error"]["code"]) == (400, "invalid_request"), answer
    assert payroll_transactions(table) == []


def test_the_key_and_its_scope_are_required(api_client, clinic, people, staff):  # noqa: F811
    response, body = post(api_client, clinic["secret"], batch(("alice@example.com", "1")), key=None)
    assert (response.status_code, body["error"]["code"]) == (400, "idempotency_key_required")
    _, read_only = issue(api_client, people, clinic["id"], scopes=["read"])
    response, body = post(api_client, read_only["secret"], batch(("alice@example.com", "1")))
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")
    response, body = post(api_client, people["tokens"]["alice"], batch(("bob@example.com", "1")))
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")


# -- idempotency, reading back --------------------------------------------------------------------
def test_a_retry_answers_the_same_payout_and_pays_nobody_again(api_client, clinic, staff, table):
    body = batch(("alice@example.com", "10"), ("bob@example.com", "5"))
    first, created = post(api_client, clinic["secret"], body)
    again, replayed = post(api_client, clinic["secret"], body)

    assert (first.status_code, again.status_code) == (201, 201)
    assert replayed == created
    assert posted(facility_wallet(clinic["id"])) == 85_00
    assert set(item_payments(table).values()) == {1}
    other, reused = post(api_client, clinic["secret"], batch(("alice@example.com", "11")))
    assert (other.status_code, reused["error"]["code"]) == (409, "idempotency_key_reused")


def test_the_batch_keeps_its_key_after_the_replay_record_expired(api_client, clinic, staff, table):
    body = batch(("alice@example.com", "10"), ("bob@example.com", "5"))
    _, created = post(api_client, clinic["secret"], body, key="old")
    for item in IdempotencyItem.scan(IdempotencyItem.item_type == IdempotencyItem.ITEM_TYPE):
        item.delete()  # as if its 24 h TTL had passed

    other, reused = post(api_client, clinic["secret"], batch(("bob@example.com", "5")), key="old")
    again, replayed = post(api_client, clinic["secret"], body, key="old")

    assert (other.status_code, reused["error"]["code"]) == (409, "idempotency_key_reused")
    assert (again.status_code, replayed) == (201, created)
    assert posted(facility_wallet(clinic["id"])) == 85_00
    assert_each_item_paid_once(table, 2)


def test_a_facility_reads_its_batches_and_never_anothers(api_client, clinic, people, staff):  # noqa: F811
    _, first = post(api_client, clinic["secret"], batch(("alice@example.com", "1")), key="a")
    _, second = post(api_client, clinic["secret"], batch(("bob@example.com", "2")), key="b")
    payout_id = first["payout"]["id"]

    response, found = get(api_client, clinic["secret"], f"{PATH}/{payout_id}")
    assert response.status_code == 200
    assert found == first

    response, page = get(api_client, clinic["secret"], f"{PATH}?limit=1")
    assert response.status_code == 200
    assert [p["id"] for p in page["data"]] == [second["payout"]["id"]]
    assert page["data"][0]["item_count"] == 1
    assert "items" not in page["data"][0]
    response, rest = get(
        api_client, clinic["secret"], f"{PATH}?limit=1&cursor={page['next_cursor']}"
    )
    assert [p["id"] for p in rest["data"]] == [payout_id]

    _, admin_made = post_facility(api_client, people, "Other clinic")
    _, other_key = issue(api_client, people, admin_made, scopes=["payouts"])
    response, body = get(api_client, other_key["secret"], f"{PATH}/{payout_id}")
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    response, body = get(api_client, other_key["secret"], PATH)
    assert body == {"data": [], "next_cursor": None}
    for unknown in ("po_unknown", "po_" + "a" * 28, "x" * 3000):
        response, body = get(api_client, clinic["secret"], f"{PATH}/{unknown}")
        assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    # Another facility's cursor, or a made-up one, is a bad request, never a 5xx.
    for cursor in ("abc", page["next_cursor"]):
        response, body = get(api_client, other_key["secret"], f"{PATH}?cursor={cursor}")
        assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")


def post_facility(client, people, name: str):  # noqa: F811
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {people['tokens']['admin']}",
    }
    response = client.http.post(
        "/v1/admin/facilities", body=json.dumps({"name": name}).encode(), headers=headers
    )
    return response, json.loads(response.body)["facility"]["id"]


# -- crashes ------------------------------------------------------------------------------------
CREW = ("alice", "bob", "dan", "erin", "alice", "bob")  # six items; Alice and Bob twice


def crew_batch() -> dict:
    return batch(*((f"{name}@example.com", f"{n + 1}.00") for n, name in enumerate(CREW)))


def expected_balances(staff) -> dict[str, int]:
    paid: Counter = Counter()
    for n, name in enumerate(CREW):
        paid[name] += (n + 1) * 100
    start = {"alice": 10_00}
    return {user_wallet(staff[n].id): start.get(n, 0) + paid[n] for n in paid}


def crash_before_the_write(monkeypatch, *, after: int) -> None:
    """Fault injection: the process dies just before its ``after``+1-th atomic write."""
    real_send = AtomicWrite.send
    sent: list[int] = []
    lock = threading.Lock()

    def send_or_die(self) -> None:
        with lock:
            if len(sent) >= after:
                raise SystemError("the process died here")
            sent.append(1)
        real_send(self)

    monkeypatch.setattr(AtomicWrite, "send", send_or_die)


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("after", [0, 1, 3, 6, 7])
@pytest.mark.parametrize("how", ["answer_lost", "died_before_write"])
def test_a_crash_after_k_writes_is_finished_by_the_retry_paying_each_item_once(
    api_client, clinic, staff, table, monkeypatch, after, how, workers
):
    """Write 1 reserves the total, 2-7 pay the six items, 8 completes the batch. Whatever write
    the run dies at (or whose answer it loses once it committed), the retry finishes the batch:
    every item paid exactly once, balances exact, the transit account empty."""
    monkeypatch.setattr(service, "WORKERS", workers)
    with monkeypatch.context() as faults:
        if how == "answer_lost":
            lose_the_first_answer(faults, after=after)
        else:
            crash_before_the_write(faults, after=after)
        crashed, body = post(api_client, clinic["secret"], crew_batch())
        assert (crashed.status_code, body["error"]["code"]) == (500, "internal_error")

    retried, body = post(api_client, clinic["secret"], crew_batch())

    assert retried.status_code == 201, body
    assert body["payout"]["status"] == "completed"
    assert_each_item_paid_once(table, 6)
    for account, balance in expected_balances(staff).items():
        assert posted(account) == balance
    assert posted(facility_wallet(clinic["id"])) == 100_00 - 21_00
    assert transit() == 0
    assert [e["event_type"] for e in events(table)] == ["payout.completed"]
    check_guarantees(table)


def test_a_crashed_batch_is_finished_by_the_scheduled_finisher(
    api_client, clinic, staff, table, monkeypatch
):
    with monkeypatch.context() as faults:
        crash_before_the_write(faults, after=3)
        crashed, _ = post(api_client, clinic["secret"], crew_batch())
    assert crashed.status_code == 500
    (payout_id,) = {t["metadata"]["payroll_id"] for t in payroll_transactions(table)}
    _, seen = get(api_client, clinic["secret"], f"{PATH}/{payout_id}")
    assert seen["payout"]["status"] == "processing"
    assert Counter(i["status"] for i in seen["payout"]["items"]) == {"paid": 2, "pending": 4}

    created = parse_iso(seen["payout"]["created_at"])
    assert jobs.run_payroll_finisher(now=created + timedelta(minutes=4)) == {}  # not stuck yet
    later = created + timedelta(minutes=6)
    assert jobs.run_payroll_finisher(now=later) == {payout_id: "completed"}
    assert jobs.run_payroll_finisher(now=later) == {}  # out of the queue

    assert_each_item_paid_once(table, 6)
    for account, balance in expected_balances(staff).items():
        assert posted(account) == balance
    assert transit() == 0
    # The client's retry now answers the finished batch, paying nobody again.
    retried, body = post(api_client, clinic["secret"], crew_batch())
    assert (retried.status_code, body["payout"]["status"]) == (201, "completed")
    assert body["payout"]["id"] == payout_id
    _, page = get(api_client, clinic["secret"], PATH)
    assert page["data"][0]["status"] == "completed"
    assert len(events(table)) == 1
    check_guarantees(table)


def test_a_batch_the_finisher_cannot_finish_does_not_stop_the_others(
    api_client, clinic, staff, table, monkeypatch
):
    with monkeypatch.context() as faults:
        crash_before_the_write(faults, after=3)
        crashed, _ = post(api_client, clinic["secret"], crew_batch())
    assert crashed.status_code == 500
    (payout_id,) = {t["metadata"]["payroll_id"] for t in payroll_transactions(table)}
    _, seen = get(api_client, clinic["secret"], f"{PATH}/{payout_id}")
    later = parse_iso(seen["payout"]["created_at"]) + timedelta(minutes=6)

    def broken(*args, **kwargs):  # not a ledger error: throttling, a bug
        raise RuntimeError("throttled")

    with monkeypatch.context() as faults:
        faults.setattr(service, "finish", broken)
        assert jobs.run_payroll_finisher(now=later) == {payout_id: "error:RuntimeError"}
    assert jobs.run_payroll_finisher(now=later) == {payout_id: "completed"}  # taken again
    assert_each_item_paid_once(table, 6)


def test_the_retry_and_the_finisher_racing_on_one_batch_pay_each_item_once(
    api_client, clinic, staff, table, monkeypatch
):
    with monkeypatch.context() as faults:
        crash_before_the_write(faults, after=1)  # reserved, nobody paid
        post(api_client, clinic["secret"], crew_batch())
    (payout_id,) = {t["metadata"]["payroll_id"] for t in payroll_transactions(table)}
    stored = get_payroll_repository().get(payout_id)
    start = threading.Barrier(3)
    finished: list[str] = []

    def run() -> None:
        payer = service.Payer(
            get_ledger_service(), get_payroll_repository(), get_webhook_events(), workers=2
        )
        start.wait()
        finished.append(service.finish(payer, stored).status.value)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert finished == ["completed"] * 3
    assert_each_item_paid_once(table, 6)
    for account, balance in expected_balances(staff).items():
        assert posted(account) == balance
    assert transit() == 0
    assert len(events(table)) == 1
    check_guarantees(table)


def test_the_reconciliation_of_the_day_is_ok_after_payouts_crashes_and_returns(
    api_client, clinic, staff, table, monkeypatch
):
    """Funding, item, return and crashed-then-finished batches: the day's reconciliation (every
    transaction balanced, the trial balance zero, each account equal to its entries, pending
    amounts equal to open holds) finds nothing wrong."""
    from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore
    from chalicelib.services import reconciliation as recon

    post(api_client, clinic["secret"], batch(("dan@example.com", "3"), ("x@example.com", "4")))
    with monkeypatch.context() as faults:
        lose_the_first_answer(faults, after=2)
        post(api_client, clinic["secret"], crew_batch(), key="crash")
    retried, _ = post(api_client, clinic["secret"], crew_batch(), key="crash")
    assert retried.status_code == 201

    today = datetime.now(UTC).date()
    # Run as the night after would: the day is over, every write of it is before the cut-off.
    next_night = to_iso(datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(1))
    report = recon.run(
        today.isoformat(), store=DynamoReconciliationStore(table), now=lambda: next_night
    ).as_dict()

    assert report["status"] == "ok", report["mismatches"]
    assert report["accounts_checked"] >= 6  # the facility, four users, transit shards
    assert report["trial_balance"]["USD"] == "0.00"
    assert report["transactions_checked"] >= 2 + 1 + 6 + 1


def test_a_batchs_transfers_are_corrected_not_rolled_back(api_client, clinic, people, staff, table):  # noqa: F811
    """A rollback of an item's transfer would take the money into the transit account while the
    batch says paid: refused like provider-settled money (409 not_reversible), nothing moves."""
    _, body = post(api_client, clinic["secret"], batch(("dan@example.com", "5")))
    item_txn = body["payout"]["items"][0]["transaction_id"]
    funding = next(
        t["transaction_id"]
        for t in payroll_transactions(table)
        if t["metadata"]["payroll_leg"] == "funding"
    )
    for transaction_id in (item_txn, funding):
        response = api_client.http.post(
            f"/v1/admin/transactions/{transaction_id}/rollback",
            body=json.dumps({"reason": "mistake"}).encode(),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {people['tokens']['admin']}",
                "idempotency-key": f"rb-{transaction_id}",
            },
        )
        answer = json.loads(response.body)
        assert (response.status_code, answer["error"]["code"]) == (409, "not_reversible")
    assert posted(user_wallet(staff["dan"].id)) == 5_00
    assert transit() == 0
