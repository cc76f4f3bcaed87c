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
- Sign-up records the sign-up's own IP and device (``baseline``): what the user has used. A
  user of before this feature (no map at all) starts from the IPs and devices of their live
  logins; with none, their first sign-in is not new (there is nothing to compare it with) and it
  becomes the first entries. A map that exists but whose entries all expired is compared with as
  usual: after 90 days away the user is alerted.
- ``last seen`` is refreshed at most once a day per entry, so the usual sign-in (same IP, same
  device, within a day) changes nothing and writes nothing more.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


def baseline(user_id: str, seen: Iterable[tuple[str | None, str | None, int]]) -> dict[str, int]:
    """The known-devices map of what a user has used: ``(ip, user agent, when)`` triples (the
    sign-up's request, or the user's live logins), the most recent of each kind kept."""
    entries: dict[str, int] = {}
    for ip, user_agent, at in seen:
        keys = [entry_key(DEVICE, user_id, device_of(user_agent))]
        if ip:
            keys.append(entry_key(IP, user_id, ip))
        for key in keys:
            entries[key] = max(int(at), entries.get(key, 0))
    return _bounded(entries)


@dataclass(frozen=True)
class SignInCheck:
    """What a sign-in found: whether its IP and device are new, and the map to store (None when
    the stored one can stay as it is). ``touch`` (entries to set) and ``forget`` (entries to
    drop) are the same change entry by entry, so that parallel sign-ins do not overwrite each
    other's entries."""

    new_ip: bool
    new_device: bool
    store: Mapping[str, int] | None
    touch: Mapping[str, int] = field(default_factory=dict)
    forget: frozenset[str] = frozenset()

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
    store = _bounded(kept) if changed else None
    return SignInCheck(
        new_ip=not first and any(k.startswith(IP + "_") for k in new),
        new_device=not first and any(k.startswith(DEVICE + "_") for k in new),
        store=store,
        touch={key: now for key in seen} if changed else {},
        forget=frozenset(stored) - frozenset(store) if store is not None else frozenset(),
    )


def _bounded(entries: dict[str, int]) -> dict[str, int]:
    """At most ``MAX_ENTRIES_PER_KIND`` of each kind, the most recently seen."""
    result: dict[str, int] = {}
    for kind in (IP, DEVICE):
        mine = [(t, k) for k, t in entries.items() if k.startswith(kind + "_")]
        for seen_at, key in sorted(mine, reverse=True)[:MAX_ENTRIES_PER_KIND]:
            result[key] = seen_at
    return result


DEVICE_DESCRIPTION_MAX = 80
# Checked in order: Edge and Opera also name Chrome, Chrome also names Safari.
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(?:OPR|Opera)/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/")),
    ("Safari", re.compile(r"\bSafari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(?:iPhone|iPad|iPod)\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


def describe_device(user_agent: str | None) -> str:
    """A short description of a user agent for a mail: "Firefox on Linux" when the browser and
    the system are recognised, else the header as printable ASCII, at most
    ``DEVICE_DESCRIPTION_MAX`` characters; "unknown device" without one. The header is chosen
    by whoever signed in, so the mail never repeats it whole."""
    text = (user_agent or "").strip()
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(text)), None)
    if browser and system:
        return f"{browser} on {system}"
    printable = " ".join(_NOT_PRINTABLE.sub(" ", text).split())
    if not printable:
        return UNKNOWN_DEVICE
    if len(printable) > DEVICE_DESCRIPTION_MAX:
        return printable[: DEVICE_DESCRIPTION_MAX - 3] + "..."
    return printable
