"""Auth rules that a race must not break: one refresh per token, one login per TOTP code, one
account per email."""

from __future__ import annotations

import threading

import pyotp
import pytest

from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.adapters.email import FolderMailer
from chalicelib.auth import passwords
from chalicelib.config import get_settings
from chalicelib.services.auth import AuthService

PASSWORD = "correct horse battery"
NOW = 1_790_000_000.0


@pytest.fixture
def service(table: str, tmp_path) -> AuthService:
    passwords.configure_for_tests()
    return AuthService(
        DynamoAuthRepository(), get_settings(), FolderMailer("no-reply@x", tmp_path), lambda: NOW
    )


def together(copies: int, act) -> list[str]:
    start = threading.Barrier(copies)
    outcomes: list[str] = []

    def run() -> None:
        start.wait()
        try:
            act()
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_one_refresh_token_presented_twice_at_once_rotates_once_and_revokes(service):
    service.sign_up("a@example.com", PASSWORD, True, None)
    pair = service.login("a@example.com", PASSWORD, None, None)
    outcomes = together(4, lambda: service.refresh(pair.refresh_token, None))
    assert outcomes.count("ok") <= 1
    assert set(outcomes) <= {"ok", "Unauthenticated"}
    # Whoever lost the race presented a used token: the whole login is revoked.
    user_id, session_id = pair.refresh_token[3:].split(".")[:2]
    assert service.repository.get_session(user_id, session_id).revoked


def test_a_totp_code_logs_in_once_even_when_raced(service):
    _, secret = service.create_admin("root@example.com", PASSWORD)
    code = pyotp.TOTP(secret).at(NOW)
    outcomes = together(4, lambda: service.login("root@example.com", PASSWORD, code, None))
    assert outcomes == ["InvalidTotp"] * 3 + ["ok"]


def test_racing_sign_ups_for_one_email_create_one_user(service, table):
    outcomes = together(4, lambda: service.sign_up("Same@Example.com", PASSWORD, True, None))
    assert outcomes == ["EmailTaken"] * 3 + ["ok"]
