"""Request bodies of ``/v1/fx/*``. Imported on first use (see requests.py).

Currencies and the amount are taken as sent (``Any``) so that the domain names the exact rule a
bad one breaks (``unsupported_currency``, ``invalid_amount``), as in money_schemas.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from chalicelib.api.auth_schemas import RequestBody


class NewQuote(RequestBody):
    from_currency: Any
    to_currency: Any
    from_amount: Any


class NewSwap(RequestBody):
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
