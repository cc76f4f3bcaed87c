"""The API's worker pool (``infra.local.workers``) with a stand-in gateway, no app, no network:
an answer, a gateway refusal, a worker that dies holding a request (502), one past the timeout
(504), each replaced."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.local import ForbiddenError

from infra.local.workers import WorkerPool


class StandInGateway:
    """Answers by path: ``/ok`` echoes its pid, ``/forbidden`` is refused by the authorizer,
    ``/crash`` kills its worker, ``/slow`` takes 30 s."""

    def handle_request(self, method: str, path: str, headers: dict, body: bytes | None) -> dict:
        if path == "/crash":
            os._exit(3)
        if path == "/slow":
            time.sleep(30)
        if path == "/forbidden":
            raise ForbiddenError({"x-reason": "no"}, b'{"message": "no"}')
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {},
            "body": json.dumps({"pid": os.getpid(), "method": method, "body": body.decode()}),
        }


def stand_in_gateway() -> StandInGateway:
    return StandInGateway()


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    running = WorkerPool(stand_in_gateway, size=2, timeout=1.0)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def ask(pool: WorkerPool, path: str) -> dict[str, Any]:
    return pool.handle_request("POST", path, {"content-type": "application/json"}, b"{}")


def wait_for(pool: WorkerPool, count: int, gone: set[int]) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = set(pool.pids()) - gone
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"not {count} new workers: {pool.pids()}")


def test_a_request_is_answered_by_a_worker_process(pool: WorkerPool):
    answer = ask(pool, "/ok")
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert (body["method"], body["body"]) == ("POST", "{}")
    assert body["pid"] in pool.pids()
    assert body["pid"] != os.getpid()


def test_a_gateway_refusal_reaches_the_front_as_the_same_refusal(pool: WorkerPool):
    with pytest.raises(ForbiddenError) as refused:
        ask(pool, "/forbidden")
    assert refused.value.headers == {"x-reason": "no"}
    assert ask(pool, "/ok")["statusCode"] == 200  # the worker went back to work


def test_a_worker_that_dies_holding_a_request_answers_502_and_is_replaced(pool: WorkerPool):
    before = set(pool.pids())
    answer = ask(pool, "/crash")
    assert answer["statusCode"] == 502
    assert json.loads(answer["body"])["error"]["code"] == "internal_error"
    wait_for(pool, 1, before)  # a new worker in the place of the dead one
    assert len(pool.pids()) == 2
    assert ask(pool, "/ok")["statusCode"] == 200


def test_a_request_past_the_timeout_answers_504_and_its_worker_is_replaced(pool: WorkerPool):
    before = set(pool.pids())
    started = time.monotonic()
    answer = ask(pool, "/slow")
    assert answer["statusCode"] == 504
    assert time.monotonic() - started < 10
    assert json.loads(answer["body"])["error"]["code"] == "internal_error"
    wait_for(pool, 1, before)
    assert ask(pool, "/ok")["statusCode"] == 200
