"""``python -m infra.create_admin``: an admin whose TOTP login works, and clear refusals (moto)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pyotp
import pytest

from chalicelib.api import dependencies
from chalicelib.auth import passwords
from chalicelib.config import get_settings
from chalicelib.domain.users import Role
from infra.create_admin import main

EMAIL = "ops@example.com"
PASSWORD = "a-long-enough-admin-password"


@pytest.fixture(autouse=True)
def service_on_the_table(table: str) -> Iterator[None]:
    """The CLI's auth service talks to this test's moto table, with cheap password hashing."""
    passwords.configure_for_tests()
    dependencies.reset()
    get_settings.cache_clear()
    yield
    dependencies.reset()
    get_settings.cache_clear()


def run(monkeypatch: pytest.MonkeyPatch, password: str, *args: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{password}\n"))
    return main([*args, "--password-stdin"])


def test_creates_an_admin_with_mfa_whose_totp_login_works(monkeypatch, capsys):
    code = run(monkeypatch, PASSWORD, "--email", EMAIL)

    out = capsys.readouterr().out
    assert code == 0, out
    secret = re.search(r"TOTP secret: ([A-Z2-7]+)", out).group(1)
    uri = re.search(r"otpauth URI: (\S+)", out).group(1)
    assert uri.startswith("otpauth://totp/")
    assert f"secret={secret}" in uri
    assert "store the secret" in out
    assert PASSWORD not in out

    service = dependencies.get_auth_service()
    pair = service.login(EMAIL, PASSWORD, pyotp.TOTP(secret).now(), None)
    principal = service.authenticate(f"Bearer {pair.access_token}")
    assert principal.user.role is Role.ADMIN
    assert principal.user.mfa_enabled
    assert principal.mfa


def test_refuses_a_taken_email_with_a_message_and_a_non_zero_exit(monkeypatch, capsys):
    assert run(monkeypatch, PASSWORD, "--email", EMAIL) == 0
    first = capsys.readouterr().out

    code = run(monkeypatch, "another-long-password", "--email", EMAIL.upper())

    captured = capsys.readouterr()
    assert code != 0
    assert "exists already" in captured.err
    assert "TOTP secret" not in captured.out
    # The first admin is untouched: its password and secret still log in.
    secret = re.search(r"TOTP secret: ([A-Z2-7]+)", first).group(1)
    dependencies.get_auth_service().login(EMAIL, PASSWORD, pyotp.TOTP(secret).now(), None)


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        (EMAIL, "short", "weak password"),
        ("not-an-email", PASSWORD, "not a valid address"),
    ],
)
def test_refuses_a_weak_password_or_an_invalid_email(monkeypatch, capsys, email, password, message):
    code = run(monkeypatch, password, "--email", email)

    captured = capsys.readouterr()
    assert code == 1
    assert message in captured.err
    assert "TOTP secret" not in captured.out


def test_needs_table_name(monkeypatch, capsys):
    monkeypatch.delenv("TABLE_NAME")

    code = run(monkeypatch, PASSWORD, "--email", EMAIL)

    assert code == 2
    assert "TABLE_NAME" in capsys.readouterr().err
