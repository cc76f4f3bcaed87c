"""Auth over HTTP (API.md, "Auth"): every status code of the table, token abuse, throttling,
MFA, password reset, suspension, admin access, audit events, and nothing half-written."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import boto3
import pyotp
import pytest
from chalice import Blueprint
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from app import app
from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository
from chalicelib.api import access
from chalicelib.api.access import admin_only, current_principal
from chalicelib.api.dependencies import get_auth_service
from chalicelib.api.jobs import deliver_waiting_mail
from chalicelib.auth import passwords
from chalicelib.domain.accounts import OwnerType
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.users import Role, UserStatus
from tests.support import scan

PASSWORD = "correct horse battery"
CLOCK = {"now": 1_790_000_000.0}


@pytest.fixture(autouse=True)
def _fast_hashes_and_a_clock(table: str) -> None:
    passwords.configure_for_tests()
    boto3.client("ses", region_name="us-east-1").verify_email_identity(
        EmailAddress="no-reply@ledger.local"
    )
    CLOCK["now"] = 1_790_000_000.0


@pytest.fixture
def client(api_client):
    get_auth_service().clock = lambda: CLOCK["now"]
    return api_client


def post(client, path: str, body: object, token: str | None = None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.http.post(path, body=raw, headers=headers)
    return response, (json.loads(response.body) if response.body else None)


def get(client, path: str, token: str | None = None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = client.http.get(path, headers=headers)
    return response, json.loads(response.body)


def sign_up(client, email: str = "alice@example.com", password: str = PASSWORD) -> dict:
    response, body = post(
        client, "/v1/auth/signup", {"email": email, "password": password, "accept_terms": True}
    )
    assert response.status_code == 201, body
    return body["user"]


def log_in(client, email: str = "alice@example.com", password: str = PASSWORD, code=None):
    payload = {"email": email, "password": password}
    if code is not None:
        payload["totp_code"] = code
    return post(client, "/v1/auth/login", payload)


def tokens_for(client, email: str = "alice@example.com") -> dict:
    response, body = log_in(client, email)
    assert response.status_code == 200, body
    return body


def code_of(body) -> str:
    return body["error"]["code"]


def enable_mfa(client, access_token: str) -> tuple[str, list[str]]:
    _, setup = post(client, "/v1/auth/mfa/totp/setup", {"password": PASSWORD}, access_token)
    code = pyotp.TOTP(setup["secret"]).at(CLOCK["now"])
    response, body = post(client, "/v1/auth/mfa/totp/confirm", {"code": code}, access_token)
    assert response.status_code == 200, body
    CLOCK["now"] += 30  # the confirming code's step is used up
    return setup["secret"], body["recovery_codes"]


# -- sign-up ---------------------------------------------------------------------------------
def test_sign_up_creates_the_user_with_a_wallet_per_currency_and_an_audit_event(client, table):
    user = sign_up(client, "Alice@Example.com")
    assert user["email"] == "Alice@Example.com"
    assert (user["role"], user["mfa_enabled"]) == ("user", False)
    assert user["terms_accepted_at"].endswith("Z")
    wallets = DynamoLedgerRepository().accounts_of_owner(OwnerType.USER, user["id"])
    assert sorted(a.currency for a in wallets) == sorted(CURRENCIES)
    assert all(a.posted == 0 and a.overdraft_forbidden for a in wallets)
    actions = [i["action"] for i in scan(table) if i["item_type"] == "audit"]
    assert actions == ["user.signed_up"]


def test_emails_are_unique_case_insensitively_and_a_refused_sign_up_writes_nothing(client, table):
    sign_up(client, "alice@example.com")
    before = scan(table)
    response, body = post(
        client,
        "/v1/auth/signup",
        {"email": "ALICE@example.COM", "password": PASSWORD, "accept_terms": True},
    )
    assert (response.status_code, code_of(body)) == (409, "email_taken")
    assert scan(table) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"email": "a@example.com", "password": PASSWORD, "accept_terms": False},
            400,
            "terms_not_accepted",
        ),
        ({"email": "a@example.com", "password": PASSWORD}, 400, "terms_not_accepted"),
        (
            {"email": "a@example.com", "password": "short pass1", "accept_terms": True},
            400,
            "weak_password",
        ),
        (
            {"email": "not-an-email", "password": PASSWORD, "accept_terms": True},
            400,
            "invalid_request",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "accept_terms": "yes"},
            400,
            "invalid_request",
        ),
        ({"email": 7, "password": PASSWORD, "accept_terms": True}, 400, "invalid_request"),
        ({"password": PASSWORD, "accept_terms": True}, 400, "invalid_request"),
        (
            {"email": "a@example.com", "password": PASSWORD, "accept_terms": True, "role": "admin"},
            400,
            "invalid_request",
        ),
        (
            {"email": "a" * 250 + "@example.com", "password": PASSWORD, "accept_terms": True},
            400,
            "invalid_request",
        ),
        (
            {"email": "a@example.com", "password": "x" * 1025, "accept_terms": True},
            400,
            "invalid_request",
        ),
        (b"{not json", 400, "invalid_request"),
        (b"[1, 2]", 400, "invalid_request"),
    ],
)
def test_bad_sign_ups_are_refused_in_the_envelope_and_write_nothing(
    client, table, body, status, code
):
    response, answer = post(client, "/v1/auth/signup", body)
    assert (response.status_code, code_of(answer)) == (status, code)
    assert answer["error"]["request_id"]
    assert [i for i in scan(table) if i["item_type"] != "throttle"] == []


def test_field_errors_are_listed(client):
    _, body = post(client, "/v1/auth/signup", {"email": 1, "password": PASSWORD, "x": 1})
    fields = {d["field"] for d in body["error"]["details"]}
    assert {"email", "x"} <= fields


# -- login, refresh, logout -----------------------------------------------------------------------
def test_login_returns_a_bearer_pair_that_opens_me(client):
    sign_up(client)
    pair = tokens_for(client)
    assert (pair["token_type"], pair["expires_in"]) == ("Bearer", 900)
    response, body = get(client, "/v1/me", pair["access_token"])
    assert response.status_code == 200
    assert body["user"]["email"] == "alice@example.com"


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(client):
    sign_up(client)
    wrong, wrong_body = log_in(client, password="not the password!")
    unknown, unknown_body = log_in(client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert code_of(wrong_body) == code_of(unknown_body) == "invalid_credentials"
    assert wrong_body["error"]["message"] == unknown_body["error"]["message"]


def test_a_login_makes_the_same_calls_for_a_known_and_an_unknown_email(client):
    from collections import Counter

    from chalicelib.adapters.dynamo.models import LedgerItem

    sign_up(client)
    calls: Counter = Counter()
    events = LedgerItem._get_connection().connection.client.meta.events
    events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    log_in(client, "alice@example.com", "wrong password here")
    known, calls = dict(calls), calls
    calls.clear()
    log_in(client, "nobody@example.com", "wrong password here")
    assert dict(calls) == known


def test_emails_log_in_case_insensitively(client):
    sign_up(client, "alice@example.com")
    response, _ = log_in(client, email="ALICE@EXAMPLE.COM")
    assert response.status_code == 200


def test_refresh_rotates_and_the_old_token_stops_working(client):
    sign_up(client)
    first = tokens_for(client)
    response, second = post(client, "/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert get(client, "/v1/me", second["access_token"])[0].status_code == 200


def test_a_reused_refresh_token_revokes_the_whole_login(client, table):
    sign_up(client)
    first = tokens_for(client)
    _, second = post(client, "/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    response, body = post(client, "/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")
    response, _ = post(client, "/v1/auth/refresh", {"refresh_token": second["refresh_token"]})
    assert response.status_code == 401  # the thief's rotation died with the family
    other_login = tokens_for(client)  # other logins are not affected
    response, _ = post(client, "/v1/auth/refresh", {"refresh_token": other_login["refresh_token"]})
    assert response.status_code == 200
    actions = [i["action"] for i in scan(table) if i["item_type"] == "audit"]
    assert "auth.refresh_token_reused" in actions


@pytest.mark.parametrize("token", ["", "garbage", "rt_a.b.c", "rt_" + "x" * 600])
def test_malformed_refresh_tokens_are_unauthenticated(client, token):
    response, body = post(client, "/v1/auth/refresh", {"refresh_token": token})
    assert response.status_code in (400, 401)
    assert code_of(body) in ("invalid_request", "unauthenticated")


def test_logout_revokes_the_refresh_token(client, table):
    sign_up(client)
    pair = tokens_for(client)
    response, _ = post(client, "/v1/auth/logout", {"refresh_token": pair["refresh_token"]})
    assert response.status_code == 204
    response, _ = post(client, "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert response.status_code == 401
    # Logging out twice, or with an unknown token, is still 204.
    assert (
        post(client, "/v1/auth/logout", {"refresh_token": pair["refresh_token"]})[0].status_code
        == 204
    )
    assert "auth.logout" in [i["action"] for i in scan(table) if i["item_type"] == "audit"]


def test_access_tokens_of_a_revoked_login_stop_working_at_once(client):
    """Logout and refresh-token reuse end the login; its access tokens (15 minutes) end with it,
    checked on every request in the same read as the user. Other logins keep working."""
    sign_up(client)
    logged_out, reused, other = tokens_for(client), tokens_for(client), tokens_for(client)
    assert get(client, "/v1/me", logged_out["access_token"])[0].status_code == 200
    post(client, "/v1/auth/logout", {"refresh_token": logged_out["refresh_token"]})
    response, body = get(client, "/v1/me", logged_out["access_token"])
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")

    _, rotated = post(client, "/v1/auth/refresh", {"refresh_token": reused["refresh_token"]})
    post(client, "/v1/auth/refresh", {"refresh_token": reused["refresh_token"]})  # reuse
    for token in (reused["access_token"], rotated["access_token"]):
        response, body = get(client, "/v1/me", token)
        assert (response.status_code, code_of(body)) == (401, "unauthenticated")
    transfer = {"amount": "1.00", "currency": "USD", "to_email": "bob@example.com"}
    response, body = post(client, "/v1/transfers", transfer, rotated["access_token"])
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")
    assert get(client, "/v1/me", other["access_token"])[0].status_code == 200


# -- access tokens ---------------------------------------------------------------------------------
def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_missing_expired_forged_and_unsigned_tokens_are_refused(client):
    import jwt

    sign_up(client)
    pair = tokens_for(client)
    header, payload, _ = pair["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = jwt.encode(
        claims,
        "another-key-of-at-least-32-bytes-long!!",
        algorithm="HS256",
        headers={"kid": "local-1"},
    )
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'local-1'})}.{payload}."
    tampered = f"{header}.{_b64({**claims, 'role': 'admin'})}.{pair['access_token'].split('.')[2]}"
    for token in (None, "", "not-a-jwt", forged, unsigned, tampered):
        response, body = get(client, "/v1/me", token)
        assert (response.status_code, code_of(body)) == (401, "unauthenticated"), token
    CLOCK["now"] += 901
    response, body = get(client, "/v1/me", pair["access_token"])
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")


def test_a_suspended_users_existing_token_stops_working(client):
    user = sign_up(client)
    pair = tokens_for(client)
    repository = DynamoAuthRepository()
    stored = repository.get_user(user["id"])
    from chalicelib.adapters.dynamo.models import UserItem

    UserItem.from_domain(stored).update(actions=[UserItem.status.set(UserStatus.SUSPENDED.value)])
    response, body = get(client, "/v1/me", pair["access_token"])
    assert (response.status_code, code_of(body)) == (403, "account_suspended")
    response, body = post(client, "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert (response.status_code, code_of(body)) == (403, "account_suspended")
    response, body = log_in(client)
    assert (response.status_code, code_of(body)) == (403, "account_suspended")


# -- MFA -------------------------------------------------------------------------------------------
def test_mfa_setup_confirm_then_login_needs_a_code_used_once(client, table):
    sign_up(client)
    pair = tokens_for(client)
    setup_path = "/v1/auth/mfa/totp/setup"
    response, body = post(client, setup_path, {}, pair["access_token"])
    assert (response.status_code, code_of(body)) == (400, "invalid_request")
    response, body = post(client, setup_path, {"password": "not it at all"}, pair["access_token"])
    assert (response.status_code, code_of(body)) == (401, "invalid_credentials")
    response, setup = post(client, setup_path, {"password": PASSWORD}, pair["access_token"])
    assert response.status_code == 200
    assert setup["otpauth_uri"].startswith("otpauth://totp/")
    response, body = post(
        client, "/v1/auth/mfa/totp/confirm", {"code": "000000"}, pair["access_token"]
    )
    assert (response.status_code, code_of(body)) == (400, "invalid_totp")

    code = pyotp.TOTP(setup["secret"]).at(CLOCK["now"])
    response, confirmed = post(
        client, "/v1/auth/mfa/totp/confirm", {"code": code}, pair["access_token"]
    )
    assert response.status_code == 200
    assert confirmed["mfa_enabled"] is True
    assert len(set(confirmed["recovery_codes"])) == 10
    assert get(client, "/v1/me", pair["access_token"])[1]["user"]["mfa_enabled"] is True

    CLOCK["now"] += 30
    response, body = log_in(client)
    assert (response.status_code, code_of(body)) == (401, "mfa_required")
    response, body = log_in(client, code="123456" if code != "123456" else "654321")
    assert (response.status_code, code_of(body)) == (401, "invalid_totp")
    code = pyotp.TOTP(setup["secret"]).at(CLOCK["now"])
    response, body = log_in(client, code=code)
    assert response.status_code == 200
    response, body = log_in(client, code=code)  # the same code again: a replay
    assert (response.status_code, code_of(body)) == (401, "invalid_totp")
    actions = [i["action"] for i in scan(table) if i["item_type"] == "audit"]
    assert {"mfa.setup_started", "mfa.enabled"} <= set(actions)


def test_a_recovery_code_works_once(client):
    sign_up(client)
    pair = tokens_for(client)
    _, codes = enable_mfa(client, pair["access_token"])
    response, _ = log_in(client, code=codes[0].upper())
    assert response.status_code == 200
    response, body = log_in(client, code=codes[0])
    assert (response.status_code, code_of(body)) == (401, "invalid_totp")


def test_mfa_cannot_be_set_up_twice(client):
    sign_up(client)
    pair = tokens_for(client)
    enable_mfa(client, pair["access_token"])
    response, body = post(
        client, "/v1/auth/mfa/totp/setup", {"password": PASSWORD}, pair["access_token"]
    )
    assert (response.status_code, code_of(body)) == (409, "invalid_state")


def test_turning_mfa_on_or_off_ends_every_other_login(client):
    sign_up(client)
    mine, other = tokens_for(client), tokens_for(client)
    secret, _ = enable_mfa(client, mine["access_token"])
    assert get(client, "/v1/me", mine["access_token"])[0].status_code == 200
    for token in (other["access_token"],):
        response, body = get(client, "/v1/me", token)
        assert (response.status_code, code_of(body)) == (401, "unauthenticated")
    response, _ = post(client, "/v1/auth/refresh", {"refresh_token": other["refresh_token"]})
    assert response.status_code == 401
    # The login that turned MFA on keeps working, refresh included.
    response, mine = post(client, "/v1/auth/refresh", {"refresh_token": mine["refresh_token"]})
    assert response.status_code == 200

    _, again = log_in(client, code=pyotp.TOTP(secret).at(CLOCK["now"]))
    CLOCK["now"] += 30
    disable = "/v1/auth/mfa/totp/disable"
    code = pyotp.TOTP(secret).at(CLOCK["now"])
    wrong = {"password": "not it at all", "code": code}
    response, body = post(client, disable, wrong, mine["access_token"])
    assert (response.status_code, code_of(body)) == (401, "invalid_credentials")
    response, body = post(
        client, disable, {"password": PASSWORD, "code": "000000"}, mine["access_token"]
    )
    assert (response.status_code, code_of(body)) == (400, "invalid_totp")
    response, body = post(
        client, disable, {"password": PASSWORD, "code": code}, mine["access_token"]
    )
    assert (response.status_code, body) == (200, {"mfa_enabled": False})
    assert get(client, "/v1/me", mine["access_token"])[1]["user"]["mfa_enabled"] is False
    assert get(client, "/v1/me", again["access_token"])[0].status_code == 401
    assert log_in(client)[0].status_code == 200  # no code needed any more


def test_a_user_lists_and_revokes_their_own_logins(client):
    sign_up(client)
    first = tokens_for(client)
    CLOCK["now"] += 1
    second = tokens_for(client)
    response, listed = get(client, "/v1/me/sessions", second["access_token"])
    assert response.status_code == 200
    assert listed["next_cursor"] is None
    assert [s["current"] for s in listed["data"]] == [True, False]  # newest first
    first_id = listed["data"][1]["id"]
    assert set(listed["data"][0]) == {
        "id",
        "created_at",
        "last_used_at",
        "ip",
        "user_agent",
        "mfa",
        "current",
    }
    response, page = get(client, "/v1/me/sessions?limit=1", second["access_token"])
    assert len(page["data"]) == 1
    assert page["next_cursor"] is not None
    response, rest = get(
        client, f"/v1/me/sessions?limit=1&cursor={page['next_cursor']}", second["access_token"]
    )
    assert [s["id"] for s in rest["data"]] == [first_id]

    sign_up(client, "mallory@example.com")
    mallory = tokens_for(client, "mallory@example.com")
    revoke = f"/v1/me/sessions/{first_id}/revoke"
    response, body = post(client, revoke, b"", mallory["access_token"])
    assert (response.status_code, code_of(body)) == (404, "not_found")
    assert get(client, "/v1/me", first["access_token"])[0].status_code == 200

    response, _ = post(client, revoke, b"", second["access_token"])
    assert response.status_code == 204
    assert get(client, "/v1/me", first["access_token"])[0].status_code == 401
    response, _ = post(client, "/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert response.status_code == 401
    _, listed = get(client, "/v1/me/sessions", second["access_token"])
    assert [s["current"] for s in listed["data"]] == [True]


# -- throttling ------------------------------------------------------------------------------------
def test_five_failed_logins_for_one_email_answer_429_with_retry_after(client):
    sign_up(client)
    for _ in range(5):
        assert log_in(client, password="wrong password!")[0].status_code == 401
    response, body = log_in(client)  # even the right password now waits
    assert (response.status_code, code_of(body)) == (429, "too_many_attempts")
    assert 1 <= int(response.headers["Retry-After"]) <= 900
    CLOCK["now"] += 901
    assert log_in(client)[0].status_code == 200


def test_the_per_ip_limit_applies_across_emails(client, monkeypatch):
    from chalicelib.api import dependencies
    from chalicelib.config import get_settings

    monkeypatch.setenv("LOGIN_IP_LIMIT", "3")
    get_settings.cache_clear()
    dependencies.reset()
    get_auth_service().clock = lambda: CLOCK["now"]
    for n in range(3):
        log_in(client, email=f"user{n}@example.com")
    response, body = log_in(client, email="someone-else@example.com")
    assert (response.status_code, code_of(body)) == (429, "too_many_attempts")


# -- password reset --------------------------------------------------------------------------------
def sent_tokens(kind: str = "Reset token", to: str | None = None) -> list[str]:
    """Tokens mailed so far, after the mail outbox ran (as its scheduled function does)."""
    deliver_waiting_mail()
    messages = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    found = []
    for message in messages:
        if to is not None and to not in message.destinations["ToAddresses"]:
            continue
        for line in message.body.splitlines():
            if line.startswith(kind):
                found.append(line.rsplit(" ", 1)[1])
    return found


def test_forgot_always_answers_202_and_mails_only_real_users(client):
    sign_up(client)
    for email in ("nobody@example.com", "alice@example.com", "not an email"):
        response, _ = post(client, "/v1/auth/password/forgot", {"email": email})
        assert response.status_code == 202
    assert len(sent_tokens()) == 1


def test_forgot_does_the_same_work_for_a_known_and_an_unknown_email(client):
    from collections import Counter

    from chalicelib.adapters.dynamo.models import LedgerItem

    sign_up(client)
    deliver_waiting_mail()  # the sign-up's verification mail
    calls: Counter = Counter()
    events = LedgerItem._get_connection().connection.client.meta.events
    events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    known = dict(calls)
    calls.clear()
    post(client, "/v1/auth/password/forgot", {"email": "nobody@example.com"})
    assert dict(calls) == known == {"PutItem": 1}


def test_at_most_three_reset_mails_per_email_per_hour(client):
    sign_up(client)
    for _ in range(5):
        response, _ = post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
        assert response.status_code == 202
    assert len(sent_tokens()) == 3
    CLOCK["now"] += 3600
    post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    assert len(sent_tokens()) == 4


def test_a_mail_service_failure_never_reaches_the_caller_and_the_mail_is_sent_later(client):
    sign_up(client)
    deliver_waiting_mail()
    service = get_auth_service()
    working = service.mailer

    class Down:
        def send(self, to: str, subject: str, body: str) -> None:
            raise RuntimeError("SES said no")

    service.mailer = Down()
    response, _ = post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    assert response.status_code == 202
    assert deliver_waiting_mail() == {"failed": 1}
    service.mailer = working
    assert len(sent_tokens()) == 1


def test_reset_sets_the_password_revokes_logins_and_works_once(client, table):
    sign_up(client)
    pair = tokens_for(client)
    post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    (token,) = sent_tokens()

    response, body = post(
        client, "/v1/auth/password/reset", {"token": token, "new_password": "short"}
    )
    assert (response.status_code, code_of(body)) == (400, "weak_password")
    CLOCK["now"] += 1
    response, _ = post(
        client,
        "/v1/auth/password/reset",
        {"token": token, "new_password": "a brand new passphrase"},
    )
    assert response.status_code == 204
    response, _ = post(client, "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert response.status_code == 401
    assert log_in(client)[0].status_code == 401
    assert log_in(client, password="a brand new passphrase")[0].status_code == 200
    response, body = post(
        client,
        "/v1/auth/password/reset",
        {"token": token, "new_password": "yet another passphrase"},
    )
    assert (response.status_code, code_of(body)) == (400, "invalid_token")
    audit = [i for i in scan(table) if i["item_type"] == "audit"]
    assert "auth.password_reset" in [i["action"] for i in audit]
    assert token not in json.dumps(audit, default=str)


def test_a_reset_token_expires_after_30_minutes(client):
    sign_up(client)
    post(client, "/v1/auth/password/forgot", {"email": "alice@example.com"})
    (token,) = sent_tokens()
    CLOCK["now"] += 1801
    response, body = post(
        client,
        "/v1/auth/password/reset",
        {"token": token, "new_password": "a brand new passphrase"},
    )
    assert (response.status_code, code_of(body)) == (400, "invalid_token")


# -- email verification ----------------------------------------------------------------------------
def verification_tokens(to: str = "alice@example.com") -> list[str]:
    return sent_tokens("Verification token", to)


def test_a_new_email_is_verified_with_the_mailed_token_once(client, table):
    user = sign_up(client)
    assert user["email_verified"] is False
    (token,) = verification_tokens()
    response, body = post(client, "/v1/auth/email/verify", {"token": "nope"})
    assert (response.status_code, code_of(body)) == (400, "invalid_token")
    response, body = post(client, "/v1/auth/email/verify", {"token": token})
    assert response.status_code == 200, body
    assert (body["user"]["id"], body["user"]["email_verified"]) == (user["id"], True)
    pair = tokens_for(client)
    assert get(client, "/v1/me", pair["access_token"])[1]["user"]["email_verified"] is True
    response, body = post(client, "/v1/auth/email/verify", {"token": token})
    assert (response.status_code, code_of(body)) == (400, "invalid_token")  # used
    assert "auth.email_verified" in [i["action"] for i in scan(table) if i["item_type"] == "audit"]
    assert token not in json.dumps(scan(table), default=str)


def test_a_verification_token_expires_after_24_hours(client):
    sign_up(client)
    (token,) = verification_tokens()
    CLOCK["now"] += 24 * 3600 + 1
    response, body = post(client, "/v1/auth/email/verify", {"token": token})
    assert (response.status_code, code_of(body)) == (400, "invalid_token")


def test_resending_the_verification_mail_is_limited_to_three_an_hour(client):
    sign_up(client)
    pair = tokens_for(client)
    for _ in range(4):
        response, _ = post(client, "/v1/auth/email/verify/resend", b"", pair["access_token"])
        assert response.status_code == 202
    assert len(verification_tokens()) == 3  # the sign-up's and two more
    token = verification_tokens()[-1]
    assert post(client, "/v1/auth/email/verify", {"token": token})[0].status_code == 200
    post(client, "/v1/auth/email/verify/resend", b"", pair["access_token"])
    CLOCK["now"] += 3600
    assert len(verification_tokens()) == 3  # verified: nothing more is sent


def test_an_unverified_user_cannot_receive_by_email_nor_withdraw(client, table):
    from chalicelib.domain.accounts import OwnerType, wallet_id
    from tests.api.helpers import call
    from tests.support import LedgerWorld, verified

    sign_up(client)
    sign_up(client, "bob@example.com")
    bob = get_auth_service().repository.find_user_by_email("bob@example.com")
    alice = verified(get_auth_service().repository.find_user_by_email("alice@example.com"))
    LedgerWorld.create(table).fund(wallet_id(OwnerType.USER, alice.id, "USD"), 50_00)
    alice_token = tokens_for(client)["access_token"]
    transfer = {"amount": "1.00", "currency": "USD", "to_email": "bob@example.com"}
    unknown = {**transfer, "to_email": "nobody@example.com"}
    answers = []
    for n, body in enumerate((transfer, unknown)):
        response, answer = call(client, "POST", "/v1/transfers", alice_token, body, f"t{n}")
        answers.append((response.status_code, code_of(answer), answer["error"]["message"]))
    assert answers[0] == answers[1]
    assert answers[0][:2] == (404, "recipient_not_found")

    bob_token = tokens_for(client, "bob@example.com")["access_token"]
    out = {"amount": "0.001", "currency": "BTC", "destination": "bc1qexample0000000000"}
    response, body = call(client, "POST", "/v1/withdrawals", bob_token, out, "w1")
    assert (response.status_code, code_of(body)) == (403, "email_unverified")
    (token,) = verification_tokens("bob@example.com")
    post(client, "/v1/auth/email/verify", {"token": token})
    response, _ = call(client, "POST", "/v1/transfers", alice_token, transfer, "t-after")
    assert response.status_code == 201
    assert wallet_id(OwnerType.USER, bob.id, "USD") in response.body.decode()


# -- audit -----------------------------------------------------------------------------------------
def test_auth_events_are_audited_with_actor_time_and_ip_and_no_secrets(client, table):
    sign_up(client)
    CLOCK["now"] += 1
    log_in(client, password="wrong password!")
    CLOCK["now"] += 1
    pair = tokens_for(client)
    CLOCK["now"] += 1
    post(client, "/v1/auth/logout", {"refresh_token": pair["refresh_token"]})
    audit = [i for i in scan(table) if i["item_type"] == "audit"]
    assert [i["action"] for i in sorted(audit, key=lambda i: i["SK"])] == [
        "user.signed_up",
        "auth.login_failed",
        "auth.login",
        "auth.logout",
    ]
    for event in audit:
        assert event["at"].endswith("Z")
        assert event["ip"] == "127.0.0.1"  # the test client's source address
        assert event["actor_id"].startswith("usr_")
    text = json.dumps(audit, default=str)
    for secret in (PASSWORD, "wrong password!", pair["refresh_token"], pair["access_token"]):
        assert secret not in text


# -- admin routes ----------------------------------------------------------------------------------
probe = Blueprint(__name__)


@probe.route("/v1/admin/_probe", methods=["GET"])
@admin_only(probe)
def admin_probe() -> dict:
    return {"admin": current_principal().user.email}


@pytest.fixture(scope="module")
def _admin_probe_route() -> Iterator[None]:
    app.register_blueprint(probe)
    yield
    app.routes.pop("/v1/admin/_probe", None)


@pytest.mark.usefixtures("_admin_probe_route")
def test_admin_routes_need_role_admin_and_an_mfa_backed_token(client):
    sign_up(client)
    user_token = tokens_for(client)["access_token"]
    response, body = get(client, "/v1/admin/_probe", user_token)
    assert (response.status_code, code_of(body)) == (403, "forbidden")

    _, secret = get_auth_service().create_admin("root@example.com", PASSWORD)
    response, body = log_in(client, "root@example.com", code=pyotp.TOTP(secret).at(CLOCK["now"]))
    assert response.status_code == 200
    response, body = get(client, "/v1/admin/_probe", body["access_token"])
    assert (response.status_code, body) == (200, {"admin": "root@example.com"})
    response, body = get(client, "/v1/admin/_probe", None)
    assert (response.status_code, code_of(body)) == (401, "unauthenticated")

    # An admin whose token was not obtained with a TOTP code is refused too.
    get_auth_service().sign_up("no-mfa@example.com", PASSWORD, True, None, role=Role.ADMIN)
    token = tokens_for(client, "no-mfa@example.com")["access_token"]
    response, body = get(client, "/v1/admin/_probe", token)
    assert (response.status_code, code_of(body)) == (403, "forbidden")


@pytest.mark.usefixtures("_admin_probe_route")
def test_admin_routes_need_a_totp_passed_within_12_hours_refreshing_does_not_extend_it(client):
    _, secret = get_auth_service().create_admin("root@example.com", PASSWORD)
    _, pair = log_in(client, "root@example.com", code=pyotp.TOTP(secret).at(CLOCK["now"]))
    CLOCK["now"] += 12 * 3600 - 60
    _, pair = post(client, "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert get(client, "/v1/admin/_probe", pair["access_token"])[0].status_code == 200
    CLOCK["now"] += 120
    _, pair = post(client, "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    response, body = get(client, "/v1/admin/_probe", pair["access_token"])
    assert (response.status_code, code_of(body)) == (403, "forbidden")
    assert get(client, "/v1/me", pair["access_token"])[0].status_code == 200  # still a user
    _, fresh = log_in(client, "root@example.com", code=pyotp.TOTP(secret).at(CLOCK["now"]))
    assert get(client, "/v1/admin/_probe", fresh["access_token"])[0].status_code == 200


def test_every_v1_route_is_public_protected_or_admin_only():
    for path, methods in app.routes.items():
        if not path.startswith("/v1/") or path in access.PUBLIC_ROUTES:
            continue
        for method, route in methods.items():
            mark = getattr(route.view_function, access.ACCESS_MARK, None)
            if mark is None:  # LedgerChalice wraps views; look through functools.wraps
                mark = getattr(
                    getattr(route.view_function, "__wrapped__", None), access.ACCESS_MARK, None
                )
            assert mark is not None, f"{method} {path} has no access decorator"
            if path.startswith("/v1/admin/"):
                assert mark == "admin", f"{method} {path} must be admin_only"


def test_users_of_before_verification_are_migrated_by_mail_or_by_mark(client, table):
    from infra import verify_existing_emails

    for name in ("old1", "old2"):
        sign_up(client, f"{name}@example.com")
    deliver_waiting_mail()
    service = get_auth_service()
    assert service.verify_existing_emails(mail=True) == 2
    assert len(verification_tokens("old1@example.com")) == 2
    assert verify_existing_emails.main(["--mark"]) == 0
    for name in ("old1", "old2"):
        user = service.repository.find_user_by_email(f"{name}@example.com")
        assert user.email_verified
        assert service.repository.verified_user_id_for_email(f"{name}@example.com") == user.id
    assert service.verify_existing_emails(mail=False) == 0
    marked = [
        i for i in scan(table) if i["item_type"] == "audit" and i["action"] == "auth.email_verified"
    ]
    assert len(marked) == 2
