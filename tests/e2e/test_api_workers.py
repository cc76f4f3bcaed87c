"""The local API's worker processes, as Lambda containers: parallel, replaced when they die.

A request held by a worker that dies answers ``502`` in the error envelope; a worker that dies
while idle costs no request; the dead are replaced; Ctrl-C stops every worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_local_stack import (
    HOST,
    STOP_TIMEOUT_SECONDS,
    Stack,
    children_of,
    get,
    is_running,
    running_stack,
    send,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-api-workers")]

WORKERS = 2


def service_pid(stack: Stack, name: bytes) -> int:
    """The stack's child serving ``name`` (``--serve dynamodb`` or ``--serve api``)."""
    for child in children_of(stack.process.pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"--serve" in cmdline and name in cmdline:
            return child
    raise AssertionError(f"no {name!r} service:\n{stack.output()}")


def workers_of(stack: Stack) -> set[int]:
    """The API's worker processes: the children of the stack's API child."""
    return {pid for pid in children_of(service_pid(stack, b"api")) if _is_worker(pid)}


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for_workers(stack: Stack, count: int, gone: set[int] = frozenset()) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = workers_of(stack) - gone
        if len(found) >= count:
            return found
        time.sleep(0.2)
    pytest.fail(f"not {count} workers within 60 s:\n{stack.output()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("workers"), workers=WORKERS) as running:
        yield running


def health(stack: Stack) -> int:
    return get(f"http://{HOST}:{stack.api}/health")[0]


def test_the_api_runs_the_configured_number_of_workers(stack: Stack):
    assert len(wait_for_workers(stack, WORKERS)) == WORKERS
    assert f"api: {WORKERS} workers" in stack.output()


def test_a_worker_killed_while_idle_costs_no_request_and_is_replaced(stack: Stack):
    before = wait_for_workers(stack, WORKERS)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    assert [health(stack) for _ in range(6)] == [200] * 6
    after = wait_for_workers(stack, WORKERS, gone={victim})
    assert victim not in after


def test_a_worker_that_dies_holding_a_request_answers_502_in_the_envelope(stack: Stack):
    workers = wait_for_workers(stack, WORKERS)
    dynamodb = service_pid(stack, b"dynamodb")
    os.kill(dynamodb, signal.SIGSTOP)  # a health check now waits inside its worker
    try:
        answer: list[tuple[int, dict, dict]] = []
        request = urllib.request.Request(f"http://{HOST}:{stack.api}/health")
        caller = threading.Thread(target=lambda: answer.append(send(request, 30)))
        caller.start()
        time.sleep(1.0)  # taken by a worker, which is waiting for DynamoDB
        for pid in workers:  # the busy one and the idle one
            os.kill(pid, signal.SIGKILL)
        caller.join(timeout=30)
    finally:
        os.kill(dynamodb, signal.SIGCONT)
    status, headers, body = answer[0]
    assert status == 502, (status, body)
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == headers["X-Request-Id"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Replaced: the API answers again, with as many workers as before.
    replacements = wait_for_workers(stack, WORKERS, gone=workers)
    assert not replacements & workers
    assert health(stack) == 200


def test_ctrl_c_stops_every_worker(stack: Stack):
    workers = wait_for_workers(stack, WORKERS)
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0
    deadline = time.monotonic() + 10
    while any(is_running(pid) and _is_worker(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the stack"
        time.sleep(0.1)
