"""POST /v1/fx/quotes and /v1/fx/swaps over HTTP: a worked swap story with the FX pools' balances,
every refusal (and that it writes nothing), Idempotency-Key replay, and racing swaps of one quote.

Rates are the built-in table of the test stage (chalicelib/adapters/rates.py): USD/BTC 0.00001047,
BTC/USD 94525.00."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.quote_repository import DynamoQuoteRepository
from chalicelib.api import dependencies
from chalicelib.api.dependencies import get_auth_service, get_ledger_service
from chalicelib.auth import passwords
from chalicelib.config import get_settings
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind
from chalicelib.domain.errors import QuoteExpired, QuoteUsed
from chalicelib.domain.fx import epoch_seconds
from chalicelib.domain.transactions import TransactionType
from chalicelib.services import fx as fx_service
from chalicelib.services.ledger import PostingRequest
from tests.support import LedgerWorld, scan, verified

PASSWORD = "correct horse battery"


@pytest.fixture
def people(table, api_client):
    """Alice (USD 100.00, funded through the engine) and Bob; their users, wallets and tokens."""
    passwords.configure_for_tests()
    service = get_auth_service()
    alice = verified(service.sign_up("alice@example.com", PASSWORD, True, None))
    bob = verified(service.sign_up("bob@example.com", PASSWORD, True, None))
    world = LedgerWorld.create(table)
    world.fund(wallet(alice.id, "USD"), 100_00)
    tokens = {
        name: service.login(f"{name}@example.com", PASSWORD, None, None).access_token
        for name in ("alice", "bob")
    }
    return {"alice": alice, "bob": bob, "tokens": tokens, "world": world}


def wallet(user_id: str, code: str) -> str:
    repository = get_ledger_service().repository
    return next(
        a.id for a in repository.accounts_of_owner(OwnerType.USER, user_id) if a.currency == code
    )


def posted(user_id: str, code: str) -> int:
    return get_ledger_service().repository.get_account(wallet(user_id, code)).posted


def pool(code: str) -> int:
    return get_ledger_service().platform_balance(PlatformAccount(PlatformKind.FX_POOL, code))


def post(client, path: str, token: str, body: object, key: str | None = None):
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    if key is not None:
        headers["idempotency-key"] = key
    response = client.http.post(path, body=json.dumps(body).encode(), headers=headers)
    return response, json.loads(response.body)


def quote(client, token: str, from_currency="USD", to_currency="BTC", from_amount="50.00"):
    body = {"from_currency": from_currency, "to_currency": to_currency, "from_amount": from_amount}
    return post(client, "/v1/fx/quotes", token, body)


def swap(client, token: str, quote_id: str, key: str = "swap-1"):
    return post(client, "/v1/fx/swaps", token, {"quote_id": quote_id}, key=key)


def quoted(client, token: str, **body) -> str:
    response, answer = quote(client, token, **body)
    assert response.status_code == 201, answer
    return answer["quote"]["id"]


def swap_transactions(table: str) -> list[dict]:
    return [i for i in scan(table) if i["item_type"] == "transaction" and i["type"] == "swap"]


def quote_item(table: str, quote_id: str) -> dict:
    [item] = [i for i in scan(table) if i["PK"] == keys.quote_pk(quote_id)]
    return item


# -- quotes ---------------------------------------------------------------------------------------
def test_a_quote_prices_the_amount_and_is_valid_for_sixty_seconds(api_client, people, table):
    before = datetime.now(UTC)
    response, body = quote(api_client, people["tokens"]["alice"])

    assert response.status_code == 201, body
    q = body["quote"]
    assert q["id"].startswith("fxq_")
    assert (q["from_currency"], q["to_currency"]) == ("USD", "BTC")
    assert (q["from_amount"], q["to_amount"], q["rate"]) == ("50.00", "0.00052350", "0.00001047")
    expires = datetime.fromisoformat(q["expires_at"].replace("Z", "+00:00"))
    assert q["expires_at"].endswith("Z")
    assert timedelta(seconds=60) <= expires - before <= timedelta(seconds=62)
    item = quote_item(table, q["id"])
    assert (item["SK"], item["item_type"]) == (keys.QUOTE_SK, "fx_quote")
    assert item["user_id"] == people["alice"].id
    assert item["used"] is False
    # The table's TTL attribute: whole epoch seconds, the same instant as the API's expires_at.
    assert item["expires_at"] == Decimal(epoch_seconds(expires))
    assert (item["from_amount"], item["to_amount"], item["rate"]) == (5000, 52350, "0.00001047")


def test_a_quote_moves_and_holds_no_money(api_client, people, table):
    quoted(api_client, people["tokens"]["alice"], from_amount="100.00")
    quoted(api_client, people["tokens"]["alice"], from_amount="100.00")

    account = get_ledger_service().repository.get_account(wallet(people["alice"].id, "USD"))
    assert (account.posted, account.available) == (100_00, 100_00)
    kinds = [i["type"] for i in scan(table) if i["item_type"] == "transaction"]
    assert kinds == ["deposit"]


def test_a_quote_needs_no_idempotency_key_but_needs_a_login(api_client, people):
    response = api_client.http.post(
        "/v1/fx/quotes",
        body=json.dumps({"from_currency": "USD", "to_currency": "BTC", "from_amount": "1.00"}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from_currency": "USD", "to_currency": "USD", "from_amount": "1.00"}, 400,
         "invalid_request"),
        ({"from_currency": "USD", "to_currency": "DOGE", "from_amount": "1.00"}, 400,
         "unsupported_currency"),
        ({"from_currency": "usd", "to_currency": "BTC", "from_amount": "1.00"}, 400,
         "unsupported_currency"),
        ({"from_currency": "USD", "to_currency": "BTC", "from_amount": 1.0}, 400,
         "invalid_amount"),
        ({"from_currency": "USD", "to_currency": "BTC", "from_amount": "0.00"}, 400,
         "invalid_amount"),
        ({"from_currency": "USD", "to_currency": "BTC", "from_amount": "1.001"}, 400,
         "invalid_amount"),
        # 1 wei of ETH is worth less than a cent: the quote would buy nothing.
        ({"from_currency": "ETH", "to_currency": "USD", "from_amount": "0.000000000000000001"},
         400, "invalid_amount"),
        ({"from_currency": "USD", "to_currency": "BTC"}, 400, "invalid_request"),
        ({"from_currency": "USD", "to_currency": "BTC", "from_amount": "1", "x": 1}, 400,
         "invalid_request"),
    ],
)  # fmt: skip
def test_a_bad_quote_request_is_refused_and_stores_nothing(
    api_client, people, table, body, status, code
):
    response, answer = post(api_client, "/v1/fx/quotes", people["tokens"]["alice"], body)

    assert response.status_code == status, answer
    assert answer["error"]["code"] == code
    assert [i for i in scan(table) if i["item_type"] == "fx_quote"] == []


def use_settings(monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    dependencies.reset()


def test_a_pair_with_only_its_inverse_configured_has_no_rate(api_client, people, monkeypatch):
    use_settings(monkeypatch, FX_RATES='{"BTC/USD": "95000.00"}')

    response, answer = quote(api_client, people["tokens"]["alice"])
    assert response.status_code == 422
    assert answer["error"]["code"] == "rate_unavailable"
    response, answer = quote(
        api_client, people["tokens"]["alice"], "BTC", "USD", from_amount="0.001"
    )
    assert response.status_code == 201, answer
    assert (answer["quote"]["rate"], answer["quote"]["to_amount"]) == ("95000.00", "95.00")


def test_a_deployed_stage_without_fx_rates_refuses_quotes(api_client, people, monkeypatch):
    from chalicelib.config import LOCAL_JWT_KID, LOCAL_JWT_SECRET

    # The tokens were signed with the local key; the stage keeps accepting them.
    use_settings(
        monkeypatch, STAGE="prod", JWT_SIGNING_KEYS=json.dumps({LOCAL_JWT_KID: LOCAL_JWT_SECRET})
    )
    monkeypatch.delenv("FX_RATES", raising=False)

    response, answer = quote(api_client, people["tokens"]["alice"])

    assert response.status_code == 422, answer
    assert answer["error"]["code"] == "rate_unavailable"


# -- swaps: the worked story ----------------------------------------------------------------------
def test_a_round_trip_through_btc_keeps_the_spread_in_the_fx_pools(api_client, people, table):
    alice, token = people["alice"], people["tokens"]["alice"]

    # 1. 50.00 USD -> 0.00052350 BTC at 0.00001047.
    to_btc = quoted(api_client, token, from_amount="50.00")
    response, body = swap(api_client, token, to_btc, key="story-1")
    assert response.status_code == 201, body
    txn = body["transaction"]
    assert (txn["type"], txn["status"]) == ("swap", "posted")
    assert txn["metadata"]["quote_id"] == to_btc
    assert txn["metadata"]["rate"] == "0.00001047"
    by_account = {(p["account_id"], p["currency"]): p["amount"] for p in txn["postings"]}
    assert by_account[(wallet(alice.id, "USD"), "USD")] == "-50.00"
    assert by_account[(wallet(alice.id, "BTC"), "BTC")] == "0.00052350"
    assert sorted(p["amount"] for p in txn["postings"] if p["account_id"].startswith("plat_")) == [
        "-0.00052350",
        "50.00",
    ]
    assert (posted(alice.id, "USD"), posted(alice.id, "BTC")) == (50_00, 52350)
    assert (pool("USD"), pool("BTC")) == (50_00, -52350)
    assert quote_item(table, to_btc)["used"] is True
    assert quote_item(table, to_btc)["transaction_id"] == txn["id"]

    # 2. All of it back: 0.00052350 BTC * 94525.00 = 49.4838375 USD, floored to 49.48.
    to_usd = quoted(
        api_client, token, from_currency="BTC", to_currency="USD", from_amount="0.0005235"
    )
    response, body = swap(api_client, token, to_usd, key="story-2")
    assert response.status_code == 201, body
    assert (posted(alice.id, "USD"), posted(alice.id, "BTC")) == (99_48, 0)
    # The platform kept the spread (0.52 USD) and is flat in BTC.
    assert (pool("USD"), pool("BTC")) == (52, 0)

    # 3. Alice's history shows both swaps.
    response = api_client.http.get("/v1/transactions", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [t["type"] for t in json.loads(response.body)["data"]][:2] == ["swap", "swap"]
    people["world"].check_guarantees()


def test_a_replayed_swap_answers_the_same_and_moves_nothing_again(api_client, people, table):
    token = people["tokens"]["alice"]
    quote_id = quoted(api_client, token)

    first, first_body = swap(api_client, token, quote_id, key="same")
    again, again_body = swap(api_client, token, quote_id, key="same")

    assert first.status_code == again.status_code == 201
    assert again_body == first_body
    assert len(swap_transactions(table)) == 1
    assert posted(people["alice"].id, "USD") == 50_00
    people["world"].check_guarantees()


def test_a_used_quote_cannot_be_swapped_again_with_another_key(api_client, people, table):
    token = people["tokens"]["alice"]
    quote_id = quoted(api_client, token)
    assert swap(api_client, token, quote_id, key="one")[0].status_code == 201

    response, body = swap(api_client, token, quote_id, key="two")

    assert response.status_code == 409
    assert body["error"]["code"] == "quote_used"
    assert len(swap_transactions(table)) == 1
    assert posted(people["alice"].id, "USD") == 50_00


def test_the_same_key_with_another_quote_is_refused_as_reused(api_client, people):
    token = people["tokens"]["alice"]
    first, second = quoted(api_client, token), quoted(api_client, token)
    assert swap(api_client, token, first, key="k")[0].status_code == 201

    response, body = swap(api_client, token, second, key="k")

    assert response.status_code == 409
    assert body["error"]["code"] == "idempotency_key_reused"


# -- swaps: refusals ------------------------------------------------------------------------------
def test_a_swap_needs_an_idempotency_key(api_client, people):
    quote_id = quoted(api_client, people["tokens"]["alice"])

    response, body = post(
        api_client, "/v1/fx/swaps", people["tokens"]["alice"], {"quote_id": quote_id}
    )

    assert response.status_code == 400
    assert body["error"]["code"] == "idempotency_key_required"


def test_an_unknown_quote_is_not_found(api_client, people):
    response, body = swap(api_client, people["tokens"]["alice"], "fxq_nope")

    assert response.status_code == 404
    assert body["error"]["code"] == "not_found"


def test_someone_elses_quote_is_not_found_and_stays_usable(api_client, people, table):
    bobs = quoted(api_client, people["tokens"]["bob"])

    response, body = swap(api_client, people["tokens"]["alice"], bobs)

    assert response.status_code == 404
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"] == f"no quote {bobs}"
    assert quote_item(table, bobs)["used"] is False
    assert swap_transactions(table) == []


def test_an_expired_quote_is_gone(api_client, people, table):
    stale = fx_service.create_quote(
        DynamoQuoteRepository(),
        fx_service_rates(),
        user=people["alice"],
        request=fx_service.QuoteRequest("USD", "BTC", "10.00"),
        ttl_seconds=60,
        now=datetime.now(UTC) - timedelta(seconds=61),
    )

    response, body = swap(api_client, people["tokens"]["alice"], stale.id)

    assert response.status_code == 410
    assert body["error"]["code"] == "quote_expired"
    assert swap_transactions(table) == []
    assert posted(people["alice"].id, "USD") == 100_00


def test_a_swap_beyond_the_balance_is_refused_and_leaves_the_quote_unused(
    api_client, people, table
):
    token = people["tokens"]["alice"]
    quote_id = quoted(api_client, token, from_amount="100.01")

    response, body = swap(api_client, token, quote_id)

    assert response.status_code == 422
    assert body["error"]["code"] == "insufficient_funds"
    assert quote_item(table, quote_id)["used"] is False
    assert swap_transactions(table) == []
    people["world"].check_guarantees()


@pytest.mark.parametrize("body", [{}, {"quote_id": ""}, {"quote_id": 7}, {"quote_id": "x" * 65}])
def test_a_malformed_swap_request_is_invalid(api_client, people, body):
    response, answer = post(api_client, "/v1/fx/swaps", people["tokens"]["alice"], body, key="m")

    assert response.status_code == 400
    assert answer["error"]["code"] == "invalid_request"


# -- swaps: the service and the database condition -----------------------------------------------
def fx_service_rates():
    from chalicelib.adapters.rates import rate_source_for

    return rate_source_for(get_settings())


def service_quote(user, amount: str = "10.00", now: datetime | None = None):
    return fx_service.create_quote(
        DynamoQuoteRepository(),
        fx_service_rates(),
        user=user,
        request=fx_service.QuoteRequest("USD", "BTC", amount),
        ttl_seconds=60,
        now=now,
    )


def service_swap(user, quote_id: str, now: datetime | None = None):
    return fx_service.swap(
        get_ledger_service(), DynamoQuoteRepository(), user=user, quote_id=quote_id, now=now
    )


def test_a_quote_is_valid_up_to_its_last_microsecond(people):
    created = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    late = service_quote(people["alice"], now=created)
    in_time = service_quote(people["alice"], now=created)
    expiry = created + timedelta(seconds=60)

    with pytest.raises(QuoteExpired):
        service_swap(people["alice"], late.id, now=expiry)
    txn = service_swap(people["alice"], in_time.id, now=expiry - timedelta(microseconds=1))

    assert txn.type is TransactionType.SWAP
    assert posted(people["alice"].id, "USD") == 90_00


def test_the_database_refuses_to_spend_an_expired_quote_even_if_the_service_did_not_check(
    people, table
):
    """Bypass the service's expiry check: the condition in the write itself refuses."""
    q = service_quote(people["alice"])
    ledger = get_ledger_service()
    txn_id = fx_service.swap_transaction_id(q.id)
    late = DynamoQuoteRepository.mark_used(
        q, transaction_id=txn_id, now_epoch=q.expires_at, used_at="x", error=QuoteExpired("late")
    )

    with pytest.raises(QuoteExpired):
        ledger.record(
            transaction_id=txn_id,
            type=TransactionType.SWAP,
            postings=fx_service._postings(q, people["alice"].id),
            extra=[late],
        )

    assert swap_transactions(table) == []
    assert quote_item(table, q.id)["used"] is False
    people["world"].check_guarantees()


def test_the_database_refuses_to_spend_a_used_quote_twice_even_under_another_id(people, table):
    """Bypass the derived transaction id: a second transaction spending the same quote fails on
    the quote's ``used = false`` condition and writes nothing."""
    q = service_quote(people["alice"])
    service_swap(people["alice"], q.id)
    ledger = get_ledger_service()

    with pytest.raises(QuoteUsed):
        ledger.record(
            transaction_id="txn_another_spend_of_the_same_quote",
            type=TransactionType.SWAP,
            postings=fx_service._postings(q, people["alice"].id),
            extra=[
                DynamoQuoteRepository.mark_used(
                    q,
                    transaction_id="txn_another_spend_of_the_same_quote",
                    now_epoch=epoch_seconds(datetime.now(UTC)),
                    used_at="x",
                    error=QuoteUsed("used"),
                )
            ],
        )

    assert len(swap_transactions(table)) == 1
    assert posted(people["alice"].id, "USD") == 90_00
    people["world"].check_guarantees()


def test_five_racing_swaps_of_one_quote_execute_it_once(people, table):
    """Five swaps of one quote race through the service (the Chalice app object holds
    ``current_request`` globally, so HTTP requests cannot run in parallel in one process):
    exactly one transaction, the other four are told the quote was used."""
    q = service_quote(people["alice"], amount="10.00")
    start = threading.Barrier(5)
    outcomes: list[str] = []

    def race() -> None:
        start.wait()
        try:
            service_swap(people["alice"], q.id)
            outcomes.append("ok")
        except QuoteUsed:
            outcomes.append("quote_used")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=race) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["ok"] + ["quote_used"] * 4
    assert len(swap_transactions(table)) == 1
    assert (posted(people["alice"].id, "USD"), posted(people["alice"].id, "BTC")) == (90_00, 10470)
    assert (pool("USD"), pool("BTC")) == (10_00, -10470)
    people["world"].check_guarantees()


def test_postings_of_a_swap_balance_in_each_currency(people):
    q = service_quote(people["alice"])
    postings = fx_service._postings(q, people["alice"].id)

    for code in ("USD", "BTC"):
        assert sum(p.amount for p in postings if p.currency == code) == 0
    assert all(isinstance(p, PostingRequest) for p in postings)
