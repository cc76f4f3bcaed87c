"""Who may call a route. Every protected route is decorated with ``protected`` (any signed-in,
active user), ``admin_only`` (role admin *and* a token obtained with a TOTP code) or
``facility_only`` (a facility's API key with the route's scope); a test walks the app's routes to
make sure no ``/v1`` route outside ``PUBLIC_ROUTES`` lacks one.

A user route refuses a facility API key (``fk_...``) as unauthenticated; a facility route refuses
a user's access token as forbidden (API.md, "Facilities")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.api import response_headers
from chalicelib.api.dependencies import (
    get_api_key_repository,
    get_auth_service,
    get_bound_settings,
    request_reads,
)
from chalicelib.domain.api_keys import SECRET_PREFIX, Scope
from chalicelib.domain.errors import Forbidden, RateLimited, Unauthenticated

if TYPE_CHECKING:  # the auth service (and its JWT library) loads on the first protected call
    from chalicelib.auth.tokens import AccessClaims
    from chalicelib.services.api_keys import FacilityCaller
    from chalicelib.services.auth import Principal

ACCESS_MARK = "_ledger_access"
PUBLIC_ROUTES = {
    "/v1/auth/signup",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/v1/auth/email/verify",
    "/v1/webhooks/stripe",
    "/v1/webhooks/crypto",
}

ACCESS_DEFERRED = "_ledger_access_deferred"


class _Caller:
    """The verified token of this request, and the principal once the table was read.

    A route marked ``ACCESS_DEFERRED`` (``replayable``) names the other items it will read
    before the principal is resolved, so they come back in the same batch read; it resolves the
    principal itself before anything else can fail.
    """

    def __init__(self, claims: AccessClaims) -> None:
        self.claims = claims
        self._principal: Principal | None = None

    def resolve(self) -> Principal:
        if self._principal is None:
            self._principal = get_auth_service().principal_for(self.claims)
        return self._principal


_caller: ContextVar[_Caller | None] = ContextVar("caller", default=None)


def _current_caller() -> _Caller:
    caller = _caller.get()
    if caller is None:  # a route used current_principal() without a decorator: a bug
        raise RuntimeError("route is not decorated with protected/admin_only")
    return caller


def current_principal() -> Principal:
    """The caller as stored now (reads the user and login on first use)."""
    return _current_caller().resolve()


def current_user_id() -> str:
    """The caller's user id as the verified token names it (reads nothing)."""
    return _current_caller().claims.user_id


ReadAhead = Callable[[Any, str], None]  # (request, caller's user id): names items to read


def _guard(
    blueprint: Blueprint, *, admin: bool, read_ahead: ReadAhead | None = None
) -> Callable[[Callable[..., Any]], Callable]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        deferred = not admin and getattr(view, ACCESS_DEFERRED, False)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = blueprint.current_request
            authorization = request.headers.get("authorization")
            if _bearer(authorization).startswith(SECRET_PREFIX):
                raise Unauthenticated("an API key cannot call this route: it takes a user's token")
            auth = get_auth_service()
            caller = _Caller(auth.verify_access(authorization))
            with request_reads():
                if read_ahead is not None:  # read with the caller's user and login, below
                    read_ahead(request, caller.claims.user_id)
                if not deferred:
                    principal = caller.resolve()
                    if admin:
                        principal.require_admin()
                token = _caller.set(caller)
                try:
                    return view(*args, **kwargs)
                finally:
                    _caller.reset(token)

        setattr(wrapper, ACCESS_MARK, "admin" if admin else "user")
        return wrapper

    return decorate


def protected(
    blueprint: Blueprint, read_ahead: ReadAhead | None = None
) -> Callable[[Callable[..., Any]], Callable]:
    """Decorator factory: ``@protected(bp)`` below ``@bp.route(...)``.

    ``read_ahead(request, user_id)`` may name items the view will read first, so that they are
    fetched in the same batch read as the caller's user and login.
    """
    return _guard(blueprint, admin=False, read_ahead=read_ahead)


def admin_only(blueprint: Blueprint) -> Callable[[Callable[..., Any]], Callable]:
    return _guard(blueprint, admin=True)


def _bearer(authorization: str | None) -> str:
    """The credentials of ``Authorization: Bearer <credentials>``, or "" when there are none."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


_facility: ContextVar[FacilityCaller | None] = ContextVar("facility", default=None)


def current_facility() -> FacilityCaller:
    """The facility calling a ``facility_only`` route, with the key it presented."""
    caller = _facility.get()
    if caller is None:  # a route used current_facility() without facility_only: a bug
        raise RuntimeError("route is not decorated with facility_only")
    return caller


def _authenticate_facility(authorization: str | None) -> FacilityCaller:
    """The facility of the API key presented, counted against its key's rate limit; the limit
    headers are set for the answer, whatever it is.

    Raises:
        Unauthenticated: no credentials, or not a valid, active key of ours.
        Forbidden: a user's valid access token.
        RateLimited: the key used up this minute's requests.
    """
    from chalicelib.services import api_keys

    secret = _bearer(authorization)
    if not secret:
        raise Unauthenticated("an API key is required: Authorization: Bearer <api key secret>")
    if not secret.startswith(SECRET_PREFIX):
        get_auth_service().verify_access(authorization)  # Unauthenticated unless a user's token
        raise Forbidden("a user's access token cannot call a facility route: use an API key")
    settings = get_bound_settings()
    try:
        caller = api_keys.authenticate(
            get_api_key_repository(),
            secret,
            default_limit=settings.facility_rate_limit_per_minute,
        )
    except RateLimited as exc:
        response_headers.add({"X-RateLimit-Limit": str(exc.limit), "X-RateLimit-Remaining": "0"})
        raise
    response_headers.add(
        {"X-RateLimit-Limit": str(caller.limit), "X-RateLimit-Remaining": str(caller.remaining)}
    )
    return caller


def facility_only(blueprint: Blueprint, scope: str) -> Callable[[Callable[..., Any]], Callable]:
    """Decorator factory: ``@facility_only(bp, scope="read")`` below ``@bp.route(...)``: the
    caller presents an active API key of a facility that has ``scope``."""
    needed = Scope(scope)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from chalicelib.services import api_keys

            request = blueprint.current_request
            caller = _authenticate_facility(request.headers.get("authorization"))
            api_keys.require_scope(caller, needed)
            token = _facility.set(caller)
            try:
                return view(*args, **kwargs)
            finally:
                _facility.reset(token)

        setattr(wrapper, ACCESS_MARK, "facility")
        return wrapper

    return decorate
