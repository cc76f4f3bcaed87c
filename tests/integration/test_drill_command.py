"""``make drill`` (``python -m infra.drill``) against a moto server on 127.0.0.1, as on the local
stack: it restores to a point in time (the local stack has no AWS Backup vault), prints PASSED and
exits 0 on a healthy ledger, and says what to do when nothing answers.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.adapters.dynamo import models
from chalicelib.config import get_settings
from infra import drill as command
from infra.local.table import create_table
from tests.support import LedgerWorld

# moto's backends are process-wide: each server of this module sees earlier tables.
TABLE = f"ledger-local-{uuid.uuid4().hex[:8]}"
ENV = ("STAGE", "TABLE_NAME", "DYNAMODB_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def local_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A moto server with the ledger table and a little history, as ``make run`` serves it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for name in (*ENV, "AWS_SESSION_TOKEN", "AWS_REGION", "ALERT_TOPIC_ARN"):
        monkeypatch.setenv(name, "unset")  # undo restores the test session's values
        monkeypatch.delenv(name)
    monkeypatch.setenv("LEDGER_DYNAMODB_PORT", str(port))
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    create_table(client, TABLE)
    monkeypatch.setenv("DYNAMODB_ENDPOINT", endpoint)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    get_settings.cache_clear()
    models.bind(get_settings())
    world = LedgerWorld.create(TABLE)
    alice, bob = world.open_user_account(), world.open_user_account()
    world.fund(alice, 5_000)
    world.transfer(alice, bob, 1_250)
    try:
        yield port
    finally:
        client.delete_table(TableName=TABLE)
        server.stop()
        monkeypatch.undo()
        get_settings.cache_clear()
        models.bind(get_settings())


def test_make_drill_passes_on_the_local_stack(local_dynamodb: int, capsys):
    status = command.main([])

    out = capsys.readouterr().out
    assert status == 0, out
    assert "PASSED" in out
    assert "method: point-in-time recovery (BACKUP_VAULT_NAME is not set" in out
    assert "full reconciliation of the restored copy: ok" in out
    assert f"{TABLE}-drill-" in out


def test_make_drill_ignores_a_vault_in_the_shell_and_fails_a_forced_backup_restore(
    local_dynamodb: int, capsys, monkeypatch
):
    monkeypatch.setenv("BACKUP_VAULT_NAME", "ledger-prod")  # moto has no AWS Backup

    status = command.main(["--method", "backup"])

    out = capsys.readouterr().out
    assert status == 1, out
    assert "FAILED" in out
    assert "needs BACKUP_VAULT_NAME" in out


def test_make_drill_without_the_local_stack_says_so(monkeypatch, capsys):
    monkeypatch.setenv("LEDGER_DYNAMODB_PORT", str(free_port()))
    for name in ENV:
        monkeypatch.setenv(name, "unset")
    try:
        status = command.main([])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert status == 2
    assert "make run" in capsys.readouterr().err


def test_counts_compare_tables_side_by_side(local_dynamodb: int, capsys):
    status = command.main(["--counts", TABLE, TABLE])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].split() == ["item_type", TABLE, TABLE]
    entry = next(line.split() for line in lines if line.startswith("entry "))
    assert entry == ["entry", "4", "4"]  # two entries per posted transaction, two transactions
