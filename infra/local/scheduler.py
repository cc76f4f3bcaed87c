"""The local stack's scheduler: what the deployed stage's scheduled functions do
(``chalicelib/api/jobs.py``), on short intervals, so that a mail or a webhook leaves a moment
after the request that caused it.

``JOBS`` lists each job (a plain function of ``chalicelib.api.jobs``, by name) and its interval
in seconds; another periodic job is one more line there. The jobs run one after the other in one
loop: a job is run when its interval has passed since its last run began, and a failing run (the
DynamoDB process restarting) is printed and tried again at its next turn.

Started by the API's front (``infra.local.stack --serve api``) as a process of its own, with the
API's environment; it stops when the front does.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

TICK_SECONDS = 0.2


@dataclass(frozen=True)
class Job:
    name: str  # a function of chalicelib.api.jobs that takes no argument
    interval: float  # seconds between the starts of two runs


JOBS: tuple[Job, ...] = (
    Job("deliver_waiting_mail", 1.0),  # deployed: deliver_mail, every minute
    Job("run_webhook_delivery", 1.0),  # deployed: deliver_webhooks, every minute
    Job("run_payment_request_expiry", 30.0),  # deployed: expire_payment_requests, 15 minutes
    Job("run_review_expiry", 30.0),  # deployed: expire_reviews, hourly
    Job("run_hold_sweeper", 30.0),  # deployed: sweep_holds, hourly
    Job("run_balance_monitors", 30.0),  # deployed: balance_monitors, 5 minutes (alerts printed)
    Job("run_payroll_finisher", 30.0),  # deployed: finish_payrolls, 5 minutes
)


def _function(name: str) -> Callable[[], object]:
    return getattr(importlib.import_module("chalicelib.api.jobs"), name)


def run(
    parent_pid: int,
    jobs: tuple[Job, ...] = JOBS,
    *,
    alive: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``jobs`` on their intervals while the parent process lives (or ``alive()`` says so)."""
    still_alive = alive or (lambda: os.getppid() == parent_pid)
    functions = {job.name: _function(job.name) for job in jobs}
    last_start: dict[str, float] = {}
    while still_alive():
        for job in jobs:
            now = clock()
            if now - last_start.get(job.name, float("-inf")) < job.interval:
                continue
            last_start[job.name] = now
            try:
                functions[job.name]()
            except Exception:  # tried again at its next turn
                traceback.print_exc()
        sleep(TICK_SECONDS)


if __name__ == "__main__":  # python -m infra.local.scheduler <parent pid>
    run(int(sys.argv[1]))
