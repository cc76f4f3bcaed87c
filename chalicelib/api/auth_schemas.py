"""Request bodies of ``/v1/auth/*``. Imported on the first auth request (see requests.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class RequestBody(BaseModel):
    """Base of every request schema: strict types, no unknown fields; strings are kept as sent
    (a password keeps its spaces)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Email = Annotated[str, StringConstraints(min_length=1, max_length=254)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SignUp(RequestBody):
    email: Email
    password: Password
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
    new_password: Password
