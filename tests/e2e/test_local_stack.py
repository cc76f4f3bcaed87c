"""The local stack, as a developer runs it: ``python -m infra.local.stack`` on free 127.0.0.1 ports.

It must answer health and the 404 envelope through HTTP, serve the Stripe fake and the table, and
stop completely on Ctrl-C: exit 0, every child gone, every port free again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of a GET; (0, {}, {}) when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (127.0.0.1)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError):
        return 0, {}, {}


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent pid is the 2nd field after the parenthesised command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    api: int
    dynamodb: int
    stripe: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_stack(tmp_path: Path, api: int, dynamodb: int, stripe: int) -> Stack:
    env = {
        **os.environ,
        "LEDGER_API_PORT": str(api),
        "LEDGER_DYNAMODB_PORT": str(dynamodb),
        "LEDGER_STRIPE_PORT": str(stripe),
        "TABLE_NAME": "ledger-e2e",
    }
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        # A file, not a pipe: nobody reads the output while the stack runs.
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.stack"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Stack(process, api, dynamodb, stripe, log)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, *free_ports(3))
    yield running
    if running.process.poll() is None:
        # The test failed before stopping it: stop it the same way, then make sure.
        running.process.send_signal(signal.SIGINT)
        try:
            running.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            running.process.kill()  # its children stop by themselves when it is gone
            running.process.wait()


def wait_for_health(stack: Stack) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert stack.process.poll() is None, stack.output()
        status, _, body = get(f"http://{HOST}:{stack.api}/health")
        if status == 200:
            assert body == {"status": "ok", "checks": {"dynamodb": "ok"}}
            return
        time.sleep(0.25)
    pytest.fail(f"no healthy API within {START_TIMEOUT_SECONDS} s:\n{stack.output()}")


def test_the_stack_serves_everything_and_stops_cleanly_on_ctrl_c(stack: Stack):
    wait_for_health(stack)
    children = children_of(stack.process.pid)
    assert len(children) == 3, stack.output()

    status, headers, body = get(f"http://{HOST}:{stack.api}/no/such/route")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"] == headers["X-Request-Id"]
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, _, balance = get(
        f"http://{HOST}:{stack.stripe}/v1/balance", {"Authorization": "Bearer sk_test_local"}
    )
    assert status == 200
    assert "available" in balance  # an empty Stripe account

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=f"http://{HOST}:{stack.dynamodb}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    assert "ledger-e2e" in dynamodb.list_tables()["TableNames"]

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0, stack.output()

    assert not [pid for pid in children if is_running(pid)]
    for port in (stack.api, stack.dynamodb, stack.stripe):
        assert port_is_free(port), port
    output = stack.output()
    for line in (f"http://{HOST}:{stack.dynamodb}", f"http://{HOST}:{stack.stripe}"):
        assert line in output
    assert "local stack stopped" in output


def test_a_taken_port_fails_fast_with_a_message_naming_it(tmp_path: Path):
    api, dynamodb, stripe = free_ports(3)
    with socket.socket() as squatter:
        squatter.bind((HOST, dynamodb))
        squatter.listen()

        stack = start_stack(tmp_path, api, dynamodb, stripe)
        code = stack.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    assert code == 1
    output = stack.output()
    assert f"port {dynamodb}" in output
    assert "LEDGER_DYNAMODB_PORT" in output
    assert port_is_free(api)
    assert port_is_free(stripe)
