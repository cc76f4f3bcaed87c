"""The deployed stages' secrets: one Secrets Manager secret, a JSON object of strings.

A deployed function gets ``SECRETS_ARN`` (the secret's ARN, set by the packaged template) and no
secret in its environment. The secret holds the same names the local stack reads from environment
variables (``JWT_SIGNING_KEYS``, ``STRIPE_API_KEY``, ``STRIPE_WEBHOOK_SECRET``,
``CRYPTO_WEBHOOK_SECRET``, ``CRYPTO_ADDRESS_SECRET``, ``WEBHOOK_SECRET_KEY``), so
``chalicelib.config`` asks for a name and does not care where it comes from.

Why this shape:

- read lazily, at the first request that needs a secret, not at import: a cold start that serves
  ``/health`` or a token check with cached keys pays nothing for it, and botocore is imported only
  here (boto3 never: it adds ~100 ms of import for nothing botocore cannot do);
- read once per container and kept: one ``GetSecretValue`` per cold start, not per request.
  Rotating a secret therefore reaches a function when its containers are replaced (a deploy, or
  Lambda recycling them); JWT keys rotate without downtime because several kids verify at once
  (docs/deploy.md, "Rotating secrets");
- one secret rather than one per value: one call, one IAM resource, one thing to restore.

Nothing here logs or puts a secret value in an exception message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

_cache: dict[str, Mapping[str, str]] = {}
_lock = threading.Lock()


class SecretStoreError(RuntimeError):
    """The secret could not be read or is not a JSON object of strings (never says its value)."""


def secret_values(secret_id: str, region: str) -> Mapping[str, str]:
    """The secret's ``{name: value}``, fetched on the first call for this id, then cached.

    Raises:
        SecretStoreError: Secrets Manager refused or failed, or the value is not a JSON object
            of strings. Nothing is cached then: the next call tries again.
    """
    with _lock:
        values = _cache.get(secret_id)
        if values is None:
            values = _cache[secret_id] = _fetch(secret_id, region)
        return values


def clear_cache() -> None:
    """Forget every fetched secret (tests; a long-lived process after a rotation)."""
    with _lock:
        _cache.clear()


def _fetch(secret_id: str, region: str) -> Mapping[str, str]:
    import botocore.exceptions
    import botocore.session

    client = botocore.session.get_session().create_client("secretsmanager", region_name=region)
    try:
        raw = client.get_secret_value(SecretId=secret_id).get("SecretString")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise SecretStoreError(f"cannot read secret {secret_id}: {type(exc).__name__}") from None
    return _parse(secret_id, raw)


def _parse(secret_id: str, raw: Any) -> Mapping[str, str]:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise SecretStoreError(f"secret {secret_id} is not a JSON object of strings")
    return dict(data)
