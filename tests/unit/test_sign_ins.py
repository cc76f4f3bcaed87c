"""The sign-in alert rule (``domain/sign_ins.py``): new, known, expired, bounded."""

from __future__ import annotations

from chalicelib.domain import sign_ins
from chalicelib.domain.sign_ins import (
    DEVICE,
    IP,
    baseline,
    check_sign_in,
    describe_device,
    device_of,
    entry_key,
)

NOW = 1_790_000_000
DAY = 24 * 3600


def test_the_first_sign_in_is_recorded_and_not_new():
    check = check_sign_in(None, "usr_1", "198.51.100.1", "Firefox/128.0", NOW)
    assert not check.is_new
    assert check.store is not None
    assert len(check.store) == 2


def test_known_entries_are_not_new_and_written_again_only_after_a_day():
    first = check_sign_in(None, "usr_1", "198.51.100.1", "Firefox/128.0", NOW).store
    again = check_sign_in(first, "usr_1", "198.51.100.1", "Firefox/128.0", NOW + 3600)
    assert (again.is_new, again.store) == (False, None)
    later = check_sign_in(first, "usr_1", "198.51.100.1", "Firefox/128.0", NOW + DAY)
    assert not later.is_new
    assert set(later.store.values()) == {NOW + DAY}


def test_new_ip_new_device_and_both():
    known = check_sign_in(None, "usr_1", "198.51.100.1", "Firefox/128.0", NOW).store
    assert check_sign_in(known, "usr_1", "198.51.100.2", "Firefox/128.0", NOW).what == "ip"
    assert check_sign_in(known, "usr_1", "198.51.100.1", "Chrome/120.0", NOW).what == "device"
    assert check_sign_in(known, "usr_1", "198.51.100.2", None, NOW).what == "ip,device"
    assert not check_sign_in(known, "usr_1", "198.51.100.1", "Firefox/129.1", NOW).is_new


def test_entries_expire_after_90_days_and_an_empty_map_is_not_a_first_sign_in():
    known = check_sign_in(None, "usr_1", "198.51.100.1", "Firefox/128.0", NOW).store
    late = NOW + sign_ins.KNOWN_FOR_SECONDS + 1
    check = check_sign_in(known, "usr_1", "198.51.100.1", "Firefox/128.0", late)
    assert check.what == "ip,device"
    assert check_sign_in({}, "usr_1", "198.51.100.1", None, NOW).what == "ip,device"


def test_the_map_is_bounded_per_kind_keeping_the_most_recent():
    known = None
    for i in range(sign_ins.MAX_ENTRIES_PER_KIND + 5):
        known = check_sign_in(known, "usr_1", f"198.51.100.{i}", f"Agent {chr(65 + i)}", NOW + i)
        known = known.store
    assert len(known) == 2 * sign_ins.MAX_ENTRIES_PER_KIND
    assert min(known.values()) == NOW + 5


def test_entries_are_per_user_hashes_and_devices_mask_versions():
    a = check_sign_in(None, "usr_1", "198.51.100.1", "X", NOW).store
    b = check_sign_in(None, "usr_2", "198.51.100.1", "X", NOW).store
    assert not set(a) & set(b)
    assert "198.51.100.1" not in "".join(a)
    assert device_of("Chrome/120.0.6099.71") == device_of("Chrome/121.0.6167.85")
    assert device_of(None) == device_of("  ") == sign_ins.UNKNOWN_DEVICE


def test_a_change_is_also_given_entry_by_entry():
    old = {entry_key(IP, "usr_1", "10.0.0.1"): NOW - 100 * DAY}
    check = check_sign_in(old, "usr_1", "10.0.0.2", "Firefox/1", NOW)
    assert check.touch == {
        entry_key(IP, "usr_1", "10.0.0.2"): NOW,
        entry_key(DEVICE, "usr_1", device_of("Firefox/1")): NOW,
    }
    assert check.forget == frozenset(old)  # expired
    assert dict(check.store or {}) == dict(check.touch)


def test_the_baseline_is_what_the_user_used():
    seen = baseline("usr_1", [("10.0.0.1", "Firefox/1", NOW - 5), (None, "Firefox/2", NOW)])
    assert seen == {
        entry_key(IP, "usr_1", "10.0.0.1"): NOW - 5,
        entry_key(DEVICE, "usr_1", device_of("Firefox/1")): NOW,
    }
    assert not check_sign_in(seen, "usr_1", "10.0.0.1", "Firefox/9", NOW).is_new
    assert check_sign_in(seen, "usr_1", "10.0.0.9", "Firefox/9", NOW).what == "ip"


def test_a_device_is_described_briefly_and_printably():
    assert describe_device(None) == "unknown device"
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Safari/604.1"
    assert describe_device(iphone) == "Safari on iOS"
    edge = "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36 Edg/120.0"
    assert describe_device(edge) == "Edge on Windows"
    android = "Mozilla/5.0 (Linux; Android 14) Chrome/120.0 Mobile Safari/537.36"
    assert describe_device(android) == "Chrome on Android"
    assert describe_device("curl/8.4.0") == "curl/8.4.0"
    odd = describe_device("x\u202e\n\ty" + "z" * 300)
    assert odd.startswith("x y")
    assert odd.endswith("...")
    assert len(odd) == 80
    assert odd.isascii()
    assert odd.isprintable()
