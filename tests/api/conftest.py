"""API test fixtures: the real app behind chalice's test client, with the deployed 404 behaviour."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client

from app import app
from chalicelib.api import dependencies
from chalicelib.api.log import logger
from chalicelib.config import get_settings
from infra.local.gateway import NotFoundAwareGateway

PROJECT_DIR = Path(__file__).resolve().parents[2]
# A stage that .chalice/config.json does not define: the test client then adds only the
# top-level environment variables, and leaves TABLE_NAME / STAGE to the test fixtures.
TEST_STAGE = "test"


@pytest.fixture(autouse=True)
def _fresh_dependencies() -> Iterator[None]:
    """Each test builds the lazy getters' objects from its own environment."""
    dependencies.reset()
    get_settings.cache_clear()
    yield
    dependencies.reset()
    get_settings.cache_clear()


@pytest.fixture
def api_client() -> Iterator[Client]:
    """``chalice.test.Client`` on the app, with the local stack's 404-aware gateway.

    Build it after registering any extra routes: the gateway reads the routes once.
    """
    with Client(app, stage_name=TEST_STAGE, project_dir=str(PROJECT_DIR)) as client:
        http = client.http
        http._local_gateway = NotFoundAwareGateway(app, http._config)
        yield client


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[list[dict]]:
    """Every line the app logs during the test, parsed from the JSON the real formatter writes."""
    handler = _Lines()
    handler.setFormatter(logger.registered_formatter)
    previous_level = logger.log_level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.setLevel(previous_level)
    logger.removeHandler(handler)
