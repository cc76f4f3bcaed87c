"""Request bodies of the crypto deposit routes. Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Any

from chalicelib.api.auth_schemas import RequestBody


class AddressRequest(RequestBody):
    currency: Any  # the domain names the rule a bad one breaks (unsupported_currency)
