"""The e2e fixture: one local stack per test module, on free 127.0.0.1 ports."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.test_local_stack import (
    STOP_TIMEOUT_SECONDS,
    Stack,
    free_ports,
    start_stack,
    wait_for_health,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module, healthy; the last test that uses it stops it."""
    running = start_stack(tmp_path_factory.mktemp("stack"), *free_ports(3))
    try:
        wait_for_health(running)
        yield running
    finally:
        if running.process.poll() is None:
            # A test failed before stopping it: stop it the same way, then make sure.
            running.process.send_signal(signal.SIGINT)
            try:
                running.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                running.process.kill()  # its children stop by themselves when it is gone
                running.process.wait()
