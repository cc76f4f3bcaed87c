"""Where a reconciliation started by an admin runs (``reconciliation.RunStarter``): never in the
request that asked for it, which API Gateway cuts at 29 s.

- ``LambdaRunStarter``: deployed, an asynchronous invocation (``InvocationType=Event``) of the
  stage's ``reconciliation_run`` function (15 minutes), named by ``RECONCILIATION_FUNCTION``;
- ``ThreadRunStarter``: the local stack and the tests, a thread of the API's own process (a
  local worker keeps running after it has answered, as a warm Lambda container would not).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any


class LambdaRunStarter:
    def __init__(self, function_name: str, region: str) -> None:
        self.function_name = function_name
        self.region = region

    def start(self, day: str, run_id: str) -> None:
        import boto3

        boto3.client("lambda", region_name=self.region).invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps({"date": day, "run_id": run_id}).encode(),
        )


class ThreadRunStarter:
    def __init__(self, work: Callable[[str, str], Any]) -> None:
        self._work = work

    def start(self, day: str, run_id: str) -> None:
        threading.Thread(
            target=self._run, args=(day, run_id), name=f"reconciliation-{day}", daemon=True
        ).start()

    def _run(self, day: str, run_id: str) -> None:
        from aws_lambda_powertools import Logger

        logger = Logger(child=True)  # the process's logger (chalicelib.api.log), as a child
        try:
            self._work(day, run_id)
        except Exception:  # the marker says failed (run_started); the log says why
            logger.exception("reconciliation run failed", date=day, run_id=run_id)
