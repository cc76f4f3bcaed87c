"""Sign-up, login, token refresh and logout, TOTP MFA, password reset, login throttling, and the
check every protected route makes (``authenticate``).

Rules kept here (API.md, "Auth"; DESIGN.md, "Security"):

* emails are unique case-insensitively: an email claim item is written with the user;
* passwords are Argon2id hashes; an unknown email costs the same time as a wrong password;
* access tokens live 15 minutes; refresh tokens are opaque, stored as hashes, and rotate: a used
  one presented again revokes its whole login (reuse detection);
* a TOTP code is accepted once (its time step is recorded with a condition); a recovery code once;
* 5 failed logins for one email (and, separately, ``LOGIN_IP_LIMIT`` for one IP) within 15 minutes
  answer 429 with ``Retry-After``; the counts live in DynamoDB with a TTL;
* a password reset token is single-use, valid 30 minutes, and resetting voids every login;
* every change leaves an audit event, written in the same transaction; no secret is ever in one.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from chalicelib.adapters.clock import to_iso
from chalicelib.adapters.email import Mailer
from chalicelib.auth import passwords, tokens, totp
from chalicelib.config import Settings
from chalicelib.domain.accounts import Account, OwnerType, wallet_id
from chalicelib.domain.errors import (
    AccountSuspended,
    Forbidden,
    InvalidCredentials,
    InvalidRequest,
    InvalidState,
    InvalidToken,
    InvalidTotp,
    MfaRequired,
    SessionNotFound,
    TermsNotAccepted,
    TooManyAttempts,
    TotpSetupCodeWrong,
    Unauthenticated,
    VersionConflict,
    WeakPassword,
)
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.sign_ins import baseline, check_sign_in, describe_device
from chalicelib.domain.users import (
    EMAIL_ADDRESS,
    AuditEvent,
    MailKind,
    OutboxMail,
    ResetToken,
    Role,
    Session,
    User,
    UserPage,
    UserStatus,
    VerificationToken,
)
from chalicelib.services import metrics

MAX_EMAIL_LENGTH = 254
MAX_USER_AGENT_LENGTH = 256
# A user id no user has (ids are ``usr_`` + hex): what a login for an unknown email reads.
_NOBODY = "usr_nobody"
_SESSION_ID = re.compile(r"ses_[A-Za-z0-9_]{1,64}")
_EMAIL = re.compile(EMAIL_ADDRESS)
_THROTTLE_ATTEMPTS = 8
_OPEN_ATTEMPTS = 4
# The first back-off (seconds) of a login whose write met a concurrent write of the profile;
# each retry waits a random time up to twice the previous bound.
_OPEN_BACK_OFF = 0.02
# Sign-in alert mails per address and hour; past it the sign-ins are still audited.
SIGN_IN_ALERTS_PER_HOUR = 10


class AuthRepository(Protocol):
    """Users, email claims, logins, reset and verification tokens, login throttles and audit
    events (``adapters.dynamo.auth_repository.DynamoAuthRepository``). Every write that carries
    an ``AuditEvent`` writes it in the same transaction."""

    # -- reads: ``want_*`` name an item read soon, to fetch it in one batch with the others
    def want_user(self, user_id: str) -> None: ...
    def want_session(self, user_id: str, session_id: str) -> None: ...
    def get_user(self, user_id: str) -> User | None: ...
    def user_id_for_email(self, email: str) -> str | None:
        """The id of the user who claimed this email (case-insensitively), or None."""
        ...

    def get_session(self, user_id: str, session_id: str) -> Session | None: ...
    def sessions_of(self, user_id: str) -> list[Session]:
        """Every login of the user, live or not."""
        ...

    def list_users(self, email_prefix: str, limit: int, cursor: str | None) -> UserPage:
        """Users by lower-case email prefix ("" for everyone). Raises ValueError (cursor)."""
        ...

    # -- sign-up and email verification
    def sign_up(
        self,
        user: User,
        accounts: Sequence[Account],
        event: AuditEvent,
        mail: OutboxMail | None = None,
        now: int = 0,
    ) -> None:
        """User, email claim, wallets, audit event and the mail, all or nothing. Raises
        EmailTaken."""
        ...

    def create_verification(self, token_hash: str, user: User, expires_at: int) -> None: ...
    def get_verification(self, token_hash: str) -> VerificationToken | None: ...
    def verify_email(self, token_hash: str, user: User, now: int, event: AuditEvent) -> None:
        """Use the token once (unused, unexpired, the user's) and mark the email verified.
        Raises InvalidToken."""
        ...

    def mark_email_verified(self, user: User, event: AuditEvent) -> None: ...

    # -- logins
    def open_session(
        self,
        session: Session,
        event: AuditEvent,
        *,
        user: User,
        known_devices: Mapping[str, int] | None = None,
        touch_devices: Mapping[str, int] | None = None,
        forget_devices: Collection[str] = (),
        notice: AuditEvent | None = None,
        mail: OutboxMail | None = None,
        now: int = 0,
    ) -> None:
        """The login and its event, with (when given) the user's known devices (the whole new
        map, and the same change entry by entry) and a new sign-in's audit event and mail, in
        one write, only while the profile is as ``user`` was read (its password, status,
        ``sessions_valid_after`` and ``mfa_enabled``). Raises VersionConflict (re-read)."""
        ...

    def rotate_session(
        self, session: Session, presented_hash: str, new_hash: str, now_ms: int
    ) -> None:
        """Replace the current refresh token on the condition that ``presented_hash`` still is
        it. Raises Unauthenticated."""
        ...

    def revoke_session(self, session: Session, event: AuditEvent) -> None: ...

    # -- second factor
    def use_totp_step(self, user: User, step: int) -> None:
        """Record the step as used, on the condition that it is later than the last one.
        Raises InvalidTotp."""
        ...

    def use_recovery_code(self, user: User, code_hash: str) -> None:
        """Strike the code off, on the condition that the user has it. Raises InvalidTotp."""
        ...

    def set_pending_totp(self, user: User, secret: str, event: AuditEvent) -> None: ...
    def enable_mfa(
        self,
        user: User,
        secret: str,
        step: int,
        recovery_hashes: set[str],
        event: AuditEvent,
        *,
        keep: Session,
        now_ms: int,
    ) -> None:
        """Raises InvalidState (changed meanwhile), Unauthenticated (``keep`` revoked)."""
        ...

    def disable_mfa(self, user: User, event: AuditEvent, *, keep: Session, now_ms: int) -> None:
        """Raises InvalidState (off already), Unauthenticated (``keep`` revoked)."""
        ...

    # -- password reset
    def create_reset(
        self, token_hash: str, user_id: str, expires_at: int, event: AuditEvent
    ) -> None: ...
    def get_reset(self, token_hash: str) -> ResetToken | None: ...
    def complete_reset(
        self,
        token_hash: str,
        user: User,
        password_hash: str,
        now: int,
        now_ms: int,
        event: AuditEvent,
    ) -> None:
        """Use the token once (unused, unexpired, the user's), set the password and void every
        login issued before ``now_ms``. Raises InvalidToken."""
        ...

    # -- login throttles
    def recent_failures(self, kind: str, value: str) -> tuple[list[int], int]:
        """The attempt times recorded for one email, and the item's version (0: none)."""
        ...

    def record_failure(
        self, kind: str, value: str, failures: list[int], version: int, expires_at: int
    ) -> None:
        """Store the attempt times if the version is still the one read. Raises
        VersionConflict."""
        ...

    def claim_attempt(
        self, kind: str, value: str, window_start: int, limit: int, expires_at: int
    ) -> bool:
        """Count one attempt in the window with one conditional ADD; False at the limit."""
        ...

    def give_back_attempt(self, kind: str, value: str, window_start: int) -> None: ...
    def clear_failures(self, kind: str, value: str) -> None: ...

    # -- audit
    def append_audit(self, event: AuditEvent) -> None: ...


class Outbox(Protocol):
    """Where requests leave the mails they ask for, and the hourly count per address
    (``adapters.dynamo.outbox_repository.DynamoOutbox``)."""

    def add(self, mail: OutboxMail, now: int) -> None: ...
    def count_mail(self, kind: MailKind, email: str, hour: str, limit: int, now: int) -> bool:
        """Count one more mail of ``kind`` to ``email`` in ``hour``; False at the limit."""
        ...


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int = tokens.ACCESS_TOKEN_TTL_SECONDS
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user as stored now, and what their access token says."""

    user: User
    claims: tokens.AccessClaims
    session: Session
    now: int  # epoch seconds when the principal was read
    admin_mfa_max_age: int = 12 * 3600

    @property
    def mfa(self) -> bool:
        return self.claims.mfa

    def require_admin(self) -> None:
        """Raises Forbidden unless an admin whose login passed a TOTP code within the last
        ``admin_mfa_max_age`` seconds (refreshing the login does not renew it)."""
        passed = self.session.mfa_at
        recent = passed is not None and self.now - passed <= self.admin_mfa_max_age
        if self.user.role is not Role.ADMIN or not self.claims.mfa or not recent:
            raise Forbidden("this route needs an admin who signed in with a TOTP code recently")


def normalize_email(raw: str) -> str:
    """The email as given, trimmed; raises InvalidRequest if it is not an email address."""
    email = raw.strip()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidRequest(
            "email is not a valid address",
            [{"field": "email", "message": "not a valid email address"}],
        )
    return email


def _check_new_password(password: str) -> None:
    if len(password) < passwords.MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            f"password must have at least {passwords.MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > passwords.MAX_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"password must have at most {passwords.MAX_PASSWORD_LENGTH} characters",
            [{"field": "password", "message": "too long"}],
        )


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class AuthService:
    repository: AuthRepository
    settings: Settings
    mailer: Mailer
    outbox: Outbox
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    _keys: tokens.SigningKeys | None = field(default=None, repr=False)

    @property
    def keys(self) -> tokens.SigningKeys:
        if self._keys is None:
            self._keys = tokens.SigningKeys.from_json(
                self.settings.signing_keys_json(), self.settings.jwt_active_kid
            )
        return self._keys

    def _now(self) -> tuple[int, str]:
        moment = self.clock()
        return int(moment), to_iso(datetime.fromtimestamp(moment, UTC))

    def _event(
        self,
        action: str,
        *,
        actor: str | None,
        ip: str | None,
        target: str | None = None,
        **details: str,
    ) -> AuditEvent:
        return AuditEvent.new(
            action, at=self._now()[1], actor_id=actor, target=target, ip=ip, **details
        )

    # -- sign-up --------------------------------------------------------------------------------
    def sign_up(
        self,
        email: str,
        password: str,
        accept_terms: bool,
        ip: str | None,
        *,
        role: Role = Role.USER,
        totp_secret: str | None = None,
        email_verified: bool = False,
        user_agent: str | None = None,
    ) -> User:
        """Create a user with one wallet per supported currency, in one atomic write, with the
        verification mail in the outbox (sent outside the request).

        With ``totp_secret`` the user starts with MFA on, with ``email_verified`` verified (admins
        created by an operator). The sign-up's IP and device (``user_agent``) are the user's
        first known ones (sign-in alerts, docs/risk.md); without either (an operator's tool),
        the first login is the baseline.

        Raises:
            TermsNotAccepted, InvalidRequest (email), WeakPassword, EmailTaken.
        """
        if accept_terms is not True:
            raise TermsNotAccepted("accept_terms must be true")
        email = normalize_email(email)
        _check_new_password(password)
        seconds, now = self._now()
        user = User(
            id=_new_id("usr"),
            email=email,
            password_hash=passwords.hash_password(password),
            role=role,
            status=UserStatus.ACTIVE,
            terms_accepted_at=now,
            created_at=now,
            mfa_enabled=totp_secret is not None,
            totp_secret=totp_secret,
            # Codes from the current time step on are accepted.
            totp_last_step=seconds // totp.TOTP_PERIOD - 2 if totp_secret else 0,
            email_verified=email_verified,
        )
        agent = (user_agent or "")[:MAX_USER_AGENT_LENGTH] or None
        if ip or agent:  # not an operator's tool: the user's own request
            user = replace(user, known_devices=baseline(user.id, [(ip, agent, seconds)]))
        wallets = [
            Account.open(
                wallet_id(OwnerType.USER, user.id, code), code, OwnerType.USER, user.id, now
            )
            for code in CURRENCIES
        ]
        details = {"role": role.value, "mfa": str(user.mfa_enabled)}
        event = self._event("user.signed_up", actor=user.id, ip=ip, target=user.id, **details)
        mail = None if email_verified else self._mail(MailKind.VERIFY_EMAIL, user_id=user.id)
        self.repository.sign_up(user, wallets, event, mail, seconds)
        return user

    def _mail(self, kind: MailKind, **recipient: str | None) -> OutboxMail:
        _, now = self._now()
        return OutboxMail(id=_new_id("mail"), kind=kind, created_at=now, **recipient)

    def create_admin(
        self, email: str, password: str, totp_secret: str | None = None
    ) -> tuple[User, str]:
        """An admin with MFA already on (for ``make create-admin`` and the local stack's seed).

        Returns the user and the TOTP secret to enroll in an authenticator app.
        """
        secret = totp_secret or totp.new_totp_secret()
        user = self.sign_up(
            email, password, True, None, role=Role.ADMIN, totp_secret=secret, email_verified=True
        )
        return user, secret

    # -- login ----------------------------------------------------------------------------------
    def login(
        self,
        email: str,
        password: str,
        totp_code: str | None,
        ip: str | None,
        user_agent: str | None = None,
    ) -> TokenPair:
        """Raises TooManyAttempts, InvalidCredentials, AccountSuspended, MfaRequired,
        InvalidTotp.

        Every attempt is counted against the email's limit *before* anything is checked
        (``_claim_email``): of any number of parallel attempts for one email, at most the limit
        are checked. An attempt that does not fail gives its count back. The IP's limit counts
        failures only, after the fact, so parallel logins of many users from one address (an
        office, a NAT) never contend for it.
        """
        now, _ = self._now()
        email = email.strip() if isinstance(email, str) else ""
        ip_window = self._claim_ip(ip, now)
        if email:
            self._claim_email(email, now)
        user = self._user_by_email_evenly(email)
        if user is None:
            passwords.dummy_verify(password)
            self._failed_login(ip, now, None, "unknown_email")
            raise InvalidCredentials("email or password is wrong")
        if not passwords.verify_password(user.password_hash, password):
            self._failed_login(ip, now, user.id, "wrong_password")
            raise InvalidCredentials("email or password is wrong")
        if user.status is UserStatus.SUSPENDED:
            self._give_back_email(email, now)
            self._give_back_ip(ip, ip_window)
            self.repository.append_audit(
                self._event("auth.login_refused", actor=user.id, ip=ip, reason="suspended")
            )
            raise AccountSuspended("this account is suspended")
        used_mfa = False
        if user.mfa_enabled:
            if not totp_code:
                self._give_back_email(email, now)
                self._give_back_ip(ip, ip_window)
                raise MfaRequired("a TOTP code is required")
            try:
                self._use_second_factor(user, totp_code, now)
            except InvalidTotp:
                self._failed_login(ip, now, user.id, "wrong_totp")
                raise
            used_mfa = True
        self.repository.clear_failures("email", email)
        self._give_back_ip(ip, ip_window)
        return self._open_session(user, used_mfa, ip, now, user_agent)

    def _still_lets_in(self, read: User, mfa: bool, ip: str | None) -> User:
        """The profile as stored now, after the login's write found it changed since ``read``:
        raises what the login answers now, or returns it to try again with.

        Raises:
            InvalidCredentials: the password changed (a reset) since it was checked.
            AccountSuspended: the user was suspended meanwhile.
            MfaRequired: MFA was turned on meanwhile and this login passed no code.
        """
        user = self.repository.get_user(read.id)
        if user is None or user.password_hash != read.password_hash:
            self._failed_login(ip, self._now()[0], read.id, "password_changed")
            raise InvalidCredentials("email or password is wrong")
        if user.status is UserStatus.SUSPENDED:
            self.repository.append_audit(
                self._event("auth.login_refused", actor=user.id, ip=ip, reason="suspended")
            )
            raise AccountSuspended("this account is suspended")
        if user.mfa_enabled and not mfa:
            raise MfaRequired("a TOTP code is required")
        return user

    def _back_off(self, attempt: int) -> None:
        """Wait a random time before the retry number ``attempt`` (1, 2, ...): up to
        ``_OPEN_BACK_OFF`` doubled each time, so retries of racing logins spread out."""
        bound = _OPEN_BACK_OFF * 2 ** (attempt - 1)
        self.sleep(random.uniform(bound / 2, bound))  # noqa: S311 - a delay, not a secret

    def _devices_of_live_logins(self, user: User, now: int) -> dict[str, int]:
        """For a user of before sign-in alerts (no known devices): the IPs and devices of their
        live logins, read once (the map is then stored with the login)."""
        return baseline(
            user.id,
            [
                (s.ip, s.user_agent, max(s.last_used_at, s.created_at) // 1000)
                for s in self.repository.sessions_of(user.id)
                if s.is_live(user, now)
            ],
        )

    def _user_by_email_evenly(self, email: str) -> User | None:
        """The user of an email, with the same reads whether or not it exists (an unknown email
        reads a user item nobody has), so the time of a login does not tell which it was."""
        user_id = self.repository.user_id_for_email(email) if email else None
        user = self.repository.get_user(user_id or _NOBODY)
        return user if user_id is not None else None

    def _use_second_factor(self, user: User, code: str, now: int) -> None:
        if totp.is_recovery_code_shape(code):
            canonical = totp.normalize_recovery_code(code)
            if canonical is None:
                raise InvalidTotp("this recovery code is not valid")
            self.repository.use_recovery_code(user, tokens.hash_secret(canonical))
            return
        step = totp.matching_step(
            user.totp_secret or "", code, now=now, after_step=user.totp_last_step
        )
        if step is None:
            raise InvalidTotp("the code is wrong or was already used")
        self.repository.use_totp_step(user, step)

    def _open_session(
        self, user: User, mfa: bool, ip: str | None, now: int, user_agent: str | None
    ) -> TokenPair:
        session_id = _new_id("ses")
        refresh, refresh_hash = tokens.new_refresh_token(user.id, session_id)
        now_ms = int(self.clock() * 1000)
        session = Session(
            user_id=user.id,
            id=session_id,
            token_hash=refresh_hash,
            used_token_hashes=frozenset(),
            mfa=mfa,
            created_at=now_ms,
            expires_at=now + self.settings.refresh_ttl_seconds,
            valid_from=now_ms,
            mfa_at=now if mfa else None,
            ip=ip,
            user_agent=(user_agent or "")[:MAX_USER_AGENT_LENGTH] or None,
            last_used_at=now_ms,
        )
        seeded: dict[str, int] | None = None
        for attempt in range(_OPEN_ATTEMPTS):
            if attempt:
                # The profile changed (a reset, a suspension, another login's devices) or a
                # concurrent write met this one: nothing was written; decide again on the
                # profile as it is now.
                self._back_off(attempt)
                user = self._still_lets_in(user, mfa, ip)
                now_ms = max(now_ms, int(self.clock() * 1000))
                session = replace(
                    session, created_at=now_ms, valid_from=now_ms, last_used_at=now_ms
                )
            known = user.known_devices
            if known is None:
                if seeded is None:
                    seeded = self._devices_of_live_logins(user, now)
                known = seeded or None
            check = check_sign_in(known, user.id, ip, session.user_agent, now)
            store = check.store
            if user.known_devices is None and store is None:
                store = known  # stored as found, so the live logins are read only once
            notice = mail = None
            if check.is_new:  # audited and mailed with the login itself (docs/risk.md)
                notice = self._event(
                    "auth.new_sign_in",
                    actor=user.id,
                    ip=ip,
                    target=user.id,
                    session=session_id,
                    new=check.what,
                    user_agent=session.user_agent or "",
                )
                mail = self._mail(
                    MailKind.NEW_SIGN_IN, user_id=user.id, ip=ip, user_agent=session.user_agent
                )
            try:
                self.repository.open_session(
                    session,
                    self._event(
                        "auth.login",
                        actor=user.id,
                        ip=ip,
                        session=session_id,
                        mfa=str(mfa),
                        **({"user_agent": session.user_agent} if session.user_agent else {}),
                    ),
                    user=user,
                    known_devices=store,
                    touch_devices=check.touch,
                    forget_devices=check.forget,
                    notice=notice,
                    mail=mail,
                    now=now,
                )
                return self._pair(user, session, refresh, now)
            except VersionConflict:
                if attempt + 1 == _OPEN_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _pair(self, user: User, session: Session, refresh: str, now: int) -> TokenPair:
        access, _ = tokens.issue_access_token(
            self.keys,
            user_id=user.id,
            role=user.role.value,
            mfa=session.mfa,
            session_id=session.id,
            now=now,
        )
        return TokenPair(access_token=access, refresh_token=refresh)

    # -- throttling -----------------------------------------------------------------------------
    def _recent(self, kind: str, value: str, now: int) -> tuple[list[int], int]:
        """The attempt times of one email or IP still inside the window, oldest first, and the
        throttle item's version."""
        failures, version = self.repository.recent_failures(kind, value)
        window = self.settings.login_window_seconds
        return sorted(t for t in failures if t > now - window), version

    def _refuse_at(self, recent: list[int], limit: int, now: int) -> None:
        if len(recent) >= limit:
            window = self.settings.login_window_seconds
            raise TooManyAttempts(max(1, recent[-limit] + window - now))

    def _claim_ip(self, ip: str | None, now: int) -> int | None:
        """Count this attempt against the IP's limit before anything is checked, or raise
        TooManyAttempts; returns the window it was counted in (None without an IP).

        A fixed window of ``login_window_seconds`` and one conditional ``ADD``: parallel
        attempts from one address never contend (an office behind one NAT logs in at once), and
        at most ``login_ip_limit`` attempts per window are checked. Attempts that do not fail
        give their count back, so the limit is on failures (and attempts in flight).
        """
        if not ip:
            return None
        window = self.settings.login_window_seconds
        start = now - now % window
        if not self.repository.claim_attempt(
            "ipw", ip, start, self.settings.login_ip_limit, start + 2 * window
        ):
            raise TooManyAttempts(max(1, start + window - now))
        return start

    def _give_back_ip(self, ip: str | None, window_start: int | None) -> None:
        if ip and window_start is not None:
            self.repository.give_back_attempt("ipw", ip, window_start)

    def _claim_email(self, email: str, now: int) -> None:
        """Count this attempt against the email's limit, or raise TooManyAttempts.

        One conditional write on the email's throttle item (the attempt times of the window,
        guarded by the item's version) before the credentials are looked at: parallel attempts
        race for the write, and once the window holds ``limit`` attempts every further one is
        refused unchecked. Still contended after every try, it refuses too: refusing is safe,
        checking without a count is not.
        """
        limit, window = self.settings.login_email_limit, self.settings.login_window_seconds
        for _attempt in range(_THROTTLE_ATTEMPTS):
            recent, version = self._recent("email", email, now)
            self._refuse_at(recent, limit, now)
            try:
                claimed = [*recent, now]
                self.repository.record_failure("email", email, claimed, version, now + window)
                return
            except VersionConflict:
                continue
        raise TooManyAttempts(1)

    def _give_back_email(self, email: str, now: int) -> None:
        """Remove this attempt's count from the email's limit (an attempt that did not fail)."""
        window = self.settings.login_window_seconds
        for _attempt in range(_THROTTLE_ATTEMPTS):
            recent, version = self._recent("email", email, now)
            if now not in recent:
                return
            recent.remove(now)
            try:
                self.repository.record_failure("email", email, recent, version, now + window)
                return
            except VersionConflict:
                continue

    def _failed_login(self, ip: str | None, now: int, user_id: str | None, reason: str) -> None:
        """Audit a failed attempt (its counts, of the email and of the IP, were taken before the
        attempt was checked)."""
        self.repository.append_audit(
            self._event("auth.login_failed", actor=user_id, ip=ip, reason=reason)
        )

    # -- refresh and logout ---------------------------------------------------------------------
    def refresh(self, refresh_token: str, ip: str | None) -> TokenPair:
        """Rotate a refresh token. Raises Unauthenticated (revoking the login on reuse) and
        AccountSuspended."""
        now, _ = self._now()
        session = self._session_of(refresh_token)
        presented = tokens.hash_secret(refresh_token)
        if presented in session.used_token_hashes:
            self._revoke(session, ip, "auth.refresh_token_reused")
            raise Unauthenticated("refresh token was already used; the login is revoked")
        if not tokens.constant_time_equals(presented, session.token_hash):
            raise Unauthenticated("refresh token is not valid")
        user = self.repository.get_user(session.user_id)
        if user is not None and user.status is UserStatus.SUSPENDED:
            raise AccountSuspended("this account is suspended")
        if user is None or not session.is_live(user, now):
            raise Unauthenticated("refresh token is not valid")
        new_token, new_hash = tokens.new_refresh_token(user.id, session.id)
        try:
            self.repository.rotate_session(session, presented, new_hash, int(self.clock() * 1000))
        except Unauthenticated:
            # Two requests raced with the same token: one of them is a replay.
            self._revoke(session, ip, "auth.refresh_token_reused")
            raise
        return self._pair(user, session, new_token, now)

    def logout(self, refresh_token: str, ip: str | None) -> None:
        """Revoke the login of a refresh token. Idempotent: an unknown token is a no-op."""
        try:
            session = self._session_of(refresh_token)
        except Unauthenticated:
            return
        presented = tokens.hash_secret(refresh_token)
        if presented == session.token_hash or presented in session.used_token_hashes:
            self._revoke(session, ip, "auth.logout")

    def _session_of(self, refresh_token: str) -> Session:
        try:
            user_id, session_id, _ = tokens.parse_refresh_token(refresh_token)
        except tokens.InvalidRefreshToken as exc:
            raise Unauthenticated("refresh token is not valid") from exc
        now, _ = self._now()
        session = self.repository.get_session(user_id, session_id)
        if session is None or session.revoked or session.expires_at <= now:
            raise Unauthenticated("refresh token is not valid")
        return session

    def _revoke(self, session: Session, ip: str | None, action: str) -> None:
        self.repository.revoke_session(
            session, self._event(action, actor=session.user_id, ip=ip, session=session.id)
        )

    # -- every protected request ----------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization: Bearer`` header, as stored *now*.

        Raises:
            Unauthenticated: no, malformed, forged, expired or voided token; unknown user; the
                token's login was revoked (logout, refresh-token reuse) or has expired.
            AccountSuspended: the user is suspended (tokens issued before stop working at once).
        """
        return self.principal_for(self.verify_access(authorization))

    def verify_access(self, authorization: str | None) -> tokens.AccessClaims:
        """The claims of a valid, unexpired access token; reads nothing from the table.

        Raises:
            Unauthenticated: no, malformed, forged or expired token.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("an access token is required: Authorization: Bearer <token>")
        now, _ = self._now()
        try:
            return tokens.verify_access_token(self.keys, token.strip(), now=now)
        except tokens.InvalidAccessToken as exc:
            raise Unauthenticated("the access token is not valid") from exc

    def principal_for(self, claims: tokens.AccessClaims) -> Principal:
        """The caller of verified ``claims``, if their user and login still allow the token.

        Raises:
            Unauthenticated, AccountSuspended: as ``authenticate``.
        """
        # Both in one batch read, with whatever else the request named ahead (``read_ahead``).
        self.repository.want_user(claims.user_id)
        self.repository.want_session(claims.user_id, claims.session_id)
        user = self.repository.get_user(claims.user_id)
        session = self.repository.get_session(claims.user_id, claims.session_id)
        now, _ = self._now()
        if user is None:
            raise Unauthenticated("the access token is not valid")
        if user.status is UserStatus.SUSPENDED:  # 403 while suspended, 401 once unsuspended
            raise AccountSuspended("this account is suspended")
        if session is None or not session.is_live(user, now):
            raise Unauthenticated("the access token's login has ended")
        return Principal(
            user=user,
            claims=claims,
            session=session,
            now=now,
            admin_mfa_max_age=self.settings.admin_mfa_max_age_seconds,
        )

    # -- MFA ------------------------------------------------------------------------------------
    def start_totp_setup(
        self, principal: Principal, password: str, ip: str | None
    ) -> tuple[str, str]:
        """A new secret to enroll; MFA turns on only when a code from it is confirmed. Needs the
        password, so that a stolen access token cannot enrol its own second factor.

        Raises:
            InvalidCredentials: the password is wrong.
            InvalidState: MFA is already on.
        """
        user = principal.user
        self._require_password(user, password, ip, "mfa_setup")
        if user.mfa_enabled:
            raise InvalidState("MFA is already enabled")
        secret = totp.new_totp_secret()
        self.repository.set_pending_totp(
            user, secret, self._event("mfa.setup_started", actor=user.id, ip=ip, target=user.id)
        )
        return secret, totp.provisioning_uri(secret, user.email)

    def confirm_totp(self, principal: Principal, code: str, ip: str | None) -> list[str]:
        """Turn MFA on; returns the recovery codes, shown this once and stored only as hashes.
        Every other login of the user ends (this one is kept, without ``mfa``).

        Raises:
            TotpSetupCodeWrong: no setup was started, or the code does not match it.
            InvalidState: MFA is already on.
        """
        user = principal.user
        if user.mfa_enabled:
            raise InvalidState("MFA is already enabled")
        now, _ = self._now()
        secret = user.totp_pending_secret
        step = totp.matching_step(secret, code, now=now, after_step=None) if secret else None
        if secret is None or step is None:
            raise TotpSetupCodeWrong("the code does not match the secret being set up")
        codes = totp.new_recovery_codes()
        try:
            self.repository.enable_mfa(
                user,
                secret,
                step,
                {tokens.hash_secret(c) for c in codes},
                self._event("mfa.enabled", actor=user.id, ip=ip, target=user.id),
                keep=principal.session,
                now_ms=self._void_mark(),
            )
        except InvalidState:
            self._login_still_counts(user)
            raise
        return codes

    def disable_totp(self, principal: Principal, password: str, code: str, ip: str | None) -> None:
        """Turn MFA off with the password and a current code (or a recovery code); every other
        login of the user ends.

        Raises:
            InvalidCredentials: the password is wrong.
            InvalidState: MFA is not on.
            TotpSetupCodeWrong: the code is wrong or was used already.
        """
        user = principal.user
        self._require_password(user, password, ip, "mfa_disable")
        if not user.mfa_enabled:
            raise InvalidState("MFA is not enabled")
        now, _ = self._now()
        try:
            self._use_second_factor(user, code, now)
        except InvalidTotp as exc:
            raise TotpSetupCodeWrong("the code is wrong or was already used") from exc
        try:
            self.repository.disable_mfa(
                user,
                self._event("mfa.disabled", actor=user.id, ip=ip, target=user.id),
                keep=principal.session,
                now_ms=self._void_mark(),
            )
        except InvalidState:
            self._login_still_counts(user)
            raise

    def _login_still_counts(self, read: User) -> None:
        """After an MFA change found the profile changed: raises if the caller's login ended
        since ``read`` (a password reset, a suspension, another change that voided logins).

        Raises:
            AccountSuspended: the user was suspended meanwhile.
            Unauthenticated: the password changed or the logins were voided meanwhile.
        """
        user = self.repository.get_user(read.id)
        if user is not None and user.status is UserStatus.SUSPENDED:
            raise AccountSuspended("this account is suspended")
        if (
            user is None
            or user.password_hash != read.password_hash
            or user.sessions_valid_after != read.sessions_valid_after
        ):
            raise Unauthenticated("this login ended meanwhile")

    def _void_mark(self) -> int:
        """An instant (ms) after every login opened so far: logins counting from before it end."""
        return int(self.clock() * 1000) + 1

    def _require_password(self, user: User, password: str, ip: str | None, why: str) -> None:
        """Step-up: the password again before a change to the account's security. A wrong one
        counts against the email's login limit (``429`` after 5 in 15 minutes)."""
        now, _ = self._now()
        self._claim_email(user.email, now)
        if not passwords.verify_password(user.password_hash, password):
            self._failed_login(ip, now, user.id, f"wrong_password_{why}")
            raise InvalidCredentials("the password is wrong")
        self._give_back_email(user.email, now)

    # -- logins ---------------------------------------------------------------------------------
    def live_sessions(self, principal: Principal) -> list[Session]:
        """The caller's logins whose tokens work, newest first."""
        now, _ = self._now()
        found = self.repository.sessions_of(principal.user.id)
        live = [s for s in found if s.is_live(principal.user, now)]
        return sorted(live, key=lambda s: s.created_at, reverse=True)

    def revoke_login(self, principal: Principal, session_id: str, ip: str | None) -> None:
        """End one of the caller's logins (its refresh and access tokens) at once.

        Raises:
            SessionNotFound: the caller has no such login (another user's answers the same).
        """
        session = (
            self.repository.get_session(principal.user.id, session_id)
            if _SESSION_ID.fullmatch(session_id)
            else None
        )
        if session is None:
            raise SessionNotFound("no such login")
        if not session.revoked:
            self._revoke(session, ip, "auth.session_revoked")

    # -- password reset -------------------------------------------------------------------------
    def forgot_password(self, email: str, ip: str | None) -> None:
        """Ask for a reset mail. The same work whether or not the email has an account: one
        outbox item naming the address; ``deliver`` decides later, outside the request, whether
        a mail goes out (the caller answers 202 regardless)."""
        address = email.strip()
        if not _EMAIL.fullmatch(address) or len(address) > MAX_EMAIL_LENGTH:
            return
        self.outbox.add(self._mail(MailKind.PASSWORD_RESET, email=address, ip=ip), self._now()[0])

    def request_verification_mail(self, principal: Principal, ip: str | None) -> None:
        """Another verification mail (``deliver`` keeps to the hourly limit); nothing if the
        email is verified."""
        if not principal.user.email_verified:
            mail = self._mail(MailKind.VERIFY_EMAIL, user_id=principal.user.id, ip=ip)
            self.outbox.add(mail, self._now()[0])

    def verify_email(self, token: str, ip: str | None) -> User:
        """Prove the email with a mailed token (single use, 24 h).

        Raises:
            InvalidToken: unknown, used or expired token, or the user's email changed since.
        """
        now, _ = self._now()
        token_hash = tokens.hash_secret(token) if token else ""
        found = self.repository.get_verification(token_hash) if token else None
        if found is None or found.used or found.expires_at <= now:
            raise InvalidToken("the verification token is not valid")
        user = self.repository.get_user(found.user_id)
        if user is None or user.email != found.email:
            raise InvalidToken("the verification token is not valid")
        if not user.email_verified:
            event = self._event("auth.email_verified", actor=user.id, ip=ip, target=user.id)
            self.repository.verify_email(token_hash, user, now, event)
        return replace(user, email_verified=True)

    def verify_existing_emails(self, *, mail: bool) -> int:
        """The migration for users who signed up before email verification existed: each user
        whose email is not verified is either mailed a verification link (``mail``) or marked
        verified by the operator (audited ``auth.email_verified`` with ``by: migration``).
        Returns how many users it acted on. Idempotent."""
        done, cursor = 0, None
        while True:
            page = self.repository.list_users("", 100, cursor)
            for user in page.users:
                if user.email_verified:
                    continue
                if mail:
                    self.outbox.add(
                        self._mail(MailKind.VERIFY_EMAIL, user_id=user.id), self._now()[0]
                    )
                else:
                    event = self._event(
                        "auth.email_verified", actor=None, ip=None, target=user.id, by="migration"
                    )
                    self.repository.mark_email_verified(user, event)
                done += 1
            cursor = page.next_cursor
            if cursor is None:
                return done

    # -- sending mails (outside requests: services/mail_outbox.py) -------------------------------
    def deliver(self, mail: OutboxMail) -> str:
        """Send one outbox mail, if it is still wanted and within its hourly limit. Returns what
        happened (``sent``, ``skipped``, ``limited``). Raises what the mailer raises."""
        if mail.kind is MailKind.VERIFY_EMAIL:
            user = self.repository.get_user(mail.user_id or _NOBODY)
            if user is None or user.email_verified:
                return "skipped"
            return self._send_verification(user)
        if mail.kind is MailKind.NEW_SIGN_IN:
            user = self.repository.get_user(mail.user_id or _NOBODY)
            return "skipped" if user is None else self._send_sign_in_alert(user, mail)
        user = self._user_by_email_evenly(mail.email or "")
        if user is None or user.status is UserStatus.SUSPENDED:
            return "skipped"
        return self._send_reset(user, mail.ip)

    def _within_limit(self, kind: MailKind, email: str, limit: int) -> bool:
        now, _ = self._now()
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H")
        return self.outbox.count_mail(kind, email, hour, limit, now)

    def _send_verification(self, user: User) -> str:
        if not self._within_limit(
            MailKind.VERIFY_EMAIL, user.email, self.settings.verify_mails_per_hour
        ):
            return "limited"
        now, _ = self._now()
        token, token_hash = tokens.new_reset_token()
        ttl = self.settings.email_verify_ttl_seconds
        self.repository.create_verification(token_hash, user, now + ttl)
        link = f"{self.settings.public_base_url}/verify-email?token={token}"
        self.mailer.send(
            user.email,
            "Verify your email",
            f"Confirm that this address is yours to receive money with it.\n\n"
            f"Verification token (valid {ttl // 3600} hours, usable once): {token}\n{link}\n\n"
            f"If you did not sign up, ignore this message.\n",
        )
        return "sent"

    def _send_sign_in_alert(self, user: User, mail: OutboxMail) -> str:
        """Tell the user of a sign-in from an IP or a device not used lately: when, from where,
        what to do if it was not them. No token, no link that signs anyone in."""
        if not self._within_limit(MailKind.NEW_SIGN_IN, user.email, SIGN_IN_ALERTS_PER_HOUR):
            return "limited"
        when = mail.created_at[:19].replace("T", " ") + " UTC"
        self.mailer.send(
            user.email,
            "New sign-in to your account",
            f"Your account was just signed in to from an IP address or a device it has not "
            f"used in the last 90 days.\n\n"
            f"When: {when}\n"
            f"IP address: {mail.ip or 'unknown'}\n"
            f"Device: {describe_device(mail.user_agent)}\n\n"
            f"If this was you, there is nothing to do.\n"
            f'If this wasn\'t you, reset your password now ("Forgot password" on the sign-in '
            f"page of {self.settings.public_base_url}): resetting it signs every session of "
            f"your account out.\n",
        )
        metrics.count(metrics.SIGN_IN_ALERTS_SENT)
        return "sent"

    def _send_reset(self, user: User, ip: str | None) -> str:
        if not self._within_limit(
            MailKind.PASSWORD_RESET, user.email, self.settings.reset_mails_per_hour
        ):
            return "limited"
        now, _ = self._now()
        token, token_hash = tokens.new_reset_token()
        self.repository.create_reset(
            token_hash,
            user.id,
            now + self.settings.reset_ttl_seconds,
            self._event("auth.password_reset_requested", actor=user.id, ip=ip, target=user.id),
        )
        minutes = self.settings.reset_ttl_seconds // 60
        link = f"{self.settings.public_base_url}/reset-password?token={token}"
        self.mailer.send(
            user.email,
            "Reset your password",
            f"Someone asked to reset the password of this account.\n\n"
            f"Reset token (valid {minutes} minutes, usable once): {token}\n{link}\n\n"
            f"If it was not you, ignore this message; your password is unchanged.\n",
        )
        return "sent"

    def reset_password(self, token: str, new_password: str, ip: str | None) -> None:
        """Raises InvalidToken (unknown, used or expired) and WeakPassword."""
        now, _ = self._now()
        reset = self.repository.get_reset(tokens.hash_secret(token)) if token else None
        if reset is None or reset.used or reset.expires_at <= now:
            raise InvalidToken("the reset token is not valid")
        _check_new_password(new_password)
        user = self.repository.get_user(reset.user_id)
        if user is None:
            raise InvalidToken("the reset token is not valid")
        self.repository.complete_reset(
            tokens.hash_secret(token),
            user,
            passwords.hash_password(new_password),
            now,
            int(self.clock() * 1000),
            self._event("auth.password_reset", actor=user.id, ip=ip, target=user.id),
        )
