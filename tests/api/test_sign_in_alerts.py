"""Sign-in alerts (docs/risk.md, "Sign-in alerts"): a login from an IP or a device the user has
not used in 90 days is audited and mailed, in the login's own write; the usual login writes and
reads nothing more than before."""

from __future__ import annotations

import json
from collections import Counter

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from chalicelib.adapters.dynamo.models import LedgerItem
from chalicelib.api import auth as auth_routes
from chalicelib.api.dependencies import get_auth_service
from chalicelib.api.jobs import deliver_waiting_mail
from chalicelib.auth import passwords
from chalicelib.services import metrics
from tests.support import scan

PASSWORD = "correct horse battery"
CLOCK = {"now": 1_790_000_000.0}
DAY = 24 * 3600
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = "Mozilla/5.0 (Macintosh) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0"


@pytest.fixture(autouse=True)
def _setup(table: str) -> None:
    passwords.configure_for_tests()
    boto3.client("ses", region_name="us-east-1").verify_email_identity(
        EmailAddress="no-reply@ledger.local"
    )
    CLOCK["now"] = 1_790_000_000.0


@pytest.fixture
def client(api_client, monkeypatch):
    get_auth_service().clock = lambda: CLOCK["now"]
    where = {"ip": "198.51.100.1"}
    monkeypatch.setattr(auth_routes, "source_ip", lambda request: where["ip"])
    api_client.where = where
    return api_client


def post(client, path: str, body: dict, headers: dict | None = None):
    response = client.http.post(
        path,
        body=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    return response, (json.loads(response.body) if response.body else None)


def sign_up(client, email: str = "alice@example.com", agent: str | None = FIREFOX) -> dict:
    response, body = post(
        client,
        "/v1/auth/signup",
        {"email": email, "password": PASSWORD, "accept_terms": True},
        {"user-agent": agent} if agent else {},
    )
    assert response.status_code == 201, body
    deliver_waiting_mail()  # the verification mail, out of the way
    return body["user"]


def log_in(
    client, ip: str = "198.51.100.1", agent: str | None = FIREFOX, email="alice@example.com"
):
    client.where["ip"] = ip
    headers = {"user-agent": agent} if agent else {}
    response, body = post(client, "/v1/auth/login", {"email": email, "password": PASSWORD}, headers)
    assert response.status_code == 200, body
    return body


def notices(table: str) -> list[dict]:
    return [
        i for i in scan(table) if i["item_type"] == "audit" and i["action"] == "auth.new_sign_in"
    ]


def queued(table: str) -> list[dict]:
    return [i for i in scan(table) if i["item_type"] == "outbox"]


def alert_mails(to: str = "alice@example.com") -> list:
    deliver_waiting_mail()
    messages = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    return [
        m
        for m in messages
        if m.subject == "New sign-in to your account" and to in m.destinations["ToAddresses"]
    ]


def test_sign_up_records_its_ip_and_device_so_a_first_login_from_them_is_not_new(client, table):
    sign_up(client)
    profile = next(i for i in scan(table) if i["item_type"] == "user")
    assert sorted(k.split("_")[0] for k in profile["known_devices"]) == ["ip", "ua"]
    assert "198.51.100.1" not in json.dumps(profile, default=str)  # hashes only
    log_in(client)
    assert notices(table) == []
    assert queued(table) == []
    assert alert_mails() == []


def test_a_first_login_from_another_device_or_ip_than_the_sign_ups_is_new(client, table):
    sign_up(client)
    log_in(client, agent=CHROME)
    log_in(client, ip="203.0.113.9", agent=CHROME)
    assert sorted(n["details"]["new"] for n in notices(table)) == ["device", "ip"]
    assert len(alert_mails()) == 2


def test_a_user_of_before_sign_in_alerts_starts_from_their_live_logins(client, table):
    from chalicelib.adapters.dynamo import keys
    from chalicelib.adapters.dynamo.models import UserItem

    user = sign_up(client)
    log_in(client)  # a live login from this IP and Firefox
    profile = UserItem(keys.user_pk(user["id"]), keys.PROFILE_SK)
    profile.update(actions=[UserItem.known_devices.remove()])  # as stored before the feature
    CLOCK["now"] += 60
    log_in(client)  # the same IP and device as the live login: not new
    assert notices(table) == []
    log_in(client, ip="203.0.113.9")  # an IP none of the live logins used: new
    assert [n["details"]["new"] for n in notices(table)] == ["ip"]


def test_a_user_of_before_sign_in_alerts_without_live_logins_starts_silently(client, table):
    from chalicelib.adapters.dynamo import keys
    from chalicelib.adapters.dynamo.models import UserItem

    user = sign_up(client)
    profile = UserItem(keys.user_pk(user["id"]), keys.PROFILE_SK)
    profile.update(actions=[UserItem.known_devices.remove()])
    log_in(client, ip="203.0.113.9", agent=CHROME)  # nothing to compare with: the baseline
    assert notices(table) == []
    stored = UserItem.get(keys.user_pk(user["id"]), keys.PROFILE_SK, consistent_read=True)
    assert len(stored.known_devices.as_dict()) == 2
    log_in(client, ip="203.0.113.9", agent=CHROME)
    assert notices(table) == []


def test_a_login_from_a_new_ip_is_audited_and_mailed_once_in_the_logins_write(client, table):
    sign_up(client)
    log_in(client)
    CLOCK["now"] += 60
    pair = log_in(client, ip="203.0.113.9")

    [notice] = notices(table)
    assert notice["ip"] == "203.0.113.9"
    assert notice["actor_id"] == notice["target"]
    assert notice["details"]["new"] == "ip"
    assert notice["details"]["user_agent"] == FIREFOX
    login = next(
        i
        for i in scan(table)
        if i["item_type"] == "audit"
        and i["action"] == "auth.login"
        and i["details"]["session"] == notice["details"]["session"]
    )
    assert login["ip"] == "203.0.113.9"
    assert login["details"]["user_agent"] == FIREFOX
    [waiting] = queued(table)
    assert (waiting["kind"], waiting["ip"], waiting["user_agent"]) == (
        "new_sign_in",
        "203.0.113.9",
        FIREFOX,
    )
    [mail] = alert_mails()
    assert "When: 2026-" in mail.body
    assert " UTC" in mail.body
    assert "IP address: 203.0.113.9" in mail.body
    assert "Device: Firefox on Linux\n" in mail.body
    assert "If this wasn't you, reset your password" in mail.body
    for secret in (PASSWORD, pair["access_token"], pair["refresh_token"], "token="):
        assert secret not in mail.body
    assert alert_mails() == [mail]  # sent once


def test_the_same_ip_and_device_again_is_not_new_and_writes_nothing_more(client, table):
    sign_up(client)
    log_in(client)
    profile_before = next(i for i in scan(table) if i["item_type"] == "user")
    CLOCK["now"] += 3600
    log_in(client)
    assert notices(table) == []
    assert queued(table) == []
    profile_after = next(i for i in scan(table) if i["item_type"] == "user")
    assert profile_after == profile_before  # within a day, "last seen" is not rewritten


def test_a_new_device_from_a_known_ip_is_new_a_browser_update_is_not(client, table):
    sign_up(client)
    log_in(client)
    CLOCK["now"] += 60
    log_in(client, agent=FIREFOX.replace("128.0", "129.0"))  # the same browser, updated
    assert notices(table) == []
    log_in(client, agent=CHROME)
    [notice] = notices(table)
    assert (notice["details"]["new"], notice["details"]["user_agent"]) == ("device", CHROME)
    log_in(client, ip="203.0.113.10", agent=None)
    assert sorted(n["details"]["new"] for n in notices(table)) == ["device", "ip,device"]
    assert len(alert_mails()) == 2


def test_an_ip_and_device_seen_91_days_ago_alert_again_89_days_ago_do_not(client, table):
    sign_up(client)
    log_in(client)
    CLOCK["now"] += 89 * DAY
    log_in(client)
    assert notices(table) == []
    CLOCK["now"] += 91 * DAY  # last seen 91 days ago (the 89th day's login refreshed it)
    log_in(client)
    [notice] = notices(table)
    assert notice["details"]["new"] == "ip,device"
    assert len(alert_mails()) == 1


def test_the_alert_mail_is_counted_as_a_metric(client, table, capsys):
    sign_up(client)
    log_in(client)
    log_in(client, ip="203.0.113.9")
    capsys.readouterr()
    assert len(alert_mails()) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    sent = [line for line in lines if metrics.SIGN_IN_ALERTS_SENT in line]
    assert len(sent) == 1
    assert sent[0][metrics.SIGN_IN_ALERTS_SENT] == [1.0]
    assert sent[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ledger"


def login_calls(client, **where) -> Counter:
    calls: Counter = Counter()
    events = LedgerItem._get_connection().connection.client.meta.events
    handler = events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    try:
        log_in(client, **where)
    finally:
        events.unregister("before-call.dynamodb", handler)
    return calls


def test_sign_in_alerts_add_no_round_trip_to_a_login(client, table):
    """8 sequential DynamoDB calls for a login without MFA, as before sign-in alerts (bench/
    api_round_trips.py): the known devices come with the profile the login reads anyway, and
    the alert, its mail and the devices go into the login's one TransactWriteItems."""
    before = {"UpdateItem": 2, "GetItem": 3, "PutItem": 1, "DeleteItem": 1, "TransactWriteItems": 1}
    sign_up(client)
    assert login_calls(client) == before  # the first: the baseline devices are written
    CLOCK["now"] += 60
    assert login_calls(client) == before  # a known IP and device
    assert login_calls(client, ip="203.0.113.9") == before  # a new IP: audit, mail, devices
    assert len(notices(table)) == 1


def test_a_totp_login_from_a_new_device_is_alerted_too(client, table):
    import pyotp

    _, secret = get_auth_service().create_admin("root@example.com", PASSWORD)
    code = pyotp.TOTP(secret)
    client.where["ip"] = "198.51.100.1"
    body = {"email": "root@example.com", "password": PASSWORD, "totp_code": code.at(CLOCK["now"])}
    assert post(client, "/v1/auth/login", body)[0].status_code == 200  # the baseline
    CLOCK["now"] += 60
    body["totp_code"] = code.at(CLOCK["now"])
    headers = {"user-agent": CHROME}
    assert post(client, "/v1/auth/login", body, headers)[0].status_code == 200
    [notice] = notices(table)
    assert notice["details"]["new"] == "device"
    assert len(alert_mails("root@example.com")) == 1


def test_the_alert_mail_names_the_device_briefly_never_the_raw_header(client, table):
    sign_up(client)
    hostile = "Evil\u202e/1.0 " + "click https://evil.example/reset " * 10
    log_in(client, agent=hostile)
    log_in(client, agent=CHROME)
    devices = sorted(
        line for mail in alert_mails() for line in mail.body.splitlines() if "Device: " in line
    )
    assert devices[0] == "Device: Chrome on macOS"
    assert devices[1].startswith("Device: Evil /1.0 click https://evil.example/reset")
    assert "\u202e" not in devices[1]
    assert len(devices[1]) <= len("Device: ") + 80
    assert devices[1].endswith("...")
    notice = next(
        n
        for n in notices(table)
        if n["details"]["new"] == "device" and "Evil" in n["details"]["user_agent"]
    )
    # the audit event keeps it as sent (the first 256 characters, like the login's item)
    assert notice["details"]["user_agent"] == hostile[:256]


def test_a_login_whose_write_met_a_concurrent_profile_write_is_retried_whole(
    client, table, monkeypatch
):
    from chalicelib.domain.errors import VersionConflict

    sign_up(client)
    log_in(client)
    repository = get_auth_service().repository
    real = repository.open_session
    calls = []

    def conflict_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("notice"))
        if len(calls) == 1:
            raise VersionConflict("a concurrent write touched the same items")
        return real(*args, **kwargs)

    monkeypatch.setattr(repository, "open_session", conflict_once)
    waits = []
    monkeypatch.setattr(get_auth_service(), "sleep", waits.append)
    log_in(client, ip="203.0.113.9")
    assert len(calls) == 2  # decided again on the profile re-read, and written once
    assert len(waits) == 1
    assert 0 < waits[0] <= 0.02
    assert len(notices(table)) == 1
    assert len(queued(table)) == 1
