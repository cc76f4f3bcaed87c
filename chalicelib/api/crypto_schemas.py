"""Request bodies of the crypto deposit routes. Imported on first use (see requests.py)."""

from __future__ import annotations

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import CryptoCurrency


class AddressRequest(RequestBody):
    # Taken as sent: the domain names the rule a bad one breaks (unsupported_currency); the
    # document lists the crypto currencies.
    currency: CryptoCurrency
