"""Auth rules that a race must not break: one refresh per token, one login per TOTP code, one
account per email."""

from __future__ import annotations

import threading

import pyotp
import pytest

from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.adapters.dynamo.outbox_repository import DynamoOutbox
from chalicelib.adapters.email import FolderMailer
from chalicelib.auth import passwords
from chalicelib.config import get_settings
from chalicelib.domain.errors import InvalidCredentials, InvalidTotp, TooManyAttempts
from chalicelib.services.auth import AuthService

PASSWORD = "correct horse battery"
NOW = 1_790_000_000.0
OFFICE = "198.51.100.7"  # many users behind one address


@pytest.fixture
def service(table: str, tmp_path) -> AuthService:
    passwords.configure_for_tests()
    return AuthService(
        DynamoAuthRepository(),
        get_settings(),
        FolderMailer("no-reply@x", tmp_path),
        DynamoOutbox(),
        lambda: NOW,
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


def checked_until_refused(act) -> int:
    """Attempts ``act`` one at a time until it is refused; how many were checked."""
    checked = 0
    for _ in range(10):
        try:
            act()
        except TooManyAttempts:
            return checked
        except (InvalidCredentials, InvalidTotp):
            checked += 1
    raise AssertionError("never refused")


def test_parallel_wrong_passwords_for_one_email_are_checked_at_most_five_times(service):
    service.sign_up("t@example.com", PASSWORD, True, None)

    def wrong() -> None:
        service.login("t@example.com", "not the password", None, None)

    outcomes = together(20, wrong)
    assert set(outcomes) <= {"InvalidCredentials", "TooManyAttempts"}
    # Counted before checked: the racers and the stragglers together get five checks.
    assert outcomes.count("InvalidCredentials") + checked_until_refused(wrong) == 5
    with pytest.raises(TooManyAttempts):
        service.login("t@example.com", PASSWORD, None, None)


def test_parallel_totp_guesses_are_checked_at_most_five_times(service):
    _, secret = service.create_admin("guessed@example.com", PASSWORD)
    right = pyotp.TOTP(secret).at(NOW)
    wrong_code = f"{(int(right) + 1) % 1_000_000:06d}"

    def guess() -> None:
        service.login("guessed@example.com", PASSWORD, wrong_code, None)

    outcomes = together(20, guess)
    assert set(outcomes) <= {"InvalidTotp", "TooManyAttempts"}
    assert outcomes.count("InvalidTotp") + checked_until_refused(guess) == 5
    with pytest.raises(TooManyAttempts):
        service.login("guessed@example.com", PASSWORD, right, None)


def test_an_attempt_that_does_not_fail_gives_its_count_back(service):
    service.sign_up("ok@example.com", PASSWORD, True, None)
    for _ in range(4):
        with pytest.raises(InvalidCredentials):
            service.login("ok@example.com", "not the password", None, "203.0.113.9")
    service.login("ok@example.com", PASSWORD, None, "203.0.113.9")
    # The success cleared the email's count and gave back its own count of the IP.
    failures, _ = service.repository.recent_failures("email", "ok@example.com")
    assert failures == []
    window = int(NOW) - int(NOW) % service.settings.login_window_seconds
    assert service.repository.counted_attempts("ipw", "203.0.113.9", window) == 4


def test_parallel_logins_of_many_users_from_one_address_are_never_refused(service):
    """Successful logins do not touch the IP's count: an office behind one address logs in."""
    emails = [f"staff{n}@example.com" for n in range(24)]
    for address in emails:
        service.sign_up(address, PASSWORD, True, None)
    waiting = list(emails)
    outcomes = together(len(emails), lambda: service.login(waiting.pop(), PASSWORD, None, OFFICE))
    assert outcomes == ["ok"] * len(emails)
    window = int(NOW) - int(NOW) % service.settings.login_window_seconds
    assert service.repository.counted_attempts("ipw", OFFICE, window) == 0


def test_parallel_wrong_logins_from_one_address_are_checked_at_most_the_ip_limit(table, tmp_path):
    """The per-IP limit is counted before the check too (one atomic ADD per attempt): of 30
    parallel wrong logins for 30 different emails from one address, at most the limit (5 here)
    are checked; the rest get TooManyAttempts unchecked."""
    from dataclasses import replace

    passwords.configure_for_tests()
    settings = replace(get_settings(), login_ip_limit=5)
    service = AuthService(
        DynamoAuthRepository(),
        settings,
        FolderMailer("no-reply@x", tmp_path),
        DynamoOutbox(),
        lambda: NOW,
    )
    emails = [f"target{n}@example.com" for n in range(30)]
    waiting = list(emails)
    outcomes = together(
        30, lambda: service.login(waiting.pop(), "wrong password!", None, "192.0.2.66")
    )
    assert outcomes.count("InvalidCredentials") == 5, outcomes
    assert outcomes.count("TooManyAttempts") == 25
