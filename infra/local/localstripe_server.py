"""localstripe, the Stripe fake, on 127.0.0.1 only and from an empty store.

``localstripe``'s own CLI binds ``::`` (every interface, IPv4 and IPv6) and, unless given
``--from-scratch``, reloads whatever the last run pickled to ``/tmp/localstripe.pickle``. The local
stack wants neither: it serves this machine only, and its DynamoDB starts empty on every run, so
Stripe state from an earlier run would point at deposits that no longer exist. This launcher runs
the same aiohttp app bound to 127.0.0.1, never loads the pickle and never writes it (the file is
shared by every localstripe on the machine, e.g. a second stack started by the e2e tests).

Usage: ``python -m infra.local.localstripe_server PORT`` (the stack starts it; see stack.py).
"""

from __future__ import annotations

import sys
from typing import Any

from infra.local.child import exit_with_supervisor, stack_id_headers

HOST = "127.0.0.1"


async def name_the_stack(_request: Any, response: Any) -> None:
    for name, value in stack_id_headers():
        response.headers[name] = value


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m infra.local.localstripe_server PORT", file=sys.stderr)
        return 2
    port = int(argv[0])

    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    store.dump_to_disk = lambda: None  # type: ignore[method-assign]
    store.clear()
    app.on_response_prepare.append(name_the_stack)
    exit_with_supervisor()
    # run_app stops cleanly on SIGINT and SIGTERM (aiohttp's GracefulExit) and then returns.
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
