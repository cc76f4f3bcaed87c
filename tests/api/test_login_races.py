"""A login reads the profile, checks the password (slow, on purpose), then stores the login: a
password reset or a suspension stored in between must win (docs/auth.md, "Logins"). The login's
write carries a condition on the profile as read; when it fails, the login answers as the
profile now says."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest

from chalicelib.adapters.clock import to_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.adapters.dynamo.models import UserItem
from chalicelib.api.dependencies import get_auth_service
from chalicelib.api.jobs import deliver_waiting_mail
from chalicelib.auth import passwords
from chalicelib.domain.users import AuditEvent, UserStatus
from chalicelib.services import auth as auth_module
from tests.api.test_auth import sent_tokens
from tests.support import scan

PASSWORD = "correct horse battery"
CLOCK = {"now": 1_790_000_000.0}


@pytest.fixture(autouse=True)
def _setup(table):
    passwords.configure_for_tests()
    boto3.client("ses", region_name="us-east-1").verify_email_identity(
        EmailAddress="no-reply@ledger.local"
    )
    CLOCK["now"] = 1_790_000_000.0


@pytest.fixture
def client(api_client):
    service = get_auth_service()
    service.clock = lambda: CLOCK["now"]
    service.sleep = lambda seconds: None
    return api_client


def clock_iso() -> str:
    return to_iso(datetime.fromtimestamp(CLOCK["now"], UTC))


def post(client, path, body, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = client.http.post(path, body=json.dumps(body).encode(), headers=headers)
    return response, (json.loads(response.body) if response.body else None)


def get(client, path, token):
    response = client.http.get(path, headers={"authorization": f"Bearer {token}"})
    return response, json.loads(response.body)


def log_in(client):
    return post(client, "/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD})


def sign_up_and_log_in(client) -> str:
    response, body = post(
        client,
        "/v1/auth/signup",
        {"email": "alice@example.com", "password": PASSWORD, "accept_terms": True},
    )
    assert response.status_code == 201, body
    deliver_waiting_mail()
    assert log_in(client)[0].status_code == 200
    return body["user"]["id"]


def while_the_password_is_checked(monkeypatch, action) -> None:
    """Run ``action`` once, between the login's read of the profile and its write (while the
    login checks the password it read)."""
    real = passwords.verify_password
    done = []

    def verify(stored_hash, password):
        ok = real(stored_hash, password)
        if not done:
            done.append(1)
            action()
            CLOCK["now"] += 0.05  # the login's write is later than the action's
        return ok

    monkeypatch.setattr(auth_module.passwords, "verify_password", verify)


def suspend(repo: DynamoAuthRepository, user_id: str) -> None:
    event = AuditEvent.new(
        "admin.user.suspend",
        at=clock_iso(),
        actor_id="usr_admin",
        target=user_id,
        ip=None,
        reason="fraud",
    )
    repo.set_status(repo.get_user(user_id), UserStatus.SUSPENDED, event)


def unsuspend(repo: DynamoAuthRepository, user_id: str) -> None:
    event = AuditEvent.new(
        "admin.user.unsuspend", at=clock_iso(), actor_id="usr_admin", target=user_id, ip=None
    )
    repo.set_status(repo.get_user(user_id), UserStatus.ACTIVE, event)


def stored_logins(table: str) -> int:
    return sum(1 for i in scan(table) if i["SK"].startswith("SESSION#"))


def test_a_login_with_the_old_password_racing_a_reset_is_refused(client, table, monkeypatch):
    sign_up_and_log_in(client)
    post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    (token,) = sent_tokens()
    CLOCK["now"] += 1
    logins = stored_logins(table)

    def reset():
        get_auth_service().reset_password(token, "a brand new passphrase", None)

    while_the_password_is_checked(monkeypatch, reset)
    response, body = log_in(client)
    monkeypatch.undo()
    assert (response.status_code, body["error"]["code"]) == (401, "invalid_credentials")
    assert stored_logins(table) == logins  # nothing was written by the refused login
    new = {"email": "alice@example.com", "password": "a brand new passphrase"}
    assert post(client, "/v1/auth/login", new)[0].status_code == 200


def test_a_login_racing_a_suspension_is_refused_and_does_not_come_back(client, table, monkeypatch):
    user_id = sign_up_and_log_in(client)
    repo = DynamoAuthRepository()
    CLOCK["now"] += 1
    logins = stored_logins(table)

    while_the_password_is_checked(monkeypatch, lambda: suspend(repo, user_id))
    response, body = log_in(client)
    monkeypatch.undo()
    assert (response.status_code, body["error"]["code"]) == (403, "account_suspended")
    assert stored_logins(table) == logins
    refused = [i for i in scan(table) if i.get("action") == "auth.login_refused"]
    assert len(refused) == 1
    assert repo.get_user(user_id).status is UserStatus.SUSPENDED


def test_a_login_racing_a_suspension_and_unsuspension_is_stored_after_them(
    client, table, monkeypatch
):
    user_id = sign_up_and_log_in(client)
    repo = DynamoAuthRepository()
    CLOCK["now"] += 1

    def suspend_and_unsuspend():
        suspend(repo, user_id)
        unsuspend(repo, user_id)

    while_the_password_is_checked(monkeypatch, suspend_and_unsuspend)
    response, pair = log_in(client)
    monkeypatch.undo()
    assert response.status_code == 200, pair  # decided again on the profile as it is now
    response, _ = get(client, "/v1/me", pair["access_token"])
    assert response.status_code == 200  # its login counts from after the suspension


def test_a_login_without_a_code_racing_mfa_being_turned_on_needs_a_code(client, monkeypatch):
    user_id = sign_up_and_log_in(client)
    repo = DynamoAuthRepository()
    CLOCK["now"] += 1

    def mfa_on():
        UserItem(keys.user_pk(user_id), keys.PROFILE_SK).update(
            actions=[UserItem.mfa_enabled.set(True), UserItem.totp_secret.set("A" * 32)]
        )

    while_the_password_is_checked(monkeypatch, mfa_on)
    response, body = log_in(client)
    monkeypatch.undo()
    assert (response.status_code, body["error"]["code"]) == (401, "mfa_required")
    assert repo.get_user(user_id).mfa_enabled


def test_parallel_logins_from_two_new_devices_keep_both_devices(client, table, monkeypatch):
    user_id = sign_up_and_log_in(client)
    CLOCK["now"] += 60
    chrome = "Mozilla/5.0 (Macintosh) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0"
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

    def login_from(agent: str):
        body = {"email": "alice@example.com", "password": PASSWORD}
        headers = {"content-type": "application/json", "user-agent": agent}
        return client.http.post("/v1/auth/login", body=json.dumps(body).encode(), headers=headers)

    def firefox_login():
        get_auth_service().login("alice@example.com", PASSWORD, None, None, firefox)

    # The Chrome login reads the profile; the Firefox one is stored meanwhile.
    while_the_password_is_checked(monkeypatch, firefox_login)
    assert login_from(chrome).status_code == 200
    monkeypatch.undo()
    stored = UserItem.get(keys.user_pk(user_id), keys.PROFILE_SK, consistent_read=True)
    devices = [k for k in stored.known_devices.as_dict() if k.startswith("ua_")]
    assert len(devices) == 3  # the sign-up's (no header), Firefox and Chrome
    # Neither is new again: each was kept by the other's write.
    before = [i for i in scan(table) if i.get("action") == "auth.new_sign_in"]
    assert login_from(chrome).status_code == 200
    assert login_from(firefox).status_code == 200
    after = [i for i in scan(table) if i.get("action") == "auth.new_sign_in"]
    assert len(after) == len(before) == 2


def test_turning_mfa_off_racing_a_reset_does_not_bring_the_login_back(client, table, monkeypatch):
    import pyotp

    service = get_auth_service()
    user, secret = service.create_admin("alice@example.com", PASSWORD)
    code = pyotp.TOTP(secret)
    body = {"email": "alice@example.com", "password": PASSWORD, "totp_code": code.at(CLOCK["now"])}
    response, pair = post(client, "/v1/auth/login", body)
    assert response.status_code == 200, pair
    post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    (token,) = sent_tokens()
    CLOCK["now"] += 60

    def reset():
        service.reset_password(token, "a brand new passphrase", None)

    # The step-up checks the password the principal was read with; the reset lands meanwhile.
    while_the_password_is_checked(monkeypatch, reset)
    disable = {"password": PASSWORD, "code": code.at(CLOCK["now"])}
    response, answer = post(client, "/v1/auth/mfa/totp/disable", disable, pair["access_token"])
    monkeypatch.undo()
    assert (response.status_code, answer["error"]["code"]) == (401, "unauthenticated")
    assert DynamoAuthRepository().get_user(user.id).mfa_enabled  # nothing written
    response, _ = get(client, "/v1/me", pair["access_token"])
    assert response.status_code == 401  # the reset ended this login, and it stays ended


def conflicting(monkeypatch, times: int) -> list[float]:
    """The next ``times`` transactions are cancelled as DynamoDB cancels one that met another
    transaction on the same item (nothing written); returns the back-offs waited."""
    from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

    from chalicelib.adapters.dynamo import transact

    real = transact.AtomicWrite.send
    left = [times]
    waits: list[float] = []

    def send(self):
        if left[0] > 0:
            left[0] -= 1
            reasons = [CancellationReason(code="TransactionConflict")] + [None] * (
                len(self.tags) - 1
            )
            error = VerboseClientError(
                {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}},
                "TransactWriteItems",
                cancellation_reasons=reasons,
            )
            raise TransactWriteError("Failed to write transaction items", error)
        return real(self)

    monkeypatch.setattr(transact.AtomicWrite, "send", send)
    monkeypatch.setattr("time.sleep", waits.append)
    return waits


def test_a_totp_step_that_met_a_concurrent_login_is_written_again(table, monkeypatch):
    from chalicelib.domain.errors import VersionConflict

    user, _ = get_auth_service().create_admin("root@example.com", PASSWORD)
    repo = DynamoAuthRepository()
    step = user.totp_last_step + 5
    waits = conflicting(monkeypatch, 2)
    repo.use_totp_step(user, step)
    assert repo.get_user(user.id).totp_last_step == step
    assert len(waits) == 2
    assert waits[1] > 0.02 >= waits[0] > 0  # random, and longer each time
    conflicting(monkeypatch, 4)
    with pytest.raises(VersionConflict):  # still contended after every retry
        repo.use_totp_step(user, step + 1)
    assert repo.get_user(user.id).totp_last_step == step


def test_a_login_whose_write_keeps_meeting_conflicts_retries_with_growing_back_off(
    client, monkeypatch
):
    sign_up_and_log_in(client)
    waits: list[float] = []
    get_auth_service().sleep = waits.append
    conflicting(monkeypatch, 2)
    response, body = log_in(client)
    assert response.status_code == 200, body
    assert len(waits) == 2
    assert waits[1] > 0.02 >= waits[0] > 0
