"""Request bodies of the crypto deposit routes. Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chalicelib.api.auth_schemas import RequestBody


class AddressRequest(RequestBody):
    # Taken as sent: the domain names the rule a bad one breaks (unsupported_currency); the
    # document lists the crypto currencies.
    currency: Annotated[Any, Field(json_schema_extra={"enum": ["BTC", "ETH", "USDT"]})]
