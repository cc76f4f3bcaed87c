"""Settings, read once from the environment.

Every tunable the code reads lives here, so a deployed stage and the local stack differ only by
environment variables (see README.md for the names).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Settings:
    stage: str
    table_name: str
    region: str
    dynamodb_endpoint: str | None
    platform_shards: int
    max_write_attempts: int

    @property
    def is_local(self) -> bool:
        return self.stage == "local"


def _int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    value = default if raw in (None, "") else int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


@cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings(
        stage=os.environ.get("STAGE", "local"),
        table_name=os.environ.get("TABLE_NAME", "ledger-local"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        dynamodb_endpoint=os.environ.get("DYNAMODB_ENDPOINT") or None,
        platform_shards=_int("PLATFORM_SHARDS", 8, 1),
        max_write_attempts=_int("LEDGER_MAX_WRITE_ATTEMPTS", 8, 1),
    )
