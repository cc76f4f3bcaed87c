"""The Chalice app class of the ledger: Chalice, plus views whose exceptions reach the middleware.

Chalice turns any exception a view raises, other than its own ``ChaliceViewError``s, into a bare
500 *before* HTTP middleware sees it; only ``ChaliceUnhandledError`` is let through
(aws/chalice#1884). The domain cannot subclass a Chalice class, so every route registered on this
app, from any blueprint, is wrapped to carry its exception past Chalice as ``ViewRaised`` (with the
original as ``__cause__``). ``chalicelib.api.middleware`` then maps it through the one error table.
``ChaliceViewError``s (``BadRequestError``...) still go through Chalice, whose
``{"Code", "Message"}`` responses the middleware rewrites.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chalice import Chalice, ChaliceUnhandledError, ChaliceViewError


class ViewRaised(ChaliceUnhandledError):
    """A view raised ``__cause__``; carried to the middleware instead of Chalice's generic 500."""


def surface_exceptions(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a view so that what it raises reaches the HTTP middleware."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except (ChaliceViewError, ChaliceUnhandledError):
            raise
        except Exception as exc:
            raise ViewRaised(type(exc).__name__) from exc

    return wrapper


class LedgerChalice(Chalice):
    """Chalice with every route's view wrapped by ``surface_exceptions``."""

    def _register_route(self, name: str, user_handler: Any, kwargs: Any, **unused: Any) -> None:
        super()._register_route(
            name=name, user_handler=surface_exceptions(user_handler), kwargs=kwargs, **unused
        )
