"""POST /v1/transfers and facilities over HTTP: payments, refusals that write nothing, and the
Idempotency-Key contract (replay, reuse with another body, in progress, expired record)."""

from __future__ import annotations

import json
import threading

import pyotp
import pytest

from chalicelib.adapters.dynamo.models import IdempotencyItem
from chalicelib.api.dependencies import get_auth_service, get_ledger_service, get_risk
from chalicelib.auth import passwords
from chalicelib.domain.accounts import OwnerType
from chalicelib.domain.errors import InsufficientFunds
from chalicelib.services import transfers as transfer_service
from tests.support import LedgerWorld, lose_the_first_answer, scan, verified

PASSWORD = "correct horse battery"


@pytest.fixture
def people(table, api_client):
    """Alice (USD 10.00, funded through the engine), Bob, and an MFA admin; their tokens."""
    passwords.configure_for_tests()
    service = get_auth_service()
    alice = verified(service.sign_up("alice@example.com", PASSWORD, True, None))
    bob = verified(service.sign_up("bob@example.com", PASSWORD, True, None))
    _, secret = service.create_admin("admin@example.com", PASSWORD)
    world = LedgerWorld.create(table)
    usd = {u.id: wallet(u.id) for u in (alice, bob)}
    world.fund(usd[alice.id], 10_00)
    tokens = {
        "alice": service.login("alice@example.com", PASSWORD, None, None).access_token,
        "bob": service.login("bob@example.com", PASSWORD, None, None).access_token,
        "admin": service.login(
            "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
        ).access_token,
    }
    return {"alice": alice, "bob": bob, "usd": usd, "tokens": tokens, "world": world}


def wallet(user_id: str, code: str = "USD") -> str:
    repository = get_ledger_service().repository
    return next(
        a.id for a in repository.accounts_of_owner(OwnerType.USER, user_id) if a.currency == code
    )


def posted(account_id: str) -> int:
    return get_ledger_service().repository.get_account(account_id).posted


def send(client, token: str, body: object, key: str | None = "k1", path: str = "/v1/transfers"):
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    if key is not None:
        headers["idempotency-key"] = key
    response = client.http.post(path, body=json.dumps(body).encode(), headers=headers)
    return response, json.loads(response.body)


def to_bob(amount: str = "2.50", **extra) -> dict:
    return {"amount": amount, "currency": "USD", "to_email": "bob@example.com", **extra}


def money_items(table: str) -> list[dict]:
    kinds = {"transaction", "entry", "account", "timeline"}
    return [i for i in scan(table) if i["item_type"] in kinds]


def test_a_transfer_moves_money_and_answers_the_transaction(api_client, people):
    response, body = send(api_client, people["tokens"]["alice"], to_bob(memo="lunch"))
    assert response.status_code == 201, body
    txn = body["transaction"]
    assert (txn["type"], txn["status"], txn["memo"]) == ("transfer", "posted", "lunch")
    assert sorted(p["amount"] for p in txn["postings"]) == ["-2.50", "2.50"]
    alice, bob = people["usd"][people["alice"].id], people["usd"][people["bob"].id]
    assert (posted(alice), posted(bob)) == (7_50, 2_50)
    people["world"].check_guarantees()


def test_a_payment_to_a_facility(api_client, people):
    response, body = send(
        api_client,
        people["tokens"]["admin"],
        {"name": "St. Mary Clinic"},
        key=None,
        path="/v1/admin/facilities",
    )
    assert response.status_code == 201, body
    facility = body["facility"]
    listed = json.loads(
        api_client.http.get(
            "/v1/facilities", headers={"authorization": f"Bearer {people['tokens']['bob']}"}
        ).body
    )
    assert listed["data"] == [facility]
    response, body = send(
        api_client,
        people["tokens"]["alice"],
        {"amount": "4", "currency": "USD", "to_facility_id": facility["id"]},
    )
    assert response.status_code == 201, body
    assert body["transaction"]["type"] == "payment"
    accounts = get_ledger_service().repository.accounts_of_owner(OwnerType.FACILITY, facility["id"])
    assert {a.currency: a.posted for a in accounts}["USD"] == 4_00
    people["world"].check_guarantees()


def test_facilities_are_created_by_mfa_admins_only(api_client, people):
    response, body = send(
        api_client, people["tokens"]["alice"], {"name": "X"}, key=None, path="/v1/admin/facilities"
    )
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    ("body", "key", "status", "code"),
    [
        (to_bob("10.01"), "k", 422, "insufficient_funds"),
        (to_bob(to_email="nobody@example.com"), "k", 404, "recipient_not_found"),
        (
            {"amount": "1", "currency": "USD", "to_facility_id": "fac_missing"},
            "k",
            404,
            "recipient_not_found",
        ),
        (to_bob(to_email="alice@example.com"), "k", 400, "invalid_request"),
        ({"amount": "1", "currency": "USD"}, "k", 400, "invalid_request"),
        (to_bob(to_facility_id="fac_x"), "k", 400, "invalid_request"),
        (to_bob(2.5), "k", 400, "invalid_amount"),
        (to_bob("-1.00"), "k", 400, "invalid_amount"),
        (to_bob("0"), "k", 400, "invalid_amount"),
        (to_bob("1.001"), "k", 400, "invalid_amount"),
        ({**to_bob(), "currency": "EUR"}, "k", 400, "unsupported_currency"),
        (to_bob(), None, 400, "idempotency_key_required"),
        (to_bob(), "x" * 256, 400, "idempotency_key_required"),
        ({**to_bob(), "fee": "0"}, "k", 400, "invalid_request"),
    ],
)
def test_refused_transfers_move_and_write_nothing(
    api_client, people, table, body, key, status, code
):
    before = money_items(table)
    response, answer = send(api_client, people["tokens"]["alice"], body, key=key)
    assert (response.status_code, answer["error"]["code"]) == (status, code)
    assert money_items(table) == before


def test_a_replay_returns_the_original_answer_and_moves_money_once(api_client, people):
    token = people["tokens"]["alice"]
    first, first_body = send(api_client, token, to_bob(), key="pay-1")
    again, again_body = send(api_client, token, to_bob(), key="pay-1")
    assert (again.status_code, again_body) == (first.status_code, first_body)
    assert posted(people["usd"][people["bob"].id]) == 2_50


def test_the_same_key_with_another_body_is_refused(api_client, people):
    token = people["tokens"]["alice"]
    send(api_client, token, to_bob(), key="pay-1")
    response, body = send(api_client, token, to_bob("3.00"), key="pay-1")
    assert (response.status_code, body["error"]["code"]) == (409, "idempotency_key_reused")
    assert posted(people["usd"][people["bob"].id]) == 2_50


def test_keys_belong_to_their_caller(api_client, people):
    send(api_client, people["tokens"]["alice"], to_bob(), key="shared")
    response, body = send(
        api_client,
        people["tokens"]["bob"],
        {"amount": "1.00", "currency": "USD", "to_email": "alice@example.com"},
        key="shared",
    )
    assert response.status_code == 201, body


def test_a_refusal_is_replayed_too(api_client, people):
    token = people["tokens"]["alice"]
    response, body = send(api_client, token, to_bob("20.00"), key="big")
    assert response.status_code == 422
    people["world"].fund(people["usd"][people["alice"].id], 50_00)
    again, again_body = send(api_client, token, to_bob("20.00"), key="big")
    assert (again.status_code, again_body) == (422, body)


def test_money_moves_once_even_after_the_replay_record_expired(api_client, people, table):
    token = people["tokens"]["alice"]
    _, first = send(api_client, token, to_bob(), key="pay-1")
    for item in IdempotencyItem.scan(IdempotencyItem.item_type == IdempotencyItem.ITEM_TYPE):
        item.delete()  # as if its 24 h TTL had passed
    response, again = send(api_client, token, to_bob(), key="pay-1")
    assert response.status_code == 201
    assert again["transaction"]["id"] == first["transaction"]["id"]
    assert posted(people["usd"][people["bob"].id]) == 2_50
    people["world"].check_guarantees()


def test_twenty_racing_transfers_spend_exactly_the_balance(people):
    """Twenty transfers of 1.00 race for alice's 10.00 through the transfer service (the Chalice
    app object holds ``current_request`` globally, so HTTP requests cannot run in parallel in
    one process); exactly ten succeed, the rest are refused, nothing else happens."""
    ledger = get_ledger_service()
    users = get_auth_service().repository
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def spend(n: int) -> None:
        start.wait()
        try:
            transfer_service.transfer(
                ledger,
                users,
                get_risk(),
                sender=people["alice"],
                request=transfer_service.TransferRequest(
                    "1.00", "USD", "bob@example.com", None, ""
                ),
                idempotency_key=f"race-{n}",
            )
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("insufficient_funds")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["insufficient_funds"] * 10 + ["ok"] * 10
    assert posted(people["usd"][people["alice"].id]) == 0
    people["world"].check_guarantees()


def test_a_request_killed_after_its_money_moved_is_replayed_by_its_retry(
    api_client, people, monkeypatch
):
    """A Lambda that times out (or dies) right after the money was written never gets to store
    its answer separately; the answer was written with the money, so the retry replays it
    instead of waiting out an in-progress claim or moving money again."""
    from chalicelib.services.ledger import LedgerService

    record = LedgerService.record

    def write_then_die(self, **kwargs):
        record(self, **kwargs)
        raise SystemExit("the function was stopped")  # not an Exception: nothing cleans up

    token = people["tokens"]["alice"]
    with monkeypatch.context() as patched:
        patched.setattr(LedgerService, "record", write_then_die)
        with pytest.raises(SystemExit):
            send(api_client, token, to_bob(), key="killed")
    assert posted(people["usd"][people["bob"].id]) == 2_50
    response, body = send(api_client, token, to_bob(), key="killed")
    assert response.status_code == 201, body
    assert body["transaction"]["status"] == "posted"
    assert posted(people["usd"][people["bob"].id]) == 2_50
    people["world"].check_guarantees()


def test_a_transfer_whose_write_answer_was_lost_is_replayed_by_its_retry(
    api_client, people, monkeypatch
):
    """Fault injection: the transfer's TransactWriteItems (money and replay record) commits,
    then its answer is lost: the request answers 500, and its retry (same key) gets the
    transfer's own answer; the money moved once."""
    token = people["tokens"]["alice"]
    lost = lose_the_first_answer(monkeypatch)

    first, _ = send(api_client, token, to_bob(), key="lost")
    assert first.status_code == 500
    assert lost
    response, body = send(api_client, token, to_bob(), key="lost")
    assert response.status_code == 201, body
    assert body["transaction"]["status"] == "posted"
    assert posted(people["usd"][people["bob"].id]) == 2_50
    people["world"].check_guarantees()


def test_a_stored_refusal_wins_over_a_racing_request_with_the_same_key(
    api_client, people, monkeypatch
):
    """The retry read "no answer yet" just before the first request stored its refusal; its
    money write carries the replay record with the condition that no live record exists, so it
    is refused as a whole and the retry answers the stored refusal: one key, one answer."""
    from chalicelib.adapters.dynamo.replay_store import DynamoReplayStore

    token = people["tokens"]["alice"]
    refused, refusal = send(api_client, token, to_bob("20.00"), key="once")
    assert refused.status_code == 422
    people["world"].fund(people["usd"][people["alice"].id], 50_00)
    real_find = DynamoReplayStore.find
    reads = []

    def stale_first_read(self, record, now):
        reads.append(record)
        return None if len(reads) == 1 else real_find(self, record, now)

    monkeypatch.setattr(DynamoReplayStore, "find", stale_first_read)
    again, again_body = send(api_client, token, to_bob("20.00"), key="once")
    assert (again.status_code, again_body) == (422, refusal)
    assert len(reads) == 2
    assert posted(people["usd"][people["bob"].id]) == 0
    assert posted(people["usd"][people["alice"].id]) == 60_00
    people["world"].check_guarantees()


def test_a_transfer_and_its_replay_record_are_one_write(api_client, people, table):
    response, body = send(api_client, people["tokens"]["alice"], to_bob(), key="atomic")
    assert response.status_code == 201
    records = [i for i in scan(table) if i["item_type"] == IdempotencyItem.ITEM_TYPE]
    assert len(records) == 1
    assert records[0]["status"] == "COMPLETED"
    assert json.loads(records[0]["data"]) == {"status": 201, "body": body}


def test_a_conflict_is_not_stored_as_the_keys_answer(api_client, people, monkeypatch):
    """``409 conflict`` says "safe to retry" (API.md): the retry with the same key runs again."""
    from chalicelib.domain.errors import VersionConflict
    from chalicelib.services.ledger import LedgerService

    token = people["tokens"]["alice"]
    with monkeypatch.context() as patched:

        def contended(self, **kwargs):
            raise VersionConflict("the accounts kept changing")

        patched.setattr(LedgerService, "record", contended)
        busy, busy_body = send(api_client, token, to_bob(), key="busy")
    assert (busy.status_code, busy_body["error"]["code"]) == (409, "conflict")
    response, _ = send(api_client, token, to_bob(), key="busy")
    assert response.status_code == 201
    assert posted(people["usd"][people["bob"].id]) == 2_50


@pytest.mark.filterwarnings("ignore:Couldn't determine the remaining time left")
def test_the_claiming_runner_answers_in_progress_while_the_first_request_runs(api_client, people):
    """Routes that call a provider claim their key first (Powertools, ``replayable``): the first
    request is held inside its handler while the retry arrives."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
    )

    from chalicelib.api.dependencies import get_idempotent_runner

    run, _ = get_idempotent_runner()
    payload = {"key": "transfer:usr_x:slow", "body": "{}"}
    inside, release = threading.Event(), threading.Event()

    def slow() -> dict:
        inside.set()
        release.wait(5)
        return {"status": 201, "body": {"ok": True}}

    first = threading.Thread(target=lambda: run(request=payload, execute=slow))
    first.start()
    assert inside.wait(5)
    with pytest.raises(IdempotencyAlreadyInProgressError):
        run(request=payload, execute=lambda: {"status": 500, "body": {}})
    release.set()
    first.join()
    assert run(request=payload, execute=lambda: {"status": 500, "body": {}}) == {
        "status": 201,
        "body": {"ok": True},
    }
