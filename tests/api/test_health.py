"""GET /health: 200 when the ledger table answers, 503 (quickly) when it cannot be reached."""

from __future__ import annotations

import socket
import time

import pytest


def test_health_is_ok_when_the_table_answers(table, api_client):
    response = api_client.http.get("/health")

    assert response.status_code == 200
    assert response.json_body == {"status": "ok", "checks": {"dynamodb": "ok"}}


def test_health_is_degraded_when_the_table_is_missing(aws, monkeypatch, api_client, log_lines):
    monkeypatch.setenv("TABLE_NAME", "ledger-no-such-table")

    response = api_client.http.get("/health")

    assert response.status_code == 503
    assert response.json_body == {"status": "degraded", "checks": {"dynamodb": "unreachable"}}
    failures = [line for line in log_lines if line["message"] == "dynamodb health check failed"]
    assert len(failures) == 1
    assert failures[0]["table"] == "ledger-no-such-table"
    assert failures[0]["request_id"] == response.headers["X-Request-Id"]


@pytest.fixture
def dead_endpoint() -> str:
    """A 127.0.0.1 URL where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_health_answers_quickly_when_dynamodb_is_down(monkeypatch, dead_endpoint, api_client):
    monkeypatch.setenv("DYNAMODB_ENDPOINT", dead_endpoint)

    started = time.monotonic()
    response = api_client.http.get("/health")

    assert response.status_code == 503
    assert response.json_body["status"] == "degraded"
    assert time.monotonic() - started < 5


def test_models_are_bound_to_the_configured_table_once_per_process(table, api_client, monkeypatch):
    from chalicelib.adapters.dynamo import models

    bound_to: list[str] = []
    bind = models.bind
    monkeypatch.setattr(models, "bind", lambda s: (bound_to.append(s.table_name), bind(s)))

    for _ in range(3):
        assert api_client.http.get("/health").status_code == 200

    assert bound_to == [table]
    assert models.AccountItem.Meta.table_name == table


def test_health_gives_up_quickly_on_an_endpoint_that_never_answers(monkeypatch, api_client):
    with socket.socket() as silent:
        # Accepts connections (the kernel does) and never says a word.
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()
        monkeypatch.setenv("DYNAMODB_ENDPOINT", f"http://{host}:{port}")

        started = time.monotonic()
        response = api_client.http.get("/health")

    assert response.status_code == 503
    assert time.monotonic() - started < 5
