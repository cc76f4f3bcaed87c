"""Headers a route's guard sets for its answer, whatever the answer turns out to be.

A facility route's answer carries its key's rate-limit headers on success and on every error
after authentication, and an error is answered by the middleware, not the route. The middleware
opens one ``collecting()`` per request; the guard ``add``s; the middleware puts the collected
headers on the response it sends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

_pending: ContextVar[dict[str, str] | None] = ContextVar("response_headers", default=None)


def add(headers: Mapping[str, str]) -> None:
    """Put ``headers`` on this request's response (nothing outside a ``collecting()``)."""
    pending = _pending.get()
    if pending is not None:
        pending.update(headers)


@contextmanager
def collecting() -> Iterator[dict[str, str]]:
    """The headers added while the block runs."""
    pending: dict[str, str] = {}
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)
