"""Sign-in alerts: is this sign-in from an IP or a device the user has not used lately? No I/O.

A user's profile keeps a small map of what they signed in from (``User.known_devices``): one
entry per IP address and one per device, each ``<kind>_<hash> -> last seen`` (epoch seconds).

- The device is the ``User-Agent`` with its version numbers masked (``Chrome/120.0.1`` and
  ``Chrome/121.0.3`` are one device), so that a browser update is not a "new device".
- Entries are hashes (SHA-256 of the kind, the user id and the value, 64 bits kept): the profile
  stays small, and holds no address or user agent in clear (the login's own item and audit
  event have them).
- An entry not seen for ``KNOWN_FOR_SECONDS`` (90 days) is forgotten; at most
  ``MAX_ENTRIES_PER_KIND`` of each kind are kept, the most recently seen.
- A sign-in whose IP or device has no entry is *new*: it is audited and mailed to the user.
- The very first sign-in of a user (no map at all: a new account, or one of before this
  feature) is not new: there is nothing to compare it with, and it becomes the first entries.
  A map that exists but whose entries all expired is compared with as usual: after 90 days away
  the user is alerted.
- ``last seen`` is refreshed at most once a day per entry, so the usual sign-in (same IP, same
  device, within a day) changes nothing and writes nothing more.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

KNOWN_FOR_SECONDS = 90 * 24 * 3600
MAX_ENTRIES_PER_KIND = 10
REFRESH_AFTER_SECONDS = 24 * 3600
IP = "ip"
DEVICE = "ua"
_VERSION_NUMBERS = re.compile(r"\d+")
UNKNOWN_DEVICE = "unknown device"


def device_of(user_agent: str | None) -> str:
    """The device a user agent names: the string, trimmed, with every number masked."""
    text = (user_agent or "").strip()
    return _VERSION_NUMBERS.sub("0", text) if text else UNKNOWN_DEVICE


def entry_key(kind: str, user_id: str, value: str) -> str:
    digest = hashlib.sha256(f"{kind}\x1f{user_id}\x1f{value}".encode()).hexdigest()[:16]
    return f"{kind}_{digest}"


@dataclass(frozen=True)
class SignInCheck:
    """What a sign-in found: whether its IP and device are new, and the map to store (None when
    the stored one can stay as it is)."""

    new_ip: bool
    new_device: bool
    store: Mapping[str, int] | None

    @property
    def is_new(self) -> bool:
        return self.new_ip or self.new_device

    @property
    def what(self) -> str:
        """``ip``, ``device`` or ``ip,device``: what was new."""
        return ",".join(n for n, on in (("ip", self.new_ip), ("device", self.new_device)) if on)


def check_sign_in(
    known: Mapping[str, int] | None,
    user_id: str,
    ip: str | None,
    user_agent: str | None,
    now: int,
) -> SignInCheck:
    """Compare one sign-in with the user's known IPs and devices (module docstring)."""
    first = known is None
    stored = dict(known or {})
    kept = {k: int(t) for k, t in stored.items() if int(t) > now - KNOWN_FOR_SECONDS}
    seen = [entry_key(DEVICE, user_id, device_of(user_agent))]
    if ip:  # a sign-in without an address (an operator's tool) is compared by device only
        seen.append(entry_key(IP, user_id, ip))
    new = {k for k in seen if k not in kept}
    stale = any(now - kept[k] >= REFRESH_AFTER_SECONDS for k in seen if k in kept)
    changed = first or bool(new) or stale or len(kept) != len(stored)
    if changed:
        for key in seen:
            kept[key] = now
    return SignInCheck(
        new_ip=not first and any(k.startswith(IP + "_") for k in new),
        new_device=not first and any(k.startswith(DEVICE + "_") for k in new),
        store=_bounded(kept) if changed else None,
    )


def _bounded(entries: dict[str, int]) -> dict[str, int]:
    """At most ``MAX_ENTRIES_PER_KIND`` of each kind, the most recently seen."""
    result: dict[str, int] = {}
    for kind in (IP, DEVICE):
        mine = [(t, k) for k, t in entries.items() if k.startswith(kind + "_")]
        for seen_at, key in sorted(mine, reverse=True)[:MAX_ENTRIES_PER_KIND]:
            result[key] = seen_at
    return result
