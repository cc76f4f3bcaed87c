"""A deployed stage's secrets come from one Secrets Manager secret (``SECRETS_ID``), on moto.

They are fetched at first use, once per container, never at import; the environment overrides
them (the local stack and the tests); a deployed stage without either still refuses to start
signing with a public key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from chalicelib.adapters import secrets
from chalicelib.config import get_settings

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = (
    "JWT_SIGNING_KEYS",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "CRYPTO_WEBHOOK_SECRET",
    "CRYPTO_ADDRESS_SECRET",
)
STORED = {
    "JWT_SIGNING_KEYS": json.dumps({"k1": "a" * 40}),
    "STRIPE_API_KEY": "sk_live_from_store",
    "STRIPE_WEBHOOK_SECRET": "whsec_from_store",
    "CRYPTO_WEBHOOK_SECRET": "crypto_from_store",
    "CRYPTO_ADDRESS_SECRET": "address_from_store",
}


@pytest.fixture
def deployed_env(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ``prod``-like stage whose only secret source is the store, named by ``SECRETS_ID``."""
    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(Name="ledger-prod/app", SecretString=json.dumps(STORED))
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("SECRETS_ID", "ledger-prod/app")  # as the packaged template sets it
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    secrets.clear_cache()
    get_settings.cache_clear()
    yield "ledger-prod/app"
    secrets.clear_cache()
    monkeypatch.undo()
    get_settings.cache_clear()


def test_every_secret_is_read_from_the_store(deployed_env: str):
    settings = get_settings()

    assert settings.signing_keys_json() == STORED["JWT_SIGNING_KEYS"]
    assert settings.stripe_credentials() == ("sk_live_from_store", "whsec_from_store")
    assert settings.crypto_secrets() == ("crypto_from_store", "address_from_store")


def test_the_store_is_read_once_per_container(deployed_env: str, monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    fetch = secrets._fetch

    def counting_fetch(secret_id: str, region: str):
        calls.append(secret_id)
        return fetch(secret_id, region)

    monkeypatch.setattr(secrets, "_fetch", counting_fetch)
    settings = get_settings()
    for _ in range(3):
        settings.stripe_credentials()
        settings.signing_keys_json()

    assert calls == [deployed_env]


def test_the_environment_overrides_the_store(deployed_env: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_env")
    get_settings.cache_clear()

    assert get_settings().stripe_credentials() == ("sk_test_env", "whsec_from_store")


def test_a_missing_value_in_the_store_still_fails_closed(aws: None, monkeypatch):
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="ledger-prod/partial", SecretString="{}")["ARN"]
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("SECRETS_ID", arn)
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    secrets.clear_cache()
    get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="JWT_SIGNING_KEYS is not set"):
            get_settings().signing_keys_json()
        with pytest.raises(RuntimeError, match="STRIPE_API_KEY"):
            get_settings().stripe_credentials()
    finally:
        secrets.clear_cache()
        monkeypatch.undo()
        get_settings.cache_clear()


def test_an_unreadable_or_malformed_secret_fails_without_its_value(aws: None):
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="ledger-prod/bad", SecretString='["sk_live_leak"]')["ARN"]
    secrets.clear_cache()
    try:
        with pytest.raises(secrets.SecretStoreError) as malformed:
            secrets.secret_values(arn, "us-east-1")
        with pytest.raises(secrets.SecretStoreError) as missing:
            secrets.secret_values(arn + "-nope", "us-east-1")
    finally:
        secrets.clear_cache()

    assert "sk_live_leak" not in str(malformed.value)
    assert "ResourceNotFoundException" in str(missing.value) or "ClientError" in str(missing.value)


def test_no_secret_is_fetched_at_app_import():
    code = (
        "import os, sys; os.environ['SECRETS_ID'] = 'arn:aws:secretsmanager:us-east-1:1:secret:x';"
        "import app;"
        "assert 'chalicelib.adapters.secrets' not in sys.modules, 'secrets read at import'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
