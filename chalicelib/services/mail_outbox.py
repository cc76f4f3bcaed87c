"""Sending the mails requests asked for, outside those requests.

A request that wants a mail (a sign-up's verification, a resend, a password reset) writes an
outbox item and answers; this job sends them: the deployed stage's ``deliver_mail`` function
every minute, the local stack every second. Each mail is leased before it is sent, so two runs
never send one mail twice at once; a mail whose sending fails is tried again on the next run,
and given up after ``MAX_ATTEMPTS`` (logged). What a mail says, its token and its hourly limit
are the auth service's (``AuthService.deliver``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from chalicelib.domain.users import OutboxMail

MAX_ATTEMPTS = 5
LEASE_SECONDS = 120


class Outbox(Protocol):
    def pending(self, now: int, limit: int = ...) -> list[OutboxMail]: ...
    def lease(self, mail: OutboxMail, now: int, seconds: int) -> bool: ...
    def done(self, mail: OutboxMail) -> None: ...
    def failed(self, mail: OutboxMail) -> None: ...


def deliver_pending(
    outbox: Outbox,
    deliver: Callable[[OutboxMail], str],
    *,
    log: Callable[..., None] = lambda *_a, **_k: None,
    clock: Callable[[], float] = time.time,
    limit: int = 100,
) -> Counter:
    """Send up to ``limit`` waiting mails; returns how many ended how."""
    outcomes: Counter = Counter()
    now = int(clock())
    for mail in outbox.pending(now, limit):
        if not outbox.lease(mail, now, LEASE_SECONDS):
            outcomes["leased_elsewhere"] += 1
            continue
        try:
            outcome = deliver(mail)
        except Exception as exc:  # a mailer's failure: try again next run, up to MAX_ATTEMPTS
            if mail.attempts + 1 >= MAX_ATTEMPTS:
                log("mail given up", mail_id=mail.id, kind=mail.kind.value, error=repr(exc))
                outbox.done(mail)
                outcomes["given_up"] += 1
            else:
                outbox.failed(mail)
                outcomes["failed"] += 1
            continue
        outbox.done(mail)
        outcomes[outcome] += 1
    return outcomes
