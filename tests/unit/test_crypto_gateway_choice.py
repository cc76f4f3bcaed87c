"""Which crypto gateway the API uses: a deployed stage never falls back to the offline fake."""

from __future__ import annotations

import pytest

from chalicelib.api import dependencies
from chalicelib.config import get_settings
from chalicelib.domain.errors import ProviderUnavailable


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("CRYPTO_GATEWAY_URL", raising=False)
    dependencies.reset()
    get_settings.cache_clear()
    yield
    dependencies.reset()
    get_settings.cache_clear()


def test_a_deployed_stage_without_a_gateway_url_refuses(monkeypatch):
    monkeypatch.setenv("STAGE", "prod")
    with pytest.raises(ProviderUnavailable):
        dependencies.get_crypto_gateway()


def test_a_gateway_url_selects_the_http_client(monkeypatch):
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("CRYPTO_GATEWAY_URL", "http://127.0.0.1:9")
    assert type(dependencies.get_crypto_gateway()).__name__ == "HttpCryptoGateway"


def test_the_local_stage_uses_the_offline_fake(monkeypatch):
    monkeypatch.setenv("STAGE", "local")
    assert type(dependencies.get_crypto_gateway()).__name__ == "LocalCryptoGateway"
