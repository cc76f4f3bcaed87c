"""The ``X-Signature`` scheme, one for both directions: the crypto gateway signs the webhooks it
sends us with it (API.md, "Deposits and provider webhooks"), and we sign the webhooks we send
facilities with it (API.md, "Outbound webhooks"):

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<raw body>"`` under ``secret``."""
    message = f"{timestamp}.".encode() + raw_body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The ``X-Signature`` header value for ``raw_body`` signed at ``timestamp``."""
    return f"t={timestamp},v1={signature(secret, timestamp, raw_body)}"
