"""``/v1/auth/*`` and ``/v1/me`` (API.md, "Auth"): parse, call the auth service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import current_principal, protected
from chalicelib.api.dependencies import get_auth_service
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.api.views import user_view

auth = Blueprint(__name__)

ACCEPTED = responses.Accepted(status="accepted").body()  # a mail is sent, or not (no telling)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import auth_schemas

    return auth_schemas


def tokens_view(pair: Any) -> dict[str, Any]:
    return responses.TokenPair(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    ).body()


@auth.route("/v1/auth/signup", methods=["POST"])
def sign_up() -> Response:
    body = parse_body(auth.current_request, schemas().SignUp)
    request = auth.current_request
    user = get_auth_service().sign_up(
        body.email,
        body.password,
        body.accept_terms is True,
        source_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return Response(responses.UserAnswer(user=user_view(user)).body(), status_code=201)


@auth.route("/v1/auth/login", methods=["POST"])
def login() -> dict[str, Any]:
    body = parse_body(auth.current_request, schemas().Login)
    request = auth.current_request
    pair = get_auth_service().login(
        body.email,
        body.password,
        body.totp_code,
        source_ip(request),
        request.headers.get("user-agent"),
    )
    return tokens_view(pair)


@auth.route("/v1/auth/refresh", methods=["POST"])
def refresh() -> dict[str, Any]:
    body = parse_body(auth.current_request, schemas().RefreshToken)
    pair = get_auth_service().refresh(body.refresh_token, source_ip(auth.current_request))
    return tokens_view(pair)


@auth.route("/v1/auth/logout", methods=["POST"])
def logout() -> Response:
    body = parse_body(auth.current_request, schemas().RefreshToken)
    get_auth_service().logout(body.refresh_token, source_ip(auth.current_request))
    return Response(body="", status_code=204)


@auth.route("/v1/auth/mfa/totp/setup", methods=["POST"])
@protected(auth)
def totp_setup() -> dict[str, str]:
    body = parse_body(auth.current_request, schemas().PasswordOnly)
    secret, uri = get_auth_service().start_totp_setup(
        current_principal(), body.password, source_ip(auth.current_request)
    )
    return responses.TotpSetup(secret=secret, otpauth_uri=uri).body()


@auth.route("/v1/auth/mfa/totp/confirm", methods=["POST"])
@protected(auth)
def totp_confirm() -> dict[str, Any]:
    body = parse_body(auth.current_request, schemas().TotpCode)
    codes = get_auth_service().confirm_totp(
        current_principal(), body.code, source_ip(auth.current_request)
    )
    return responses.MfaOn(mfa_enabled=True, recovery_codes=codes).body()


@auth.route("/v1/auth/mfa/totp/disable", methods=["POST"])
@protected(auth)
def totp_disable() -> dict[str, Any]:
    body = parse_body(auth.current_request, schemas().PasswordAndCode)
    get_auth_service().disable_totp(
        current_principal(), body.password, body.code, source_ip(auth.current_request)
    )
    return responses.MfaOff(mfa_enabled=False).body()


@auth.route("/v1/auth/email/verify", methods=["POST"])
def verify_email() -> dict[str, Any]:
    body = parse_body(auth.current_request, schemas().VerifyToken)
    user = get_auth_service().verify_email(body.token, source_ip(auth.current_request))
    return responses.UserAnswer(user=user_view(user)).body()


@auth.route("/v1/auth/email/verify/resend", methods=["POST"])
@protected(auth)
def resend_verification() -> Response:
    parse_body(auth.current_request, schemas().RequestBody)  # no fields: anything sent is refused
    get_auth_service().request_verification_mail(
        current_principal(), source_ip(auth.current_request)
    )
    return Response(ACCEPTED, status_code=202)


@auth.route("/v1/auth/password/forgot", methods=["POST"])
def forgot_password() -> Response:
    body = parse_body(auth.current_request, schemas().Forgot)
    get_auth_service().forgot_password(body.email, source_ip(auth.current_request))
    return Response(ACCEPTED, status_code=202)


@auth.route("/v1/auth/password/reset", methods=["POST"])
def reset_password() -> Response:
    body = parse_body(auth.current_request, schemas().Reset)
    get_auth_service().reset_password(
        body.token, body.new_password, source_ip(auth.current_request)
    )
    return Response(body="", status_code=204)


@auth.route("/v1/me", methods=["GET"])
@protected(auth)
def me() -> dict[str, Any]:
    return responses.UserAnswer(user=user_view(current_principal().user)).body()


def session_view(session: Any, current_id: str) -> responses.Session:
    return responses.Session(
        id=session.id,
        created_at=_iso_ms(session.created_at),
        last_used_at=_iso_ms(session.last_used_at or session.created_at),
        ip=session.ip,
        user_agent=session.user_agent,
        mfa=session.mfa,
        current=session.id == current_id,
    )


def _iso_ms(epoch_ms: int) -> str:
    from datetime import UTC, datetime

    from chalicelib.adapters.clock import to_iso

    return to_iso(datetime.fromtimestamp(epoch_ms / 1000, UTC))


@auth.route("/v1/me/sessions", methods=["GET"])
@protected(auth)
def list_sessions() -> dict[str, Any]:
    from chalicelib.api.accounts import parse_list_query
    from chalicelib.domain.errors import InvalidRequest

    query = parse_list_query(auth.current_request.query_params)
    principal = current_principal()
    found = get_auth_service().live_sessions(principal)  # newest first; a user has few
    start = 0
    if query.cursor is not None:
        ids = [s.id for s in found]
        if query.cursor not in ids:
            raise InvalidRequest("cursor is not valid for this list")
        start = ids.index(query.cursor) + 1
    page = found[start : start + query.limit]
    more = start + query.limit < len(found)
    return responses.SessionPage(
        data=[session_view(s, principal.session.id) for s in page],
        next_cursor=page[-1].id if more and page else None,
    ).body()


@auth.route("/v1/me/sessions/{session_id}/revoke", methods=["POST"])
@protected(auth)
def revoke_session(session_id: str) -> Response:
    parse_body(auth.current_request, schemas().RequestBody)  # no fields: anything sent is refused
    get_auth_service().revoke_login(
        current_principal(), session_id, source_ip(auth.current_request)
    )
    return Response(body="", status_code=204)
