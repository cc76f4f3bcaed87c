"""Which stack a local service belongs to.

The supervisor finds its ports free, then starts each service, which binds its port a moment
later. In between, another program (a second stack started by the e2e tests, say) can take the
port; the service then refuses to start, but something answers on the port all the same. So each
service of a stack names the stack in a header of every answer, and the supervisor counts a
service as up only when the answer carries its own stack's id.
"""

from __future__ import annotations

import os

STACK_ID_ENV = "LEDGER_LOCAL_STACK_ID"
STACK_ID_HEADER = "X-Local-Stack-Id"


def stack_id() -> str:
    """This process's stack id (set by the supervisor), or "" outside a stack."""
    return os.environ.get(STACK_ID_ENV, "")


def stack_id_headers() -> list[tuple[str, str]]:
    """The header naming this process's stack, or none outside a stack."""
    value = stack_id()
    return [(STACK_ID_HEADER, value)] if value else []
