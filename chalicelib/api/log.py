"""The process's structured logger: aws-lambda-powertools ``Logger``, one JSON object per line.

The service name comes from ``POWERTOOLS_SERVICE_NAME`` and the level from ``POWERTOOLS_LOG_LEVEL``
(or ``LOG_LEVEL``). While a request is handled, the HTTP middleware appends its ``request_id`` to
every line (thread-safe keys: ``chalice local`` serves requests on threads). Powertools' Tracer is
deliberately not used: it imports aws_xray_sdk, about 300 ms of cold start.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger()
