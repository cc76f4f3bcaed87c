"""The embedded DynamoDB's HTTP server: moto's application behind a keep-alive server.

moto's ``ThreadedMotoServer`` answers each request on a new connection (HTTP/1.0 from
werkzeug's development server), writes the status line, the headers and the body in separate
small writes with Nagle's algorithm on, and asks every registered moto service whether a request
is theirs before answering it. Measured on the local stack, a ``GetItem`` took 10 to 33 ms over
HTTP although moto answers it in 2 ms in-process. Here:

- connections are kept alive (HTTP/1.1), so the API's botocore clients reuse them;
- ``TCP_NODELAY`` on every connection, so a response is not held back waiting for an ACK;
- a DynamoDB request (``X-Amz-Target: DynamoDB_20120810.*``) goes straight to moto's DynamoDB
  application; everything else (SES, backups, ``/moto-api``) is dispatched by moto as before.

The DynamoDB backend itself is the same moto, with ``infra.local.moto_dynamodb`` applied.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."


class LocalMotoApplication(DomainDispatcherApplication):
    """moto's dispatcher with a short cut for DynamoDB's JSON requests."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._dynamodb: Any = None
        self._dynamodb_lock = threading.Lock()

    def get_application(self, environ: dict[str, Any]) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            with self._dynamodb_lock:
                if self._dynamodb is None:
                    self._dynamodb = self.create_app("dynamodb")
                return self._dynamodb
        return super().get_application(environ)


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler, HTTP/1.1 (keep-alive) and without Nagle's delay."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silent: one line per DynamoDB call would drown the stack's output."""


def create_server(host: str, port: int) -> BaseWSGIServer:
    """A threaded server (a thread per connection) of moto's application on host:port."""
    return make_server(
        host, port, LocalMotoApplication(), threaded=True, request_handler=KeepAliveRequestHandler
    )
