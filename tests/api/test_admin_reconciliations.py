"""``/v1/admin/reconciliations`` over HTTP: run a day, read its report, the date rules, access,
the audit event, and the scheduled function for the previous UTC day."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import AccountItem, AuditItem
from chalicelib.adapters.stripe_gateway import BalanceTransaction
from chalicelib.api import reconciliations as recon_api
from chalicelib.api.dependencies import get_auth_service
from chalicelib.auth import passwords
from tests.api.helpers import call, wallet
from tests.stripe_fake import FakeStripe
from tests.support import LedgerWorld, verified

PASSWORD = "correct horse battery"
DAY = "2026-01-10"


@pytest.fixture
def stripe_fake(monkeypatch) -> FakeStripe:
    fake = FakeStripe()
    monkeypatch.setattr(recon_api, "get_payment_gateway", lambda: fake)
    return fake


@pytest.fixture
def people(table, api_client, stripe_fake):
    passwords.configure_for_tests()
    auth = get_auth_service()
    alice = verified(auth.sign_up("alice@example.com", PASSWORD, True, None))
    _, secret = auth.create_admin("admin@example.com", PASSWORD)
    world = LedgerWorld.create(table)
    ticks = itertools.count()
    world.ledger.clock = lambda: f"{DAY}T12:00:{next(ticks):02d}.000000Z"
    usd = wallet(alice.id, "USD")
    world.fund(usd, 10_000)
    tokens = {
        "alice": auth.login("alice@example.com", PASSWORD, None, None).access_token,
        "admin": auth.login(
            "admin@example.com", PASSWORD, pyotp.TOTP(secret).now(), None
        ).access_token,
    }
    return {"alice": alice, "usd": usd, "tokens": tokens, "world": world}


def test_an_admin_runs_a_day_and_reads_its_report(api_client, people):
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY})
    assert response.status_code == 201, body
    report = body["report"]
    assert report == {
        "date": DAY,
        "status": "ok",
        "transactions_checked": 1,
        "accounts_checked": 2,
        "trial_balance": {"USD": "0.00"},
        "mismatches": [],
        "stripe": {"matched": 0, "unmatched_ledger": [], "unmatched_stripe": []},
    }
    response, body = call(api_client, "GET", f"/v1/admin/reconciliations/{DAY}", admin)
    assert (response.status_code, body) == (200, {"report": report})

    response, again = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY})
    assert (response.status_code, again["report"]) == (201, report)

    audits = [a for a in AuditItem.scan() if a.action == "reconciliation.run"]
    assert len(audits) == 2
    assert {(a.target, a.details.as_dict()["status"]) for a in audits} == {(DAY, "started")}


def test_a_corrupted_balance_is_reported_over_http(api_client, people):
    item = AccountItem.get(keys.account_pk(people["usd"]), keys.ACCOUNT_SK)
    item.update(actions=[AccountItem.posted.set(10_001)])
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY})
    assert response.status_code == 201
    report = body["report"]
    assert report["status"] == "mismatch"
    assert {
        "check": "account_balance",
        "account_id": people["usd"],
        "detail": "posted is 10001, its entries give 10000 at seq 1",
        "expected": "10000",
        "actual": "10001",
    } in report["mismatches"]


def test_without_a_date_it_runs_yesterday(api_client, people):
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {})
    assert (response.status_code, body["report"]["date"]) == (201, yesterday)
    response, _ = call(api_client, "GET", f"/v1/admin/reconciliations/{yesterday}", admin)
    assert response.status_code == 200


def test_today_runs_as_a_partial_day(api_client, people):
    today = datetime.now(UTC).date().isoformat()
    people["world"].ledger.clock = lambda: f"{today}T00:00:01.000000Z"
    people["world"].fund(people["usd"], 500)
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": today})
    assert response.status_code == 201, body
    report = body["report"]
    assert (report["date"], report["status"], report["transactions_checked"]) == (today, "ok", 2)


def test_a_day_that_never_ran_is_not_found(api_client, people):
    admin = people["tokens"]["admin"]
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    for day in ("2025-12-31", datetime.now(UTC).date().isoformat(), tomorrow):
        response, body = call(api_client, "GET", f"/v1/admin/reconciliations/{day}", admin)
        assert (response.status_code, body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "date",
    [
        "2026-02-30",
        "10/01/2026",
        "2026-1-10",
        20260110,
        "today",
        (datetime.now(UTC).date() + timedelta(days=1)).isoformat(),
    ],
)
def test_a_bad_or_future_date_is_refused_and_nothing_is_written(api_client, people, date):
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": date})
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")
    assert not [i for i in AuditItem.scan() if i.action == "reconciliation.run"]


def test_a_bad_date_in_the_path_is_refused(api_client, people):
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "GET", "/v1/admin/reconciliations/yesterday", admin)
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")


def test_unknown_fields_are_refused(api_client, people):
    admin = people["tokens"]["admin"]
    response, body = call(
        api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY, "fix": True}
    )
    assert (response.status_code, body["error"]["code"]) == (400, "invalid_request")


def test_only_an_admin_may_run_or_read(api_client, people):
    alice = people["tokens"]["alice"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", alice, {"date": DAY})
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")
    response, body = call(api_client, "GET", f"/v1/admin/reconciliations/{DAY}", alice)
    assert (response.status_code, body["error"]["code"]) == (403, "forbidden")
    response = api_client.http.post("/v1/admin/reconciliations", body=b"{}")
    assert response.status_code == 401


def test_the_stripe_side_is_matched_over_http(api_client, people, stripe_fake):
    created = int(datetime.fromisoformat(f"{DAY}T09:00:00+00:00").timestamp())
    stripe_fake.items.append(
        BalanceTransaction(
            id="txn_1",
            type="charge",
            amount=1234,
            currency="USD",
            created=created,
            source_id="ch_1",
            payment_intent_id="pi_unknown",
        )
    )
    admin = people["tokens"]["admin"]
    _, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY})
    stripe = body["report"]["stripe"]
    assert [s["id"] for s in stripe["unmatched_stripe"]] == ["txn_1"]
    assert body["report"]["status"] == "mismatch"


def test_the_schedule_reconciles_the_previous_utc_day(api_client, people, monkeypatch, capsys):
    from app import app

    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    handler = app.event_sources  # the 02:00 UTC cron is registered on the app
    [schedule] = [s for s in handler if s.name == "nightly_reconciliation"]
    assert schedule.schedule_expression.to_string() == "cron(0 2 * * ? *)"
    capsys.readouterr()
    result = recon_api.nightly_reconciliation.func({})
    assert (result["date"], result["status"]) == (yesterday, "ok")
    # the metric the "reconciliation did not report for 26 h" alarm counts (infra/operations.json)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    reported = [m for m in lines if "NightlyReconciliationReported" in m]
    assert [m["NightlyReconciliationReported"] for m in reported] == [[1.0]]
    assert reported[0]["date"] == yesterday


# -- runs outside the request ---------------------------------------------------------------------
def _settings(monkeypatch, **env: str) -> None:
    from chalicelib.api import dependencies
    from chalicelib.config import get_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    dependencies.reset()


class HeldStarter:
    """Starts nothing until told: the run stays ``running`` meanwhile."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def start(self, day: str, run_id: str) -> None:
        self.started.append((day, run_id))

    def finish(self) -> None:
        for day, run_id in self.started:
            recon_api.run_started(day, run_id)


def test_a_run_that_outlasts_the_wait_answers_202_and_get_polls_it(api_client, people, monkeypatch):
    _settings(monkeypatch, RECONCILIATION_WAIT_SECONDS="0")
    starter = HeldStarter()
    monkeypatch.setattr(recon_api, "_starter", lambda: starter)
    admin = people["tokens"]["admin"]
    path = "/v1/admin/reconciliations"
    response, body = call(api_client, "POST", path, admin, {"date": DAY})
    assert (response.status_code, body) == (202, {"report": {"date": DAY, "status": "running"}})
    response, body = call(api_client, "GET", f"{path}/{DAY}", admin)
    assert (response.status_code, body["report"]["status"]) == (200, "running")

    again, body = call(api_client, "POST", path, admin, {"date": DAY})  # a second click
    assert (again.status_code, body["report"]["status"]) == (202, "running")
    assert len(starter.started) == 1  # the day is not run twice at once
    statuses = {a.details.as_dict()["status"] for a in AuditItem.scan() if a.target == DAY}
    assert statuses == {"started", "already_running"}

    starter.finish()
    response, body = call(api_client, "GET", f"{path}/{DAY}", admin)
    assert (response.status_code, body["report"]["status"]) == (200, "ok")
    assert body["report"]["transactions_checked"] == 1


def test_the_run_happens_in_another_thread_and_the_post_waits_for_it(
    api_client, people, monkeypatch
):
    import threading

    threads: list[str] = []
    real = recon_api.run_started

    def recording(day: str, run_id: str):
        threads.append(threading.current_thread().name)
        return real(day, run_id)

    monkeypatch.setattr(recon_api, "run_started", recording)
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY})
    assert (response.status_code, body["report"]["status"]) == (201, "ok")
    assert threads == [f"reconciliation-{DAY}"]


def test_a_run_that_cannot_reach_stripe_answers_503(api_client, people, monkeypatch):
    from chalicelib.domain.errors import ProviderUnavailable

    class DownStripe:
        def list_balance_transactions(self, start: int, end: int):
            raise ProviderUnavailable("stripe is down")

    monkeypatch.setattr(recon_api, "get_payment_gateway", lambda: DownStripe())
    admin = people["tokens"]["admin"]
    response, body = call(api_client, "POST", "/v1/admin/reconciliations", admin, {"date": DAY})
    assert (response.status_code, body["error"]["code"]) == (503, "provider_unavailable")
    response, body = call(api_client, "GET", f"/v1/admin/reconciliations/{DAY}", admin)
    assert response.status_code == 404  # nothing was written


def test_a_run_that_died_does_not_block_the_next_one(table, people):
    from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore
    from chalicelib.services import reconciliation as module

    store = DynamoReconciliationStore(table)
    starter = HeldStarter()
    first = module.start(store, DAY, starter, by="admin", now=lambda: "2026-01-11T00:00:00.000000Z")
    assert first is not None
    assert (
        module.start(store, DAY, starter, by="admin", now=lambda: "2026-01-11T00:15:00.000000Z")
        is None
    )
    later = module.start(store, DAY, starter, by="admin", now=lambda: "2026-01-11T00:16:01.000000Z")
    assert later not in (None, first)
