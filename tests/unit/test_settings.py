"""``get_settings`` reads every setting a deployed stage passes in its environment
(infra/package.py's STACK_ENVIRONMENT and FUNCTION_ENVIRONMENT): a variable set by the template
but never read would silently leave the default in force."""

from __future__ import annotations

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

    source = inspect.getsource(config.get_settings)
    names = set(package.STACK_ENVIRONMENT)
    for variables in package.FUNCTION_ENVIRONMENT.values():
        names |= set(variables)
    # read where it is used: only the restore drill needs the table's key
    names -= {"TABLE_KMS_KEY_ARN"}
    for name in sorted(names):
        assert f'"{name}"' in source, f"{name} is set by the template but never read"
