"""Balance monitors (``domain/monitors.py``; docs/risk.md, "Balance monitors"): admins create,
list and disable them; ``check_monitors`` (the ``balance_monitors`` job, every 5 minutes) reads
each enabled monitor's balance and pages the operators once per crossing.

A state change is one conditional write (``state`` still the one read, the monitor still enabled)
with its audit event: of two runs that see the same crossing, one stores it and alerts, the other
finds the condition false and does nothing. The alert goes out after the change is stored; if
the alert topic refuses it, the run logs the alert's text and fails (the function's errors alarm).

The out-of-the-box monitor (Stripe clearing above zero, ``domain.monitors.default_monitor``) is
created by the check itself when it is missing, with a fixed id and ``attribute_not_exists``, so
concurrent runs create it once; a disabled one stays disabled (it exists).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.domain.accounts import PLATFORM_PREFIX, PlatformAccount, PlatformKind
from chalicelib.domain.errors import (
    AccountNotFound,
    InvalidRequest,
    MonitorNotFound,
    VersionConflict,
)
from chalicelib.domain.money import currency as currency_of
from chalicelib.domain.money import format_amount
from chalicelib.domain.monitors import (
    DEFAULT_MONITOR_ID,
    MAX_NAME_LENGTH,
    BalanceMonitor,
    MonitorCondition,
    MonitorPage,
    MonitorState,
    default_monitor,
    new_monitor_id,
    parse_threshold,
)
from chalicelib.domain.users import AuditEvent
from chalicelib.services import metrics
from chalicelib.services.alerts import Alerts

CROSSED = "crossed"
RECOVERED = "recovered"
UNCHANGED = "unchanged"
LOST_RACE = "changed_elsewhere"
NO_ACCOUNT = "account_missing"


class MonitorRepository(Protocol):
    """``adapters.dynamo.monitor_repository.DynamoMonitorRepository`` (and tests/memory)."""

    def create(self, monitor: BalanceMonitor, event: AuditEvent) -> None:
        """The monitor and its audit event in one write. Raises VersionConflict (id taken,
        nothing written)."""
        ...

    def get(self, monitor_id: str) -> BalanceMonitor | None: ...

    def page(self, limit: int, cursor: str | None) -> MonitorPage:
        """Monitors, oldest first. Raises ValueError (a cursor of another query)."""
        ...

    def all(self) -> list[BalanceMonitor]:
        """Every monitor, enabled or not (an operator's handful)."""
        ...

    def disable(self, monitor: BalanceMonitor, event: AuditEvent) -> None:
        """Store ``monitor`` (disabled) and the event, if the stored one is still enabled.
        Raises VersionConflict (nothing written)."""
        ...

    def change_state(
        self, monitor: BalanceMonitor, expected: MonitorState, event: AuditEvent
    ) -> bool:
        """Store ``monitor``'s new state, its alert pending, and the event, if the stored monitor
        is enabled and still in ``expected``; False (nothing written) otherwise."""
        ...

    def alert_sent(self, monitor: BalanceMonitor) -> None:
        """The alert of ``monitor``'s last state change was published: clear it, unless the
        stored monitor changed state since."""
        ...


class Balances(Protocol):
    def account_balance(self, account_id: str) -> tuple[str, int] | None:
        """The currency and posted balance of a stored account, or None."""
        ...

    def platform_balance(self, platform: PlatformAccount) -> int:
        """The sum of the platform account's shards."""
        ...


@dataclass(frozen=True)
class LedgerBalances:
    """``Balances`` read through the ledger engine (``services.ledger.LedgerService``)."""

    ledger: Any

    def account_balance(self, account_id: str) -> tuple[str, int] | None:
        account = self.ledger.repository.get_account(account_id)
        return (account.currency, account.posted) if account is not None else None

    def platform_balance(self, platform: PlatformAccount) -> int:
        return int(self.ledger.platform_balance(platform))


def _invalid(field_name: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, [{"field": field_name, "message": message}])


def create_monitor(
    monitors: MonitorRepository,
    balances: Balances,
    *,
    account_id: str | None,
    platform: str | None,
    currency: Any,
    condition: str,
    amount: Any,
    name: str | None,
    admin_id: str,
    ip: str | None,
) -> BalanceMonitor:
    """A new monitor, ``ok`` until the next check (which alerts if the balance is already past
    the threshold); the monitor and its audit event in one write.

    Raises:
        InvalidRequest: neither or both of ``account_id`` and ``platform``; an unknown platform
            or condition; a platform shard's id as ``account_id``; a currency that is not the
            account's; a bad name.
        AccountNotFound: no account has ``account_id``.
        UnsupportedCurrency, InvalidAmount: the currency or the threshold amount.
    """
    if (account_id is None) == (platform is None):
        raise _invalid("account_id", "give either account_id, or platform and currency")
    try:
        watched = MonitorCondition(condition)
    except ValueError as exc:
        raise _invalid("condition", "condition must be below or above") from exc
    kind: PlatformKind | None = None
    if account_id is not None:
        if currency is not None:
            currency_of(currency)  # an unknown currency is unsupported_currency, whoever's account
        if account_id.startswith(PLATFORM_PREFIX + "_"):
            raise _invalid("account_id", "a platform account is watched by platform and currency")
        found = balances.account_balance(account_id)
        if found is None:
            raise AccountNotFound(account_id)
        code = found[0]
        if currency is not None and currency != code:
            raise _invalid("currency", f"account {account_id} holds {code}")
    else:
        try:
            kind = PlatformKind(platform)
        except ValueError as exc:
            known = ", ".join(k.value for k in PlatformKind)
            raise _invalid("platform", f"platform must be one of {known}") from exc
        if currency is None:
            raise _invalid("currency", "a platform monitor needs its currency")
        code = currency_of(currency).code
    threshold = parse_threshold(amount, code)
    at = now_iso()
    target = f"platform {kind.value} {code}" if kind else f"account {account_id}"
    label = name if name is not None else f"{target} {watched.value} {amount}"[:MAX_NAME_LENGTH]
    monitor = BalanceMonitor(
        id=new_monitor_id(),
        name=label,
        currency=code,
        condition=watched,
        threshold=threshold,
        created_at=at,
        created_by=admin_id,
        account_id=account_id,
        platform=kind,
    )
    monitors.create(monitor, _event("monitor.created", monitor, at, admin_id, ip))
    return monitor


def _event(
    action: str, monitor: BalanceMonitor, at: str, actor: str | None, ip: str | None, **more: str
) -> AuditEvent:
    return AuditEvent.new(
        action,
        at=at,
        actor_id=actor,
        target=monitor.id,
        ip=ip,
        name=monitor.name,
        watches=monitor.target,
        condition=monitor.condition.value,
        threshold=format_amount(monitor.threshold, monitor.currency),
        currency=monitor.currency,
        **more,
    )


def list_monitors(monitors: MonitorRepository, limit: int, cursor: str | None) -> MonitorPage:
    """Raises InvalidRequest (a cursor this list did not give)."""
    try:
        return monitors.page(limit, cursor)
    except ValueError as exc:
        raise _invalid("cursor", "the cursor is not valid for this list") from exc


def disable_monitor(
    monitors: MonitorRepository, monitor_id: str, *, admin_id: str, ip: str | None
) -> BalanceMonitor:
    """Stop checking a monitor (it stays listed); audited. Disabling a disabled monitor answers
    it as it is and writes nothing.

    Raises:
        MonitorNotFound: no such monitor.
    """
    found = monitors.get(monitor_id)
    if found is None:
        raise MonitorNotFound(f"monitor {monitor_id} does not exist")
    if not found.enabled:
        return found
    at = now_iso()
    disabled = found.disabled(admin_id, at)
    try:
        monitors.disable(disabled, _event("monitor.disabled", found, at, admin_id, ip))
    except VersionConflict:  # disabled meanwhile by someone else: answer what is stored
        return monitors.get(monitor_id) or disabled
    return disabled


@dataclass
class CheckReport:
    outcomes: Counter = field(default_factory=Counter)
    crossed: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    alert_failures: list[str] = field(default_factory=list)


class AlertNotSent(RuntimeError):
    """The alert topic refused one or more monitor alerts (their text is in the log)."""


def check_monitors(
    monitors: MonitorRepository,
    balances: Balances,
    alerts: Alerts,
    *,
    clock: Callable[[], str] = now_iso,
    log: Callable[..., None] = lambda *_a, **_k: None,
) -> CheckReport:
    """One check of every enabled monitor (module docstring). Returns what happened.

    Raises:
        AlertNotSent: after every monitor was checked, if an alert could not be published.
    """
    report = CheckReport()
    found = monitors.all()
    if not any(m.id == DEFAULT_MONITOR_ID for m in found):
        found.append(_ensure_default(monitors, clock()))
    for monitor in found:
        if monitor.alert_pending:
            # An earlier run stored this state change but the topic refused its alert (or the
            # run ended first): publish it now, before anything else about this monitor.
            outcome = CROSSED if monitor.state is MonitorState.CROSSED else RECOVERED
            if _publish(monitors, alerts, monitor, monitor.last_balance or 0, outcome, report, log):
                monitor = replace(monitor, alert_pending=False)
        if not monitor.enabled:
            continue
        balance = _balance(balances, monitor)
        if balance is None:
            report.outcomes[NO_ACCOUNT] += 1
            log("balance monitor: its account is gone", monitor_id=monitor.id)
            continue
        at = clock()
        changed = monitor.after(balance, at)
        if changed is None:
            report.outcomes[UNCHANGED] += 1
            continue
        outcome = CROSSED if changed.state is MonitorState.CROSSED else RECOVERED
        event = _event(
            f"monitor.{outcome}",
            monitor,
            at,
            None,
            None,
            balance=format_amount(balance, monitor.currency),
        )
        if not monitors.change_state(changed, monitor.state, event):
            report.outcomes[LOST_RACE] += 1  # another run stored (and announced) it
            continue
        report.outcomes[outcome] += 1
        (report.crossed if outcome == CROSSED else report.recovered).append(monitor.id)
        metrics.count(
            metrics.BALANCE_MONITOR_CROSSED
            if outcome == CROSSED
            else metrics.BALANCE_MONITOR_RECOVERED,
            monitor_id=monitor.id,
        )
        _publish(monitors, alerts, changed, balance, outcome, report, log)
    if report.alert_failures:
        raise AlertNotSent(f"alerts not published for {', '.join(report.alert_failures)}")
    return report


def _publish(
    monitors: MonitorRepository,
    alerts: Alerts,
    monitor: BalanceMonitor,
    balance: int,
    outcome: str,
    report: CheckReport,
    log: Callable[..., None],
) -> bool:
    """Publish the alert of ``monitor``'s stored state change and clear it as pending; True
    when published. A refused alert stays pending (the next check publishes it again) and is
    reported and logged."""
    subject, message = _alert(monitor, balance, outcome)
    try:
        sent = alerts.publish(subject, message)
    except Exception:  # the change is stored: the alert must not be lost silently
        report.alert_failures.append(monitor.id)
        log("balance monitor alert not published", monitor_id=monitor.id, alert=message)
        return False
    if not sent:
        log("balance monitor alert (no ALERT_TOPIC_ARN)", monitor_id=monitor.id, alert=message)
    monitors.alert_sent(monitor)
    return True


def _balance(balances: Balances, monitor: BalanceMonitor) -> int | None:
    platform = monitor.platform_account
    if platform is not None:
        return balances.platform_balance(platform)
    found = balances.account_balance(monitor.account_id or "")
    return found[1] if found is not None else None


def _ensure_default(monitors: MonitorRepository, at: str) -> BalanceMonitor:
    monitor = default_monitor(at)
    try:
        monitors.create(monitor, _event("monitor.created", monitor, at, None, None, by="system"))
    except VersionConflict:  # a concurrent run created it first
        return monitors.get(DEFAULT_MONITOR_ID) or monitor
    return monitor


def _alert(monitor: BalanceMonitor, balance: int, outcome: str) -> tuple[str, str]:
    amount = format_amount(balance, monitor.currency)
    threshold = format_amount(monitor.threshold, monitor.currency)
    if outcome == CROSSED:
        subject = f"Ledger monitor crossed: {monitor.name}"
        line = (
            f"{monitor.target} balance is {amount} {monitor.currency}, "
            f"{monitor.condition.value} the threshold {threshold}."
        )
    else:
        subject = f"Ledger monitor recovered: {monitor.name}"
        line = (
            f"{monitor.target} balance is back to {amount} {monitor.currency}, no longer "
            f"{monitor.condition.value} the threshold {threshold}."
        )
    details = {
        "monitor_id": monitor.id,
        "name": monitor.name,
        "watches": monitor.target,
        "condition": monitor.condition.value,
        "threshold": threshold,
        "balance": amount,
        "currency": monitor.currency,
        "state": monitor.state.value,
        "at": monitor.state_changed_at,
    }
    return subject, line + "\n\n" + json.dumps(details, sort_keys=True, indent=2)
