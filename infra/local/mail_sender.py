"""The local stack's mail sender: what the deployed stage's ``deliver_mail`` function does every
minute (``chalicelib/api/jobs.py``), every second, so that a verification or reset mail is in
the mail folder a moment after the request that asked for it.

Started by the API's front (``infra.local.stack --serve api``) as a process of its own, with the
API's environment; it stops when the front does.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

INTERVAL_SECONDS = 1.0


def run(parent_pid: int, interval: float = INTERVAL_SECONDS) -> None:
    from chalicelib.api.jobs import deliver_waiting_mail

    while os.getppid() == parent_pid:
        try:
            deliver_waiting_mail()
        except Exception:  # a failing run (DynamoDB restarting) is tried again next second
            traceback.print_exc()
        time.sleep(interval)


if __name__ == "__main__":  # python -m infra.local.mail_sender <parent pid>
    run(int(sys.argv[1]))
