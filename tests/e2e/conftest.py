"""The e2e fixture: one local stack per test module, on free 127.0.0.1 ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_local_stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module, healthy; the last test that uses it stops it."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
