"""Outbound webhooks over HTTP, behind the SSRF rules of ``domain/webhook_urls.py``.

``HttpWebhookSender.check`` resolves an endpoint's host and refuses the URL unless every address
is public (at registration); ``post`` does the same check again at each delivery and then
connects to **the address it checked**, never looking the name up a second time, so a name that
changes its answer between the check and the connection (DNS rebinding) cannot point a delivery
at an internal address. The request still carries the name: in the ``Host`` header and, for
https, in the TLS SNI, and the server's certificate is verified against the name.

No redirect is followed (a 3xx is a failed attempt), the answer's body is read up to 4 KiB and
dropped, and each socket operation waits at most ``timeout`` seconds. The resolver is injectable
(tests): ``(host, port) -> [address text, ...]``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable, Mapping

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


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to ``address``, with ``Host`` the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to ``address``, with SNI, ``Host`` and certificate checks for the URL's host."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, tls: ssl.SSLContext
    ) -> None:
        self._tls = tls
        super().__init__(host, port, timeout=timeout, context=tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class HttpWebhookSender:
    """``services.webhooks.WebhookSender`` over HTTP(S) with the stage's URL policy."""

    def __init__(
        self,
        *,
        allow_loopback: bool,
        resolver: Resolver = system_resolver,
        timeout: float = TIMEOUT_SECONDS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self.timeout = timeout
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
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(
                target.host, target.port, address, self.timeout, self.tls
            )
        else:
            connection = _PinnedHTTPConnection(target.host, target.port, address, self.timeout)
        try:
            connection.request(
                "POST",
                target.path,
                body=body,
                headers={"Content-Type": "application/json", **headers},
            )
            answer = connection.getresponse()
            answer.read(MAX_ANSWER_BYTES)
            return Attempt(answer.status, None if 200 <= answer.status < 300 else "non-2xx")
        except TimeoutError:
            return Attempt(None, f"no answer within {self.timeout:g} s")
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            return Attempt(None, f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            connection.close()
