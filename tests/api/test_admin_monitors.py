"""Balance monitors over HTTP (docs/risk.md, "Balance monitors"): admin only, validated in the
error envelope, audited; the scheduled check pages once per crossing and once per recovery."""

from __future__ import annotations

import threading
import uuid

import pytest
from chalice.test import Client

from app import app
from chalicelib.api import dependencies
from chalicelib.api.jobs import run_balance_monitors
from chalicelib.domain.accounts import PlatformAccount, PlatformKind
from chalicelib.domain.monitors import DEFAULT_MONITOR_ID
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.services import metrics
from chalicelib.services.ledger import PostingRequest
from tests.api.admin_helpers import operators
from tests.api.helpers import call, wallet
from tests.support import LedgerWorld, scan

CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, "USD")
ADJUSTMENTS = PlatformAccount(PlatformKind.ADJUSTMENTS, "USD")


class Pager:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = False

    def publish(self, subject: str, message: str) -> bool:
        if self.down:
            raise RuntimeError("SNS is down")
        self.sent.append((subject, message))
        return True


@pytest.fixture
def people(table):  # type: ignore[no-untyped-def]
    found = operators()
    found["world"] = LedgerWorld.create(table)
    return found


@pytest.fixture
def pager(monkeypatch) -> Pager:
    sent = Pager()
    monkeypatch.setattr("chalicelib.api.jobs.get_alerts", lambda settings: sent)
    return sent


def move_clearing(world: LedgerWorld, amount: int) -> None:
    """Stripe clearing +amount against the adjustments account (as a refund would raise it)."""
    world.ledger.record(
        transaction_id=derive_transaction_id("test-clearing", uuid.uuid4().hex),
        type=TransactionType.ADJUSTMENT,
        postings=[
            PostingRequest(CLEARING, "USD", amount),
            PostingRequest(ADJUSTMENTS, "USD", -amount),
        ],
    )


def admin(client, method: str, path: str, people, body=None):  # type: ignore[no-untyped-def]
    return call(client, method, path, people["tokens"]["admin"], body)


def audit_actions(table: str) -> list[str]:
    events = [i for i in scan(table) if i["item_type"] == "audit"]
    return [i["action"] for i in sorted(events, key=lambda i: i["SK"])]


def test_an_admin_creates_lists_and_disables_monitors(api_client, people, table):
    alice_usd = wallet(people["alice"].id, "USD")
    response, body = admin(
        api_client,
        "POST",
        "/v1/admin/monitors",
        people,
        {"account_id": alice_usd, "condition": "below", "amount": "10.00", "name": "alice low"},
    )
    assert response.status_code == 201, body
    first = body["monitor"]
    assert {k: first[k] for k in ("account_id", "platform", "currency", "condition")} == {
        "account_id": alice_usd,
        "platform": None,
        "currency": "USD",
        "condition": "below",
    }
    assert (first["amount"], first["state"], first["enabled"], first["name"]) == (
        "10.00",
        "ok",
        True,
        "alice low",
    )
    assert first["created_at"].endswith("Z")
    assert first["created_by"] == people["admin"].id
    response, body = admin(
        api_client,
        "POST",
        "/v1/admin/monitors",
        people,
        {"platform": "crypto_custody", "currency": "BTC", "condition": "above", "amount": "-0.5"},
    )
    assert response.status_code == 201, body
    second = body["monitor"]
    assert (second["platform"], second["amount"]) == ("crypto_custody", "-0.50000000")

    response, page = admin(api_client, "GET", "/v1/admin/monitors?limit=1", people)
    assert response.status_code == 200
    assert [m["id"] for m in page["data"]] == [first["id"]]
    cursor = page["next_cursor"]
    _, rest = admin(api_client, "GET", f"/v1/admin/monitors?limit=1&cursor={cursor}", people)
    assert ([m["id"] for m in rest["data"]], rest["next_cursor"]) == ([second["id"]], None)

    response, body = admin(api_client, "POST", f"/v1/admin/monitors/{first['id']}/disable", people)
    assert response.status_code == 200
    assert body["monitor"]["disabled_at"] is not None
    assert body["monitor"]["enabled"] is False
    response, body = admin(api_client, "POST", "/v1/admin/monitors/mon_nope/disable", people)
    assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    monitor_events = [a for a in audit_actions(table) if a.startswith("monitor.")]
    assert monitor_events == ["monitor.created", "monitor.created", "monitor.disabled"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"condition": "below", "amount": "1"}, 400, "invalid_request"),
        (
            {
                "account_id": "x",
                "platform": "fees",
                "currency": "USD",
                "condition": "below",
                "amount": "1",
            },
            400,
            "invalid_request",
        ),
        (
            {"platform": "fees", "currency": "USD", "condition": "equal", "amount": "1"},
            400,
            "invalid_request",
        ),
        (
            {"platform": "bank", "currency": "USD", "condition": "below", "amount": "1"},
            400,
            "invalid_request",
        ),
        (
            {"platform": "fees", "currency": "EUR", "condition": "below", "amount": "1"},
            400,
            "unsupported_currency",
        ),
        (
            {"platform": "fees", "currency": "USD", "condition": "below", "amount": "1.001"},
            400,
            "invalid_amount",
        ),
        (
            {"platform": "fees", "currency": "USD", "condition": "below", "amount": "abc"},
            400,
            "invalid_amount",
        ),
        (
            {"platform": "fees", "currency": "USD", "condition": "below", "amount": 5},
            400,
            "invalid_amount",
        ),
        ({"platform": "fees", "currency": "USD", "condition": "below"}, 400, "invalid_request"),
        (
            {"platform": "fees", "currency": "USD", "condition": "below", "amount": "1", "x": 1},
            400,
            "invalid_request",
        ),
        (
            {
                "platform": "fees",
                "currency": "USD",
                "condition": "below",
                "amount": "1",
                "name": "",
            },
            400,
            "invalid_request",
        ),
        ({"account_id": "acct_nobody", "condition": "below", "amount": "1"}, 404, "not_found"),
    ],
)
def test_bad_monitors_answer_in_the_envelope_and_write_nothing(
    api_client, people, table, body, status, code
):
    before = scan(table)
    response, answer = admin(api_client, "POST", "/v1/admin/monitors", people, body)
    assert (response.status_code, answer["error"]["code"]) == (status, code), answer
    assert scan(table) == before


def test_bad_list_queries_answer_400(api_client, people):
    for query in ("limit=0", "limit=101", "cursor=garbage"):
        response, body = admin(api_client, "GET", f"/v1/admin/monitors?{query}", people)
        assert (response.status_code, body["error"]["code"]) == (400, "invalid_request"), query


def test_monitor_routes_are_admin_only(api_client, people):
    body = {"platform": "fees", "currency": "USD", "condition": "below", "amount": "1"}
    for who in ("alice", "weak_admin"):
        token = people["tokens"][who]
        for method, path, payload in (
            ("POST", "/v1/admin/monitors", body),
            ("GET", "/v1/admin/monitors", None),
            ("POST", "/v1/admin/monitors/mon_x/disable", None),
        ):
            response, answer = call(api_client, method, path, token, payload)
            assert (response.status_code, answer["error"]["code"]) == (403, "forbidden"), who
    response, answer = call(api_client, "GET", "/v1/admin/monitors", "not-a-token")
    assert response.status_code == 401


def test_the_check_pages_once_per_crossing_and_once_per_recovery(
    api_client, people, table, pager, capsys
):
    world = people["world"]
    world.fund(wallet(people["alice"].id, "USD"), 500_00)  # clearing -500.00: normal
    run_balance_monitors()
    _, page = admin(api_client, "GET", "/v1/admin/monitors", people)
    [default] = page["data"]
    assert default["id"] == DEFAULT_MONITOR_ID
    assert (default["platform"], default["currency"], default["condition"], default["amount"]) == (
        "stripe_clearing",
        "USD",
        "above",
        "0.00",
    )
    assert default["created_by"] is None
    assert pager.sent == []

    move_clearing(world, 600_00)  # clearing +100.00: the ledger owes Stripe
    capsys.readouterr()
    assert run_balance_monitors().crossed == [DEFAULT_MONITOR_ID]
    assert run_balance_monitors().crossed == []  # still crossed: no second page
    assert len(pager.sent) == 1
    subject, message = pager.sent[0]
    assert subject.startswith("Ledger monitor crossed: Stripe clearing")
    assert "100.00 USD" in message
    _, page = admin(api_client, "GET", "/v1/admin/monitors", people)
    assert page["data"][0]["state"] == "crossed"
    emitted = capsys.readouterr().out
    assert emitted.count(metrics.BALANCE_MONITOR_CROSSED) == 2  # the metric name and its value line
    move_clearing(world, -150_00)  # back to -50.00
    assert run_balance_monitors().recovered == [DEFAULT_MONITOR_ID]
    run_balance_monitors()
    assert [s.split(":")[0] for s, _ in pager.sent] == [
        "Ledger monitor crossed",
        "Ledger monitor recovered",
    ]
    assert metrics.BALANCE_MONITOR_RECOVERED in capsys.readouterr().out
    assert [a for a in audit_actions(table) if a.startswith("monitor.")] == [
        "monitor.created",
        "monitor.crossed",
        "monitor.recovered",
    ]


def test_two_concurrent_checks_page_once(api_client, people, table, pager, monkeypatch):
    world = people["world"]
    run_balance_monitors()  # creates the out-of-the-box monitor
    move_clearing(world, 1_00)
    from chalicelib.services import monitors

    both_read = threading.Barrier(2)
    real = monitors.LedgerBalances.platform_balance

    def racing(self, platform):  # type: ignore[no-untyped-def]
        both_read.wait()
        return real(self, platform)

    monkeypatch.setattr(monitors.LedgerBalances, "platform_balance", racing)
    reports: list = []
    runs = [
        threading.Thread(target=lambda: reports.append(run_balance_monitors())) for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sorted(len(r.crossed) for r in reports) == [0, 1]
    assert len(pager.sent) == 1
    assert audit_actions(table).count("monitor.crossed") == 1


def test_the_scheduled_function_runs_the_check(api_client, people, pager):
    move_clearing(people["world"], 1_00)
    dependencies.reset()
    with Client(app, stage_name="test") as client:
        result = client.lambda_.invoke(
            "balance_monitors",
            client.events.generate_cw_event("Scheduled Event", "aws.events", {}, []),
        )
    assert result.payload == {
        "outcomes": {"crossed": 1},
        "crossed": [DEFAULT_MONITOR_ID],
        "recovered": [],
    }
    assert len(pager.sent) == 1


def test_an_unknown_currency_with_an_account_is_unsupported_currency(api_client, people, table):
    account = wallet(people["alice"].id, "USD")
    before = scan(table)
    for currency in ("XYZ", "usd1"):
        body = {"account_id": account, "currency": currency, "condition": "below", "amount": "1"}
        response, answer = admin(api_client, "POST", "/v1/admin/monitors", people, body)
        assert (response.status_code, answer["error"]["code"]) == (400, "unsupported_currency")
    body = {"account_id": account, "currency": "BTC", "condition": "below", "amount": "1"}
    response, answer = admin(api_client, "POST", "/v1/admin/monitors", people, body)
    assert (response.status_code, answer["error"]["code"]) == (400, "invalid_request")
    assert scan(table) == before


def test_a_page_the_topic_refused_is_sent_by_the_next_run(api_client, people, table, pager):
    from chalicelib.services.monitors import AlertNotSent

    world = people["world"]
    world.fund(wallet(people["alice"].id, "USD"), 500_00)
    run_balance_monitors()
    move_clearing(world, 600_00)
    pager.down = True
    with pytest.raises(AlertNotSent):
        run_balance_monitors()
    [stored] = [i for i in scan(table) if i["item_type"] == "balance_monitor"]
    assert (stored["state"], stored["alert_pending"]) == ("crossed", True)
    pager.down = False
    run_balance_monitors()
    run_balance_monitors()
    assert [s.split(":")[0] for s, _ in pager.sent] == ["Ledger monitor crossed"]
    assert "100.00 USD" in pager.sent[0][1]
    [stored] = [i for i in scan(table) if i["item_type"] == "balance_monitor"]
    assert "alert_pending" not in stored
