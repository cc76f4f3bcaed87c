"""Crypto deposits and the crypto gateway's webhooks over HTTP: deposit addresses, signatures,
deposits credited once per tx_hash, withdrawals completed or failed by the gateway, duplicates,
out-of-order events and races (the races at service level: the Chalice app holds
current_request globally)."""

from __future__ import annotations

import json
import threading
import time

import pyotp
import pytest

from chalicelib.adapters.crypto_gateway import LocalCryptoGateway, sign
from chalicelib.adapters.dynamo.models import PayoutItem
from chalicelib.api import dependencies
from chalicelib.api.dependencies import get_auth_service, get_crypto_gateway, get_ledger_service
from chalicelib.auth import passwords
from chalicelib.config import LOCAL_CRYPTO_WEBHOOK_SECRET, get_settings
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.services import crypto as crypto_service
from chalicelib.services import withdrawals as withdrawal_service
from tests.api.helpers import balances, call
from tests.support import LedgerWorld, lose_the_first_answer, scan, verified

PASSWORD = "correct horse battery"
DESTINATION = "bc1qexampleaddress0000000000"
SECRET = LOCAL_CRYPTO_WEBHOOK_SECRET


@pytest.fixture
def people(table, api_client):
    get_settings.cache_clear()
    dependencies.reset()
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    bob = verified(auth.sign_up("bob@example.com", PASSWORD, True, None))
    _, secret = auth.create_admin("admin@example.com", PASSWORD)
    tokens = {
        "alice": auth.login("alice@example.com", PASSWORD, None, None).access_token,
        "bob": auth.login("bob@example.com", PASSWORD, None, None).access_token,
        "admin": auth.login(
            "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
        ).access_token,
    }
    return {
        "alice": alice,
        "bob": bob,
        "btc": wallet_id(OwnerType.USER, alice.id, "BTC"),
        "tokens": tokens,
        "world": LedgerWorld.create(table),
    }


def address_of(client, token: str, currency: str = "BTC") -> str:
    response, body = call(
        client, "POST", "/v1/deposits/crypto/address", token, {"currency": currency}
    )
    assert response.status_code == 200, body
    return body["address"]["address"]


def event(event_id: str, type_: str, **data) -> dict:
    return {"id": event_id, "type": type_, "data": data}


def deposit_event(event_id: str, address: str, tx_hash: str, amount: str = "0.01") -> dict:
    return event(
        event_id,
        "deposit.confirmed",
        address=address,
        currency="BTC",
        amount=amount,
        tx_hash=tx_hash,
    )


def deliver(client, body: dict, *, secret: str = SECRET, t: int | None = None, raw=None):
    raw_body = json.dumps(body).encode()
    headers = {"content-type": "application/json", "x-signature": sign(secret, raw_body, t)}
    response = client.http.request(
        "POST", "/v1/webhooks/crypto", headers=headers, body=raw if raw is not None else raw_body
    )
    return response, json.loads(response.body)


def inbox(table: str) -> dict[str, str]:
    return {i["event_id"]: i["outcome"] for i in scan(table) if i["item_type"] == "webhook_event"}


def deposits(table: str) -> list[dict]:
    return [i for i in scan(table) if i["item_type"] == "transaction" and i["type"] == "deposit"]


# -- deposit addresses ----------------------------------------------------------------------------
def test_the_same_user_and_currency_always_get_the_same_address(api_client, people):
    alice, bob = people["tokens"]["alice"], people["tokens"]["bob"]
    btc = address_of(api_client, alice)
    assert btc.startswith("bc1q")
    assert btc == address_of(api_client, alice)
    eth = address_of(api_client, alice, "ETH")
    assert eth.startswith("0x")
    assert len(eth) == 42
    assert address_of(api_client, alice, "USDT") not in (eth, btc)
    assert address_of(api_client, bob) != btc
    stored = [i for i in scan(people["world"].table) if i["item_type"] == "crypto_address"]
    assert len(stored) == 4
    assert {i["user_id"] for i in stored if i["address"] == btc} == {people["alice"].id}
    for bad, code in (("USD", "unsupported_currency"), ("DOGE", "unsupported_currency")):
        response, body = call(
            api_client, "POST", "/v1/deposits/crypto/address", alice, {"currency": bad}
        )
        assert (response.status_code, body["error"]["code"]) == (400, code)
    response = api_client.http.request(
        "POST",
        "/v1/deposits/crypto/address",
        headers={"content-type": "application/json"},
        body=b'{"currency": "BTC"}',
    )
    assert response.status_code == 401


# -- signatures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "wrong_secret", "stale", "future", "body_changed"])
def test_a_badly_signed_webhook_is_refused_and_changes_nothing(api_client, people, case):
    address = address_of(api_client, people["tokens"]["alice"])
    body = deposit_event("evt_1", address, "tx_1")
    raw_body = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if case == "missing":
        pass
    elif case == "wrong_secret":
        headers["x-signature"] = sign("not-the-secret", raw_body)
    elif case == "stale":
        headers["x-signature"] = sign(SECRET, raw_body, int(time.time()) - 301)
    elif case == "future":
        headers["x-signature"] = sign(SECRET, raw_body, int(time.time()) + 301)
    else:
        headers["x-signature"] = sign(SECRET, raw_body)
        raw_body = raw_body.replace(b"0.01", b"9.99")
    response = api_client.http.request(
        "POST", "/v1/webhooks/crypto", headers=headers, body=raw_body
    )
    answer = json.loads(response.body)
    assert (response.status_code, answer["error"]["code"]) == (400, "invalid_webhook")
    assert balances(people["btc"]) == (0, 0)
    assert inbox(people["world"].table) == {}
    assert deposits(people["world"].table) == []


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"id": "e", "type": "x"}', b'{"id": 5, "type": "x", "data": {}}']
)
def test_a_signed_but_unreadable_body_is_refused(api_client, people, raw):
    headers = {"content-type": "application/json", "x-signature": sign(SECRET, raw)}
    response = api_client.http.request("POST", "/v1/webhooks/crypto", headers=headers, body=raw)
    assert response.status_code == 400
    assert inbox(people["world"].table) == {}


# -- deposits -------------------------------------------------------------------------------------
def test_a_deposit_is_credited_once_per_tx_hash(api_client, people):
    address = address_of(api_client, people["tokens"]["alice"])
    response, body = deliver(api_client, deposit_event("evt_1", address, "tx_1"))
    assert (response.status_code, body["outcome"]) == (200, "credited")
    assert balances(people["btc"]) == (1_000_000, 1_000_000)

    response, body = deliver(api_client, deposit_event("evt_1", address, "tx_1"))  # redelivery
    assert (response.status_code, body["outcome"]) == (200, "duplicate")
    response, body = deliver(api_client, deposit_event("evt_2", address, "tx_1"))  # same tx
    assert (response.status_code, body["outcome"]) == (200, "duplicate_tx")
    response, body = deliver(api_client, deposit_event("evt_3", address, "tx_1", "5"))
    assert (response.status_code, body["outcome"]) == (200, "conflict")
    assert balances(people["btc"]) == (1_000_000, 1_000_000)

    response, body = deliver(api_client, deposit_event("evt_4", address, "tx_2", "0.5"))
    assert (response.status_code, body["outcome"]) == (200, "credited")
    assert balances(people["btc"]) == (51_000_000, 51_000_000)
    custody = PlatformAccount(PlatformKind.CRYPTO_CUSTODY, "BTC")
    assert get_ledger_service().platform_balance(custody) == -51_000_000
    assert inbox(people["world"].table) == {
        "evt_1": "credited",
        "evt_2": "duplicate_tx",
        "evt_3": "conflict",
        "evt_4": "credited",
    }
    assert len(deposits(people["world"].table)) == 2
    people["world"].check_guarantees()


def test_one_blockchain_transaction_paying_two_users_credits_both_once(api_client, people):
    """Issue: credits were once per tx_hash, so the second output of one transaction (another
    user's address) was taken for a duplicate and never credited."""
    alice_address = address_of(api_client, people["tokens"]["alice"])
    bob_address = address_of(api_client, people["tokens"]["bob"])
    bob_btc = wallet_id(OwnerType.USER, people["bob"].id, "BTC")
    response, body = deliver(api_client, deposit_event("evt_a", alice_address, "tx_two", "0.01"))
    assert body["outcome"] == "credited"
    response, body = deliver(api_client, deposit_event("evt_b", bob_address, "tx_two", "0.02"))
    assert (response.status_code, body["outcome"]) == (200, "credited")
    response, body = deliver(api_client, deposit_event("evt_c", bob_address, "tx_two", "0.02"))
    assert body["outcome"] == "duplicate_tx"
    assert balances(people["btc"]) == (1_000_000, 1_000_000)
    assert balances(bob_btc) == (2_000_000, 2_000_000)
    people["world"].check_guarantees()


def test_a_deposit_credited_under_the_old_per_tx_hash_id_is_not_credited_again(api_client, people):
    from chalicelib.domain.transactions import TransactionType, derive_transaction_id
    from chalicelib.services.ledger import PostingRequest

    address = address_of(api_client, people["tokens"]["alice"])
    get_ledger_service().record(  # as the previous build wrote it
        transaction_id=derive_transaction_id("crypto-deposit", "BTC", "tx_old"),
        type=TransactionType.DEPOSIT,
        postings=[
            PostingRequest(PlatformAccount(PlatformKind.CRYPTO_CUSTODY, "BTC"), "BTC", -1_000_000),
            PostingRequest(people["btc"], "BTC", 1_000_000),
        ],
        metadata={"tx_hash": "tx_old", "address": address, "event_id": "evt_old"},
    )
    response, body = deliver(api_client, deposit_event("evt_new", address, "tx_old"))
    assert (response.status_code, body["outcome"]) == (200, "duplicate_tx")
    assert balances(people["btc"]) == (1_000_000, 1_000_000)
    people["world"].check_guarantees()


def test_a_deposit_to_an_unknown_address_credits_nobody(api_client, people):
    address_of(api_client, people["tokens"]["alice"])
    response, body = deliver(api_client, deposit_event("evt_1", "bc1qnobodyhasthisaddress", "tx_1"))
    assert (response.status_code, body["outcome"]) == (200, "unmatched")
    assert balances(people["btc"]) == (0, 0)
    assert deposits(people["world"].table) == []
    assert inbox(people["world"].table) == {"evt_1": "unmatched"}
    response, body = deliver(api_client, deposit_event("evt_1", "bc1qnobodyhasthisaddress", "tx_1"))
    assert (response.status_code, body["outcome"]) == (200, "duplicate")


def test_a_signed_deposit_with_a_bad_amount_is_refused(api_client, people):
    address = address_of(api_client, people["tokens"]["alice"])
    for amount in ("-1", "0.000000001", 1):
        response, _ = deliver(api_client, deposit_event("evt_1", address, "tx_1", amount))
        assert response.status_code == 400
    assert inbox(people["world"].table) == {}


def test_unknown_event_types_are_recorded_and_move_nothing(api_client, people):
    response, body = deliver(api_client, event("evt_9", "address.created", address="x"))
    assert (response.status_code, body["outcome"]) == (200, "ignored")
    assert inbox(people["world"].table) == {"evt_9": "ignored"}


def test_racing_deliveries_of_one_deposit_credit_once(api_client, people):
    address = address_of(api_client, people["tokens"]["alice"])
    ledger = get_ledger_service()
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def go(n: int) -> None:
        # Three deliveries of one event, three other events for the same tx_hash.
        body = deposit_event(f"evt_{n % 2}", address, "tx_race")
        parsed = crypto_service.Event(body["id"], body["type"], body["data"])
        start.wait()
        try:
            outcomes.append(crypto_service.handle(ledger, stores(), parsed))
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("credited") == 1, outcomes
    assert set(outcomes) <= {"credited", "duplicate", "duplicate_tx"}, outcomes
    assert balances(people["btc"]) == (1_000_000, 1_000_000)
    assert len(deposits(people["world"].table)) == 1
    people["world"].check_guarantees()


# -- withdrawals ----------------------------------------------------------------------------------
def approved_withdrawal(client, people, amount: str = "0.25") -> dict:
    """Alice gets 1 BTC by crypto deposit, asks to withdraw ``amount``, the admin approves."""
    address = address_of(client, people["tokens"]["alice"])
    deliver(client, deposit_event("evt_fund", address, "tx_fund", "1"))
    body = {"amount": amount, "currency": "BTC", "destination": DESTINATION}
    response, answer = call(
        client, "POST", "/v1/withdrawals", people["tokens"]["alice"], body, key="w1"
    )
    assert response.status_code == 201, answer
    w = answer["withdrawal"]
    response, answer = call(
        client, "POST", f"/v1/admin/withdrawals/{w['id']}/approve", people["tokens"]["admin"]
    )
    assert (response.status_code, answer["withdrawal"]["status"]) == (200, "processing")
    return w


def stores() -> crypto_service.CryptoStores:
    """What the webhook route gives ``crypto.handle``, from the same getters."""
    return crypto_service.CryptoStores(
        inbox=dependencies.get_inbox(),
        addresses=dependencies.get_address_repository(),
        withdrawals=dependencies.get_withdrawal_repository(),
        payouts=dependencies.get_payout_repository(),
    )


def stored_withdrawal(withdrawal_id: str):  # type: ignore[no-untyped-def]
    return dependencies.get_withdrawal_repository().get(withdrawal_id)


def status_of(withdrawal_id: str) -> str:
    return stored_withdrawal(withdrawal_id).status


def payout_status(withdrawal_id: str) -> str:
    return next(p.status for p in PayoutItem.scan() if p.withdrawal_id == withdrawal_id)


def test_an_approved_payout_is_handed_to_the_gateway(api_client, people):
    w = approved_withdrawal(api_client, people)
    assert [p.withdrawal_id for p in get_crypto_gateway().payouts] == [w["id"]]
    assert payout_status(w["id"]) == "sent"


def test_a_completed_payout_posts_the_hold(api_client, people):
    w = approved_withdrawal(api_client, people)
    assert balances(people["btc"]) == (100_000_000, 75_000_000)
    completed = event("evt_c", "withdrawal.completed", withdrawal_id=w["id"], tx_hash="tx_out")
    response, body = deliver(api_client, completed)
    assert (response.status_code, body["outcome"]) == (200, "completed")
    assert balances(people["btc"]) == (75_000_000, 75_000_000)  # posted drops, hold cleared
    assert status_of(w["id"]) == "completed"
    assert payout_status(w["id"]) == "completed"

    response, body = deliver(api_client, completed)  # redelivery
    assert (response.status_code, body["outcome"]) == (200, "duplicate")
    failed = event("evt_f", "withdrawal.failed", withdrawal_id=w["id"], reason="late")
    response, body = deliver(api_client, failed)  # out of order: a no-op
    assert (response.status_code, body["outcome"]) == (200, "ignored")
    assert balances(people["btc"]) == (75_000_000, 75_000_000)
    assert status_of(w["id"]) == "completed"
    people["world"].check_guarantees()


def test_a_completed_payout_whose_write_answer_was_lost_is_posted_once_on_redelivery(
    api_client, people, monkeypatch
):
    """Fault injection: the hold's posting (with the withdrawal's and the payout's status)
    commits, then its answer is lost: the webhook answers 500 and the gateway delivers the event
    again, which finds it done and answers 200 without posting twice."""
    w = approved_withdrawal(api_client, people)
    completed = event("evt_lost", "withdrawal.completed", withdrawal_id=w["id"], tx_hash="tx_1")
    lost = lose_the_first_answer(monkeypatch)

    first, _ = deliver(api_client, completed)
    assert first.status_code == 500
    assert lost
    again, body = deliver(api_client, completed)
    assert again.status_code == 200, body
    assert body["outcome"] in ("completed", "duplicate")
    assert balances(people["btc"]) == (75_000_000, 75_000_000)  # posted once
    assert (status_of(w["id"]), payout_status(w["id"])) == ("completed", "completed")
    people["world"].check_guarantees()


def test_a_completed_withdrawal_cannot_be_rolled_back(api_client, people):
    """The coins left on chain; a rollback would hand them to the user a second time."""
    w = approved_withdrawal(api_client, people)
    completed = event("evt_c", "withdrawal.completed", withdrawal_id=w["id"], tx_hash="tx_out")
    assert deliver(api_client, completed)[1]["outcome"] == "completed"
    txn_id = stored_withdrawal(w["id"]).transaction_id
    response, body = call(
        api_client,
        "POST",
        f"/v1/admin/transactions/{txn_id}/rollback",
        people["tokens"]["admin"],
        {"reason": "user says it never arrived"},
        "rb1",
    )
    assert (response.status_code, body["error"]["code"]) == (409, "not_reversible")
    assert balances(people["btc"]) == (75_000_000, 75_000_000)
    people["world"].check_guarantees()


def test_a_failed_payout_releases_the_hold_and_the_days_limit(api_client, people):
    w = approved_withdrawal(api_client, people)
    failed = event("evt_f", "withdrawal.failed", withdrawal_id=w["id"], reason="node down")
    response, body = deliver(api_client, failed)
    assert (response.status_code, body["outcome"]) == (200, "failed")
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    w_now = stored_withdrawal(w["id"])
    assert (w_now.status, w_now.reason) == ("failed", "node down")
    limits = [i for i in scan(people["world"].table) if i["item_type"] == "withdrawal_limit"]
    assert [int(i["total"]) for i in limits] == [0]

    completed = event("evt_c", "withdrawal.completed", withdrawal_id=w["id"], tx_hash="tx_out")
    response, body = deliver(api_client, completed)
    assert (response.status_code, body["outcome"]) == (200, "ignored")
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    people["world"].check_guarantees()


def test_events_for_a_withdrawal_not_processing_move_nothing(api_client, people):
    address = address_of(api_client, people["tokens"]["alice"])
    deliver(api_client, deposit_event("evt_fund", address, "tx_fund", "1"))
    body = {"amount": "0.25", "currency": "BTC", "destination": DESTINATION}
    _, answer = call(api_client, "POST", "/v1/withdrawals", people["tokens"]["alice"], body, "k")
    w = answer["withdrawal"]  # pending_review: never approved
    for n, type_ in enumerate(("withdrawal.completed", "withdrawal.failed")):
        response, body = deliver(api_client, event(f"evt_{n}", type_, withdrawal_id=w["id"]))
        assert (response.status_code, body["outcome"]) == (200, "ignored")
    response, body = deliver(
        api_client, event("evt_x", "withdrawal.completed", withdrawal_id="wd_x")
    )
    assert (response.status_code, body["outcome"]) == (200, "ignored")
    assert balances(people["btc"]) == (100_000_000, 75_000_000)
    assert status_of(w["id"]) == "pending_review"


def test_racing_settlements_move_the_hold_once(api_client, people):
    w = approved_withdrawal(api_client, people)
    ledger = get_ledger_service()
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def go(n: int) -> None:
        type_ = "withdrawal.completed" if n % 2 == 0 else "withdrawal.failed"
        parsed = crypto_service.Event(f"evt_{n}", type_, {"withdrawal_id": w["id"]})
        start.wait()
        try:
            outcomes.append(crypto_service.handle(ledger, stores(), parsed))
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settled = [o for o in outcomes if o in ("completed", "failed")]
    assert len(settled) == 1, outcomes
    assert outcomes.count("ignored") == 3, outcomes
    assert status_of(w["id"]) == settled[0]
    expected = (75_000_000, 75_000_000) if settled[0] == "completed" else (100_000_000,) * 2
    assert balances(people["btc"]) == expected
    people["world"].check_guarantees()


def test_a_gateway_failure_leaves_the_payout_requested_and_the_approval_standing(
    api_client, people
):
    get_crypto_gateway().fail = True
    w = approved_withdrawal(api_client, people)
    assert status_of(w["id"]) == "processing"
    assert payout_status(w["id"]) == "requested"
    retry = LocalCryptoGateway("any")
    repositories = dependencies.get_withdrawal_repository(), dependencies.get_payout_repository()
    assert withdrawal_service.send_payout(retry, *repositories, w["id"]) is True
    # Already sent: no resend.
    assert withdrawal_service.send_payout(retry, *repositories, w["id"]) is True
    assert [p.withdrawal_id for p in retry.payouts] == [w["id"]]
    assert payout_status(w["id"]) == "sent"
