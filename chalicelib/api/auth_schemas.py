"""Request bodies of ``/v1/auth/*``. Imported on the first auth request (see requests.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from chalicelib.domain.users import EMAIL_AS_SENT


class RequestBody(BaseModel):
    """Base of every request schema: strict types, no unknown fields; strings are kept as sent
    (a password keeps its spaces)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _whole_number(value: object) -> object:
    """JSON Schema's integer includes 60.0; a strict int field takes it as the 60 it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# On an integer field of a request body: strict, but 60.0 is 60 (as the document's "integer" says).
WHOLE_NUMBER = BeforeValidator(_whole_number)

Email = Annotated[str, StringConstraints(min_length=1, max_length=254)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
# A password being chosen: the service refuses one under 12 characters (400 weak_password); the
# limit is the document's too (passwords.MIN_PASSWORD_LENGTH).
NewPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    Field(json_schema_extra={"minLength": 12}),
]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _signup_rules(schema: dict[str, Any]) -> None:
    """The document says what the code enforces: no account without ``accept_terms: true``
    (the code takes anything and answers ``400 terms_not_accepted``), and an email address as
    ``services.auth.normalize_email`` accepts it (trimmed, ``x@y.z``)."""
    schema["properties"]["accept_terms"] = {"const": True}
    schema["properties"]["email"]["pattern"] = EMAIL_AS_SENT
    schema["required"] = [*schema.get("required", []), "accept_terms"]


class SignUp(RequestBody):
    model_config = ConfigDict(json_schema_extra=_signup_rules)

    email: Email
    password: NewPassword
    accept_terms: bool | None = None


class Login(RequestBody):
    email: Email
    password: Password
    totp_code: Code | None = None


class RefreshToken(RequestBody):
    refresh_token: Secret


class TotpCode(RequestBody):
    code: Code


class PasswordOnly(RequestBody):
    password: Password


class PasswordAndCode(RequestBody):
    password: Password
    code: Code


class VerifyToken(RequestBody):
    token: Secret


class Forgot(RequestBody):
    email: Email


class Reset(RequestBody):
    token: Secret
    new_password: NewPassword
