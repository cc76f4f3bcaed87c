"""What every service process of the local stack shares with its supervisor (stack.py):
the stack it belongs to, and its life.

- The supervisor finds its ports free, then starts each service, which binds its port a moment
  later. In between, another program (a second stack started by the e2e tests, say) can take the
  port; the service then refuses to start, but something answers on the port all the same. So
  each service of a stack names the stack in a header of every answer, and the supervisor counts
  a service as up only when the answer carries its own stack's id.
- The services run in sessions of their own (the terminal's Ctrl-C reaches only the supervisor),
  so each one ends itself when its supervisor is gone, even if the supervisor was killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time

STACK_ID_ENV = "LEDGER_LOCAL_STACK_ID"
STACK_ID_HEADER = "X-Local-Stack-Id"
SUPERVISOR_PID_ENV = "LEDGER_STACK_SUPERVISOR_PID"


def stack_id() -> str:
    """This process's stack id (set by the supervisor), or "" outside a stack."""
    return os.environ.get(STACK_ID_ENV, "")


def stack_id_headers() -> list[tuple[str, str]]:
    """The header naming this process's stack, or none outside a stack."""
    value = stack_id()
    return [(STACK_ID_HEADER, value)] if value else []


def exit_with_supervisor() -> None:
    """Send SIGTERM to this process once the supervisor named in the environment is gone.

    The children run in sessions of their own, so a supervisor killed with SIGKILL (which it
    cannot catch) would otherwise leave them running.
    """
    raw = os.environ.get(SUPERVISOR_PID_ENV, "")
    if not raw.isdigit():
        return
    supervisor = int(raw)

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-supervisor", daemon=True).start()
