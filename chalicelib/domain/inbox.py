"""The webhook inbox's terms: a provider's event as the inbox knows it, and the outcome of an
event recorded before (DESIGN.md, guarantee 5: a redelivered event is a no-op)."""

from __future__ import annotations

from typing import Protocol

DUPLICATE = "duplicate"


class ProviderEvent(Protocol):
    id: str
    type: str
