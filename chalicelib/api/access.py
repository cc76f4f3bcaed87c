"""Who may call a route. Every protected route is decorated with ``protected`` (any signed-in,
active user) or ``admin_only`` (role admin *and* a token obtained with a TOTP code); a test walks
the app's routes to make sure no ``/v1`` route outside ``PUBLIC_ROUTES`` lacks one."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.api.dependencies import get_auth_service

if TYPE_CHECKING:  # the auth service (and its JWT library) loads on the first protected call
    from chalicelib.services.auth import Principal

ACCESS_MARK = "_ledger_access"
PUBLIC_ROUTES = {
    "/v1/auth/signup",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/v1/webhooks/stripe",
    "/v1/webhooks/crypto",
}

_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:  # a route used current_principal() without a decorator: a bug
        raise RuntimeError("route is not decorated with protected/admin_only")
    return principal


def _guard(blueprint: Blueprint, *, admin: bool) -> Callable[[Callable[..., Any]], Callable]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            headers = blueprint.current_request.headers
            principal = get_auth_service().authenticate(headers.get("authorization"))
            if admin:
                principal.require_admin()
            token = _principal.set(principal)
            try:
                return view(*args, **kwargs)
            finally:
                _principal.reset(token)

        setattr(wrapper, ACCESS_MARK, "admin" if admin else "user")
        return wrapper

    return decorate


def protected(blueprint: Blueprint) -> Callable[[Callable[..., Any]], Callable]:
    """Decorator factory: ``@protected(bp)`` below ``@bp.route(...)``."""
    return _guard(blueprint, admin=False)


def admin_only(blueprint: Blueprint) -> Callable[[Callable[..., Any]], Callable]:
    return _guard(blueprint, admin=True)
