"""Which URLs a facility may have us POST to (SSRF rules; API.md, "Facilities").

A deployed stage sends webhooks only to ``https`` URLs whose host is, or resolves only to, public
addresses: never to this network's private ranges, loopback, link-local (the cloud's instance
metadata at 169.254.169.254), multicast, reserved or unspecified addresses, carrier-grade NAT
(100.64.0.0/10), IPv6 unique-local or link-local addresses, nor an IPv6 address that embeds one of
those IPv4 addresses (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4, Teredo). The
local and test stages also take ``http(s)://127.0.0.1:<port>`` (a receiver on the same machine).

These are the rules, pure; the adapter (``adapters/webhook_http.py``) resolves the name, applies
``address_refusal`` to every address, and connects to the address it checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.domain.errors import InvalidWebhookUrl

MAX_URL_LENGTH = 2048
LOOPBACK_HOST = "127.0.0.1"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A URL taken apart: where to connect and what to ask for."""

    scheme: str  # http | https
    host: str  # the name (or literal address) for the Host header and TLS SNI
    port: int
    path: str  # path and query, at least "/"
    literal: IPAddress | None  # the host, when it is an address
    loopback_exempt: bool  # the local stages' 127.0.0.1 receiver


def _v4_inside(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the embedding forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why we will not connect to ``address`` (a short reason), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        inside = _v4_inside(address)
        if inside is not None:
            reason = address_refusal(inside)
            return f"it embeds {inside}, {reason}" if reason else None
        if address.scope_id:
            return "it is a scoped (link-local) address"
    if address.is_unspecified:
        return "it is the unspecified address"
    if address.is_loopback:
        return "it is a loopback address"
    if address.is_link_local:
        return "it is a link-local address"
    if address.is_multicast:
        return "it is a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "it is a carrier-grade NAT address (100.64.0.0/10)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "it is a site-local address"
    if address.is_private:
        return "it is a private address"
    if address.is_reserved:
        return "it is a reserved address"
    if not address.is_global:
        return "it is not a public address"
    return None


def parse_target(url: object, *, allow_loopback: bool) -> Target:
    """``url`` taken apart, if its shape is one we send to (the addresses are checked apart).

    Raises:
        InvalidWebhookUrl: not a string, too long, not http(s), userinfo, no host, a bad port, a
            fragment, plain http outside the local stages' loopback receiver, or a literal
            address that is not public.
    """
    if not isinstance(url, str) or not url:
        raise InvalidWebhookUrl("url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or not url.isascii():
        raise InvalidWebhookUrl("url must be ASCII without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl(f"url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidWebhookUrl("url must be an https URL")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("url must not carry a user name or password")
    if parts.fragment or url.endswith("#"):
        raise InvalidWebhookUrl("url must not have a fragment (#...)")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise InvalidWebhookUrl("url must name a host")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if not _valid_name(host):
            raise InvalidWebhookUrl(f"url host {host!r} is not a valid host name") from None
    exempt = allow_loopback and host == LOOPBACK_HOST and port is not None
    if scheme == "http" and not exempt:
        raise InvalidWebhookUrl("url must be an https URL")
    if literal is not None and not exempt:
        reason = address_refusal(literal)
        if reason:
            raise InvalidWebhookUrl(f"url host {host} is not allowed: {reason}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        path=path,
        literal=literal,
        loopback_exempt=exempt,
    )


def _valid_name(host: str) -> bool:
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2:  # a single label is a local name
        return False
    return all(
        0 < len(label) <= 63
        and not label.startswith("-")
        and not label.endswith("-")
        and all(c.isalnum() or c == "-" for c in label)
        for label in labels
    )


def check_resolved(target: Target, addresses: list[str]) -> IPAddress:
    """The address to connect to, once every address the host resolves to is public.

    Raises:
        InvalidWebhookUrl: no address, or one that is not public (a name that resolves to both a
            public and a private address is refused: the next lookup could give either).
    """
    if target.loopback_exempt:
        return ipaddress.IPv4Address(LOOPBACK_HOST)
    if target.literal is not None:
        return target.literal
    parsed: list[IPAddress] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise InvalidWebhookUrl(f"url host {target.host} resolves to {text!r}") from None
        reason = address_refusal(address)
        if reason:
            raise InvalidWebhookUrl(
                f"url host {target.host} resolves to {address}, which is not allowed: {reason}"
            )
        parsed.append(address)
    if not parsed:
        raise InvalidWebhookUrl(f"url host {target.host} does not resolve to any address")
    return parsed[0]
