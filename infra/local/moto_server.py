"""The embedded DynamoDB's HTTP server: moto's application behind a keep-alive server.

moto's ``ThreadedMotoServer`` (werkzeug's development server) answers each request on a new
connection and a new thread ("Connection: close"), writes the status line, the headers and the
body in separate small writes with Nagle's algorithm on, and asks every registered moto service
whether a request is theirs before answering it. Measured on the local stack, a ``GetItem``
took 10 to 33 ms over HTTP although moto answers it in 2 ms in-process (3 ms here). Here:

- connections are kept alive (HTTP/1.1), so the API's botocore clients reuse them;
- ``TCP_NODELAY`` on every connection, so a response is not held back waiting for an ACK;
- a DynamoDB request (``X-Amz-Target: DynamoDB_20120810.*``) goes straight to moto's DynamoDB
  application; everything else (SES, backups, ``/moto-api``) is dispatched by moto as before.

The DynamoDB backend itself is the same moto, with ``infra.local.moto_dynamodb`` applied.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

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


class KeepAliveHandler(BaseHTTPRequestHandler):
    """A WSGI request handler that keeps connections alive (HTTP/1.1), without Nagle's delay.

    werkzeug's development server, which moto's own server uses, closes every connection after
    one response ("Connection: close"), so each DynamoDB call paid a new connection and a new
    thread. This one reads each request body in full (``Content-Length``, or chunked), answers
    with a ``Content-Length``, and reads the next request from the same connection.
    """

    protocol_version = "HTTP/1.1"
    server: KeepAliveServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:
            self.close_connection = True

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": self.client_address[1],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _serve(self) -> None:
        body = self._body()
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            answer["status"], answer["headers"] = status, headers
            return lambda _data: None

        try:
            chunks = self.server.app(self._environ(body), start_response)
            try:
                payload = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except Exception:  # moto's app runs in debug mode and lets its own errors through
            traceback.print_exc()
            self._internal_error()
            return
        code, _, reason = answer["status"].partition(" ")
        self.send_response(int(code), reason)
        skip = ("content-length", "connection", "transfer-encoding")
        for name, value in answer["headers"]:
            if name.lower() not in skip:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _internal_error(self) -> None:
        """DynamoDB's answer to a failure on its side (botocore retries it), then close."""
        payload = json.dumps(
            {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "moto"}
        ).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: one line per DynamoDB call would drown the stack's output."""


class KeepAliveServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: Any) -> None:
        self.app = app
        super().__init__(address, KeepAliveHandler)


def create_server(host: str, port: int) -> KeepAliveServer:
    """A threaded server (a thread per connection) of moto's application on host:port."""
    return KeepAliveServer((host, port), LocalMotoApplication())
