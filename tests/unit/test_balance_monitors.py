"""Balance monitors' use cases (``services/monitors.py``) on the in-memory repository: creation
rules, and the check that pages once per crossing and once per recovery, also when two checks
run at once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from chalicelib.domain.accounts import PlatformAccount, PlatformKind
from chalicelib.domain.errors import (
    AccountNotFound,
    InvalidAmount,
    InvalidRequest,
    MonitorNotFound,
    UnsupportedCurrency,
)
from chalicelib.domain.monitors import (
    DEFAULT_MONITOR_ID,
    MonitorCondition,
    MonitorState,
    parse_threshold,
)
from chalicelib.services import monitors
from tests.memory.monitors import MemoryMonitorRepository

CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, "USD")


class Balances:
    def __init__(self) -> None:
        self.platforms: dict[PlatformAccount, int] = {}
        self.accounts: dict[str, tuple[str, int]] = {"acct_alice_usd": ("USD", 50_00)}

    def account_balance(self, account_id: str) -> tuple[str, int] | None:
        return self.accounts.get(account_id)

    def platform_balance(self, platform: PlatformAccount) -> int:
        return self.platforms.get(platform, 0)


class Pager:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = False

    def publish(self, subject: str, message: str) -> bool:
        if self.down:
            raise RuntimeError("SNS is down")
        self.sent.append((subject, message))
        return True


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    return MemoryMonitorRepository(), Balances(), Pager()


def create(repo, balances, **fields):  # type: ignore[no-untyped-def]
    values = {
        "account_id": None,
        "platform": None,
        "currency": None,
        "condition": "below",
        "amount": "0",
        "name": None,
        "admin_id": "usr_admin",
        "ip": "198.51.100.1",
    }
    values.update(fields)
    return monitors.create_monitor(repo, balances, **values)


def check(repo, balances, pager):  # type: ignore[no-untyped-def]
    return monitors.check_monitors(repo, balances, pager)


def actions(repo) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.action for e in repo.events]


def test_a_platform_monitor_and_an_account_monitor_are_created_ok_and_audited(world):
    repo, balances, _ = world
    m = create(repo, balances, platform="fx_pool", currency="BTC", amount="-1.5", condition="below")
    assert (m.platform, m.currency, m.threshold, m.state) == (
        PlatformKind.FX_POOL,
        "BTC",
        -150_000_000,
        MonitorState.OK,
    )
    a = create(repo, balances, account_id="acct_alice_usd", condition="above", amount="1000")
    assert (a.account_id, a.currency, a.threshold, a.enabled) == (
        "acct_alice_usd",
        "USD",
        1000_00,
        True,
    )
    assert a.name == "account acct_alice_usd above 1000"
    assert actions(repo) == ["monitor.created", "monitor.created"]
    assert repo.events[0].actor_id == "usr_admin"
    assert repo.events[0].details["threshold"] == "-1.50000000"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, InvalidRequest),  # neither
        ({"account_id": "acct_alice_usd", "platform": "fees", "currency": "USD"}, InvalidRequest),
        ({"platform": "stripe_clearing"}, InvalidRequest),  # no currency
        ({"platform": "bank", "currency": "USD"}, InvalidRequest),
        ({"platform": "fees", "currency": "EUR"}, UnsupportedCurrency),
        ({"platform": "fees", "currency": "USD", "condition": "equals"}, InvalidRequest),
        ({"platform": "fees", "currency": "USD", "amount": "1.234"}, InvalidAmount),
        ({"platform": "fees", "currency": "USD", "amount": "12e3"}, InvalidAmount),
        ({"platform": "fees", "currency": "USD", "amount": "0.000"}, InvalidAmount),
        ({"account_id": "acct_nobody"}, AccountNotFound),
        ({"account_id": "acct_alice_usd", "currency": "BTC"}, InvalidRequest),
        ({"account_id": "plat_fees_USD_00"}, InvalidRequest),
        ({"platform": "fees", "currency": "USD", "name": ""}, InvalidRequest),
    ],
)
def test_bad_monitors_are_refused_and_nothing_is_written(world, fields, error):
    repo, balances, _ = world
    with pytest.raises(error):
        create(repo, balances, **fields)
    assert repo.monitors == {}
    assert repo.events == []


def test_thresholds_are_signed_decimal_strings_zero_included():
    assert parse_threshold("0", "USD") == 0
    assert parse_threshold("-0.00", "USD") == 0
    assert parse_threshold("-12.5", "USD") == -1250
    assert parse_threshold("0.00000001", "BTC") == 1


def test_the_out_of_the_box_monitor_is_created_once_by_the_check(world):
    repo, balances, pager = world
    check(repo, balances, pager)
    check(repo, balances, pager)
    default = repo.get(DEFAULT_MONITOR_ID)
    assert (default.platform, default.currency, default.condition, default.threshold) == (
        PlatformKind.STRIPE_CLEARING,
        "USD",
        MonitorCondition.ABOVE,
        0,
    )
    assert actions(repo) == ["monitor.created"]
    assert repo.events[0].actor_id is None
    assert pager.sent == []


def test_stripe_clearing_below_zero_in_the_ledger_is_normal_above_zero_pages(world):
    """Deposits make clearing negative (the money Stripe holds for users): fine. Above zero the
    ledger has paid out through Stripe more than it took in: it owes Stripe."""
    repo, balances, pager = world
    balances.platforms[CLEARING] = -10_000_00
    check(repo, balances, pager)
    assert pager.sent == []
    balances.platforms[CLEARING] = 1
    check(repo, balances, pager)
    [(subject, message)] = pager.sent
    assert subject.startswith("Ledger monitor crossed: Stripe clearing")
    assert "0.01 USD" in message


def test_a_crossing_pages_once_while_it_lasts_and_its_recovery_once(world):
    repo, balances, pager = world
    m = create(repo, balances, platform="fees", currency="USD", condition="below", amount="-100")
    balances.platforms[PlatformAccount(PlatformKind.FEES, "USD")] = -150_00
    first = check(repo, balances, pager)
    second = check(repo, balances, pager)
    assert first.crossed == [m.id]
    assert (second.crossed, second.recovered) == ([], [])
    assert repo.get(m.id).state is MonitorState.CROSSED
    assert [s for s, _ in pager.sent] == [f"Ledger monitor crossed: {m.name}"]
    balances.platforms[PlatformAccount(PlatformKind.FEES, "USD")] = -100_00  # not below -100
    assert check(repo, balances, pager).recovered == [m.id]
    check(repo, balances, pager)
    assert [s.split(":")[0] for s, _ in pager.sent] == [
        "Ledger monitor crossed",
        "Ledger monitor recovered",
    ]
    assert [a for a in actions(repo) if a != "monitor.created"] == [
        "monitor.crossed",
        "monitor.recovered",
    ]
    crossed = next(e for e in repo.events if e.action == "monitor.crossed")
    assert crossed.details["balance"] == "-150.00"
    assert crossed.target == m.id


def test_a_monitor_already_past_its_threshold_pages_on_the_first_check(world):
    repo, balances, pager = world
    m = create(repo, balances, account_id="acct_alice_usd", condition="below", amount="100")
    assert m.state is MonitorState.OK
    assert check(repo, balances, pager).crossed == [m.id]


def test_a_disabled_monitor_is_not_checked_and_disabling_twice_writes_once(world):
    repo, balances, pager = world
    m = create(repo, balances, account_id="acct_alice_usd", condition="below", amount="100")
    off = monitors.disable_monitor(repo, m.id, admin_id="usr_admin", ip=None)
    again = monitors.disable_monitor(repo, m.id, admin_id="usr_other", ip=None)
    assert (off.enabled, again.disabled_by) == (False, "usr_admin")
    assert actions(repo).count("monitor.disabled") == 1
    assert check(repo, balances, pager).crossed == []
    with pytest.raises(MonitorNotFound):
        monitors.disable_monitor(repo, "mon_nope", admin_id="usr_admin", ip=None)


def test_two_checks_that_read_the_same_crossing_page_once(world):
    """Both runs read the monitors (state ok) before either stores the change: the barrier in
    the balance read holds each run there until the other has read too."""
    repo, balances, pager = world
    m = create(repo, balances, platform="fees", currency="USD", condition="above", amount="0")
    check(repo, balances, pager)  # the out-of-the-box monitor exists from here on
    balances.platforms[PlatformAccount(PlatformKind.FEES, "USD")] = 1_00
    both_read = threading.Barrier(2)

    class Racing(Balances):
        def platform_balance(self, platform: PlatformAccount) -> int:
            if platform.kind is PlatformKind.FEES:
                both_read.wait()
            return balances.platform_balance(platform)

    reports: list = []
    runs = [
        threading.Thread(target=lambda: reports.append(check(repo, Racing(), pager)))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    outcomes = sum((r.outcomes for r in reports), Counter())
    assert (outcomes[monitors.CROSSED], outcomes[monitors.LOST_RACE]) == (1, 1)
    assert len(pager.sent) == 1
    assert actions(repo).count("monitor.crossed") == 1
    assert repo.get(m.id).state is MonitorState.CROSSED


def test_an_alert_the_topic_refuses_fails_the_run_after_every_monitor_was_checked(world):
    repo, balances, pager = world
    a = create(repo, balances, platform="fees", currency="USD", condition="above", amount="0")
    b = create(repo, balances, account_id="acct_alice_usd", condition="below", amount="100")
    balances.platforms[PlatformAccount(PlatformKind.FEES, "USD")] = 1
    pager.down = True
    logged: list = []
    with pytest.raises(monitors.AlertNotSent, match=a.id):
        monitors.check_monitors(repo, balances, pager, log=lambda *a, **k: logged.append(k))
    assert repo.get(a.id).state is repo.get(b.id).state is MonitorState.CROSSED
    assert any("alert" in line and a.id in line["alert"] for line in logged)


def test_an_alert_the_topic_refused_is_published_by_the_next_check_once(world):
    repo, balances, pager = world
    a = create(repo, balances, platform="fees", currency="USD", condition="above", amount="0")
    balances.platforms[PlatformAccount(PlatformKind.FEES, "USD")] = 1
    pager.down = True
    with pytest.raises(monitors.AlertNotSent, match=a.id):
        check(repo, balances, pager)
    assert repo.get(a.id).alert_pending
    with pytest.raises(monitors.AlertNotSent, match=a.id):  # still down: still pending
        check(repo, balances, pager)
    pager.down = False
    check(repo, balances, pager)
    assert [subject for subject, _ in pager.sent] == [f"Ledger monitor crossed: {a.name}"]
    assert "balance is 0.01 USD" in pager.sent[0][1]  # the balance of the stored change
    assert not repo.get(a.id).alert_pending
    check(repo, balances, pager)
    assert len(pager.sent) == 1
    assert actions(repo).count("monitor.crossed") == 1  # one change, paged once it could be


def test_a_pending_alert_of_a_monitor_disabled_since_is_still_published(world):
    repo, balances, pager = world
    a = create(repo, balances, platform="fees", currency="USD", condition="above", amount="0")
    balances.platforms[PlatformAccount(PlatformKind.FEES, "USD")] = 1
    pager.down = True
    with pytest.raises(monitors.AlertNotSent):
        check(repo, balances, pager)
    monitors.disable_monitor(repo, a.id, admin_id="usr_admin", ip=None)
    pager.down = False
    check(repo, balances, pager)
    assert [subject for subject, _ in pager.sent] == [f"Ledger monitor crossed: {a.name}"]
    assert not repo.get(a.id).alert_pending
