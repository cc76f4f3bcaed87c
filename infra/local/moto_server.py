"""The embedded DynamoDB's HTTP server: moto's application behind a keep-alive server.

moto's ``ThreadedMotoServer`` (werkzeug's development server) answers each request on a new
connection and a new thread ("Connection: close"), writes the status line, the headers and the
body in separate small writes with Nagle's algorithm on, and asks every registered moto service
whether a request is theirs before answering it. Measured on the local stack, a ``GetItem``
took 10 to 33 ms over HTTP although moto answers it in 2 ms in-process (3 ms here). Here:

- connections are kept alive (HTTP/1.1), so the API's botocore clients reuse them;
- ``TCP_NODELAY`` on every connection, so a response is not held back waiting for an ACK;
- a DynamoDB request (``X-Amz-Target: DynamoDB_20120810.*``) goes straight to moto's DynamoDB
  handler, as moto's Flask view would call it but without Flask (a fifth of the server's time per
  call); everything else (SES, backups, ``/moto-api``) is dispatched by moto's application;
- request headers are read as the ``name: value`` lines they are (``http.server`` runs each
  request's headers through the ``email`` package's parser), and an answer is one write.

The DynamoDB backend itself is the same moto, with ``infra.local.moto_dynamodb`` applied.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from moto.core.request import Request
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.exceptions import HTTPException

from infra.local.child import stack_id_headers

DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
MAX_HEADER_LINES = 100  # as http.server
MAX_LINE_BYTES = 65536
HTTP_STATUS_CODES = frozenset(status.value for status in HTTPStatus)


class ServerRequest(Request):
    """A request received by a real HTTP server: moto leaves the ``Date`` header to it."""

    from_wsgi_server = True


Answer = tuple[int, list[tuple[str, str]], bytes]


def dynamodb_answer(environ: dict[str, Any]) -> Answer:
    """What moto's Flask view of DynamoDB answers (``convert_to_flask_response``), without Flask."""
    request = ServerRequest(environ)
    host = environ.get("HTTP_HOST") or environ["SERVER_NAME"]
    full_url = f"{environ['wsgi.url_scheme']}://{host}{environ.get('RAW_URI') or '/'}"
    try:
        status, headers, body = DynamoHandler.dispatch(request, full_url, request.headers)
    except HTTPException as error:  # as Flask turns an error raised before the action
        status, headers, body = error.code or 500, dict(error.get_headers()), error.get_body()
    payload = body.encode("utf-8") if isinstance(body, str) else bytes(body or b"")
    fields = [(name, str(value)) for name, value in headers.items() if name.lower() != "status"]
    return int(status), fields, payload


class LocalMotoApplication(DomainDispatcherApplication):
    """moto's dispatcher, with a short cut for DynamoDB's JSON requests (``answer``)."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)

    def answer(self, environ: dict[str, Any]) -> Answer:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            return dynamodb_answer(environ)
        reply: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            reply["status"], reply["headers"] = status, headers
            return lambda _data: None

        chunks = self(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return int(reply["status"].split(" ", 1)[0]), reply["headers"], payload


class Headers:
    """Request headers as read from the wire: looked up by name in any case, listed in order."""

    def __init__(self) -> None:
        self._fields: list[tuple[str, str]] = []
        self._by_name: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))
        key = name.lower()
        self._by_name[key] = f"{self._by_name[key]},{value}" if key in self._by_name else value

    def get(self, name: str, default: Any = None) -> Any:
        return self._by_name.get(name.lower(), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)


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

    def parse_request(self) -> bool:
        """The request line and the header lines; False (after an error answer) when malformed."""
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.request_version = "HTTP/1.0"
            self.send_error(400, "Bad request line")
            return False
        self.command, self.path, self.request_version = words
        headers = Headers()
        for _ in range(MAX_HEADER_LINES):
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            if len(line) > MAX_LINE_BYTES:
                self.send_error(431, "Header line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon:
                self.send_error(400, "Bad header line")
                return False
            headers.add(name.strip(), value.strip())
        else:
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = (headers.get("Connection") or "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if (headers.get("Expect") or "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _serve(self) -> None:
        body = self._body()
        try:
            code, headers, payload = self.server.app.answer(self._environ(body))
        except Exception:  # moto's app runs in debug mode and lets its own errors through
            traceback.print_exc()
            self._internal_error()
            return
        reason = HTTPStatus(code).phrase if code in HTTP_STATUS_CODES else ""
        lines = [f"HTTP/1.1 {code} {reason}"]
        skip = ("content-length", "connection", "transfer-encoding")
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in skip]
        lines += [f"{name}: {value}" for name, value in stack_id_headers()]
        lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    def _internal_error(self) -> None:
        """DynamoDB's answer to a failure on its side (botocore retries it), then close."""
        payload = json.dumps(
            {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "moto"}
        ).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        for name, value in stack_id_headers():
            self.send_header(name, value)
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
