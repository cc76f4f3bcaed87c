"""``get_settings`` reads every setting a deployed stage passes in its environment
(infra/package.py's STACK_ENVIRONMENT and FUNCTION_ENVIRONMENT): a variable set by the template
but never read would silently leave the default in force."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.config import get_settings
from infra import package


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch):
    def read(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return get_settings()

    yield read
    get_settings.cache_clear()


def test_the_admins_reconciliation_runs_in_the_function_the_stack_names(settings_from):
    settings = settings_from(
        RECONCILIATION_FUNCTION="ledger-dev-reconciliation_run",
        RECONCILIATION_WAIT_SECONDS="3",
        WITHDRAWAL_REVIEW_DAYS="14",
    )

    assert settings.reconciliation_function == "ledger-dev-reconciliation_run"
    assert settings.reconciliation_wait_seconds == 3
    assert settings.withdrawal_review_days == 14


def test_every_variable_the_template_sets_is_read_by_the_settings():
    import inspect

    from chalicelib import config

    source = inspect.getsource(config.read_settings)
    names = set(package.STACK_ENVIRONMENT)
    for variables in package.FUNCTION_ENVIRONMENT.values():
        names |= set(variables)
    # read where it is used: only the restore drill needs the table's key
    names -= {"TABLE_KMS_KEY_ARN"}
    for name in sorted(names):
        assert f'"{name}"' in source, f"{name} is set by the template but never read"


def test_withdrawal_limits_are_read_once_into_minor_units(settings_from):
    settings = settings_from(
        WITHDRAWAL_MINIMUMS='{"BTC": "0.0001"}', WITHDRAWAL_DAILY_LIMITS='{"USD": "250.50"}'
    )

    assert dict(settings.withdrawal_minimums) == {"BTC": 10_000}
    assert dict(settings.withdrawal_daily_limits) == {"USD": 25_050}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("WITHDRAWAL_DAILY_LIMITS", '{"USD": "ten"}', "WITHDRAWAL_DAILY_LIMITS: USD"),
        ("WITHDRAWAL_DAILY_LIMITS", '{"XYZ": "10"}', "WITHDRAWAL_DAILY_LIMITS: XYZ"),
        ("WITHDRAWAL_DAILY_LIMITS", '{"USD": "1.005"}', "WITHDRAWAL_DAILY_LIMITS: USD"),
        ("WITHDRAWAL_MINIMUMS", "[1, 2]", "WITHDRAWAL_MINIMUMS must be a JSON object"),
        ("WITHDRAWAL_MINIMUMS", "{", "WITHDRAWAL_MINIMUMS is not valid JSON"),
        ("FX_RATES", '{"USD/XYZ": "1"}', "FX_RATES: 'USD/XYZ'"),
        ("FX_RATES", '{"USD/BTC": "-1"}', "FX_RATES: 'USD/BTC'"),
        ("LOGIN_IP_LIMIT", "many", "LOGIN_IP_LIMIT must be a whole number"),
    ],
)
def test_a_setting_that_cannot_be_right_is_refused_by_name(settings_from, name, value, says):
    with pytest.raises(ValueError, match=f"^{re.escape(says)}"):
        settings_from(**{name: value})


def test_a_bad_setting_fails_the_cold_start_naming_the_variable():
    """``app.py`` reads the settings at import: a deployment with a bad value fails to start,
    instead of failing each withdrawal (or quote) that needs it."""
    env = {**os.environ, "WITHDRAWAL_DAILY_LIMITS": '{"USD": "ten"}'}
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "WITHDRAWAL_DAILY_LIMITS: USD 'ten'" in result.stderr
