"""Outbound webhooks over HTTP, behind the SSRF rules of ``domain/webhook_urls.py``.

``HttpWebhookSender.check`` resolves an endpoint's host and refuses the URL unless every address
is public (at registration); ``post`` does the same check again at each delivery and then
connects to **the address it checked**, never looking the name up a second time, so a name that
changes its answer between the check and the connection (DNS rebinding) cannot point a delivery
at an internal address. The request still carries the name: in the ``Host`` header and, for
https, in the TLS SNI, and the server's certificate is verified against the name.

No redirect is followed (a 3xx is a failed attempt) and the answer's body is read up to 4 KiB and
dropped. ``timeout`` bounds **the whole attempt** (connecting, the TLS handshake, sending and
reading the answer), not each socket operation: before each of them the socket's timeout is set
to the time left, and at the deadline the attempt ends as "no answer", so a receiver that drips
its answer a byte at a time cannot hold a worker. The resolver and the monotonic clock are
injectable (tests): ``(host, port) -> [address text, ...]``.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.domain.errors import InvalidWebhookUrl
from chalicelib.domain.webhook_urls import Target, check_resolved, parse_target
from chalicelib.domain.webhooks import TIMEOUT_SECONDS, Attempt

Resolver = Callable[[str, int], list[str]]
MAX_ANSWER_BYTES = 4096


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), in the resolver's order.

    Raises:
        InvalidWebhookUrl: the name does not resolve.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # gaierror is an OSError
        raise InvalidWebhookUrl(f"url host {host} does not resolve: {exc}") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class _Deadline:
    """The time left before a deadline on a monotonic clock; TimeoutError once it is reached."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._at = clock() + seconds

    def left(self) -> float:
        left = self._at - self._clock()
        if left <= 0:
            raise TimeoutError("the attempt's deadline passed")
        return left


class _DeadlineSocket:
    """A connected socket whose every send and receive waits at most until the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._readers = 0  # like socket.makefile: the socket closes once its readers are closed
        self._closed = False

    def sendall(self, data: Any) -> None:
        self._sock.settimeout(self._deadline.left())
        self._sock.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *_args: object, **_kwargs: object) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.reader_closed()
        super().close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to ``address``, with ``Host`` the URL's host, within ``deadline``."""

    def __init__(self, host: str, port: int, address: str, deadline: _Deadline) -> None:
        super().__init__(host, port)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self._deadline.left())
        self.sock = _DeadlineSocket(raw, self._deadline)  # type: ignore[assignment]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to ``address``, with SNI, ``Host`` and certificate checks for the URL's host, within
    ``deadline``."""

    def __init__(
        self, host: str, port: int, address: str, deadline: _Deadline, tls: ssl.SSLContext
    ) -> None:
        self._tls = tls
        super().__init__(host, port, context=tls)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self._deadline.left())
        raw.settimeout(self._deadline.left())  # the handshake too
        wrapped = self._tls.wrap_socket(raw, server_hostname=self.host)
        self.sock = _DeadlineSocket(wrapped, self._deadline)  # type: ignore[assignment]


class HttpWebhookSender:
    """``services.webhooks.WebhookSender`` over HTTP(S) with the stage's URL policy."""

    def __init__(
        self,
        *,
        allow_loopback: bool,
        resolver: Resolver = system_resolver,
        timeout: float = TIMEOUT_SECONDS,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self.timeout = timeout
        self.clock = clock
        self.tls = tls or ssl.create_default_context()  # the system's CAs, hostname checked

    def _checked(self, url: str) -> tuple[Target, str]:
        target = parse_target(url, allow_loopback=self.allow_loopback)
        needs_lookup = target.literal is None and not target.loopback_exempt
        addresses = self.resolver(target.host, target.port) if needs_lookup else []
        return target, str(check_resolved(target, addresses))

    def check(self, url: str) -> None:
        """Raises InvalidWebhookUrl: we would not send to ``url``."""
        self._checked(url)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        """POST ``body`` to ``url``: the status of the answer, or why there was none (a refused
        URL, no connection, a timeout). Never raises for the receiver's sake."""
        try:
            target, address = self._checked(url)
        except InvalidWebhookUrl as exc:
            return Attempt(None, f"refused: {exc}")
        deadline = _Deadline(self.timeout, self.clock)
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(
                target.host, target.port, address, deadline, self.tls
            )
        else:
            connection = _PinnedHTTPConnection(target.host, target.port, address, deadline)
        try:
            connection.request(
                "POST",
                target.path,
                body=body,
                headers={"Content-Type": "application/json", **headers},
            )
            answer = connection.getresponse()
            answer.read(MAX_ANSWER_BYTES)
            answer.close()  # with the connection's close below, the socket closes now
            return Attempt(answer.status, None if 200 <= answer.status < 300 else "non-2xx")
        except TimeoutError:
            return Attempt(None, f"no answer within {self.timeout:g} s")
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            return Attempt(None, f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            connection.close()
