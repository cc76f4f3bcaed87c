"""Users, email claims, sessions, reset tokens, login throttles and audit events on the table.

Every action that writes also appends its audit event in the same ``TransactWriteItems``, so an
action is never done with its audit lost.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition

from chalicelib.adapters.clock import parse_iso
from chalicelib.adapters.dynamo import cursors, keys, read_ahead
from chalicelib.adapters.dynamo.models import (
    AccountItem,
    AuditItem,
    EmailClaimItem,
    ResetTokenItem,
    SessionItem,
    ThrottleItem,
    UserItem,
    VerifyTokenItem,
)
from chalicelib.adapters.dynamo.outbox_repository import DynamoOutbox
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.domain.accounts import Account
from chalicelib.domain.errors import (
    EmailTaken,
    InvalidState,
    InvalidToken,
    InvalidTotp,
    Unauthenticated,
    VersionConflict,
)
from chalicelib.domain.users import (
    AuditEvent,
    OutboxMail,
    ResetToken,
    Role,
    Session,
    User,
    UserPage,
    UserStatus,
    VerificationToken,
)

# A write of the profile that met a concurrent transaction on it (a login, another TOTP code, an
# admin's change) is sent again this many times: its conditions decide, nothing was written.
PROFILE_CONFLICT_RETRIES = 3


class DynamoAuthRepository:
    # -- reads ----------------------------------------------------------------------------------
    # ``want_*`` name an item the request will read soon, so that it is fetched in the same
    # round trip as the others (``read_ahead``); the matching reads below take it from there.
    def want_user(self, user_id: str) -> None:
        read_ahead.want(keys.user_pk(user_id), keys.PROFILE_SK)

    def want_session(self, user_id: str, session_id: str) -> None:
        read_ahead.want(keys.user_pk(user_id), keys.session_sk(session_id))

    def want_email_claim(self, email: str) -> None:
        read_ahead.want(keys.email_pk(email), keys.EMAIL_SK)

    def get_user(self, user_id: str) -> User | None:
        raw = read_ahead.get_raw(keys.user_pk(user_id), keys.PROFILE_SK)
        return UserItem.from_raw_data(raw).to_domain() if raw is not None else None

    def user_id_for_email(self, email: str) -> str | None:
        """The id of the user who claimed this email (case-insensitively), from the claim alone."""
        raw = read_ahead.get_raw(keys.email_pk(email), keys.EMAIL_SK)
        return EmailClaimItem.from_raw_data(raw).user_id if raw is not None else None

    def find_user_by_email(self, email: str) -> User | None:
        try:
            claim = EmailClaimItem.get(keys.email_pk(email), keys.EMAIL_SK, consistent_read=True)
        except EmailClaimItem.DoesNotExist:
            return None
        return self.get_user(claim.user_id)

    def get_session(self, user_id: str, session_id: str) -> Session | None:
        raw = read_ahead.get_raw(keys.user_pk(user_id), keys.session_sk(session_id))
        return SessionItem.from_raw_data(raw).to_domain() if raw is not None else None

    def get_reset(self, token_hash: str) -> ResetToken | None:
        try:
            item = ResetTokenItem.get(
                keys.reset_pk(token_hash), keys.RESET_SK, consistent_read=True
            )
        except ResetTokenItem.DoesNotExist:
            return None
        return ResetToken(
            user_id=item.user_id, expires_at=int(item.expires_at), used=bool(item.used)
        )

    def recent_failures(self, kind: str, value: str) -> tuple[list[int], int]:
        """The failure times recorded for one email or IP, and the item's version (0: none)."""
        try:
            item = ThrottleItem.get(
                keys.throttle_pk(kind, value), keys.THROTTLE_SK, consistent_read=True
            )
        except ThrottleItem.DoesNotExist:
            return [], 0
        return [int(t) for t in item.failures or []], int(item.version)

    # -- writes ---------------------------------------------------------------------------------
    def sign_up(
        self,
        user: User,
        accounts: Sequence[Account],
        event: AuditEvent,
        mail: OutboxMail | None = None,
        now: int = 0,
    ) -> None:
        """User, email claim, wallets, audit event and the verification mail's outbox item,
        all or nothing.

        Raises:
            EmailTaken: the email (case-insensitively) is claimed already.
        """
        write = AtomicWrite()
        write.put(
            UserItem.from_domain(user),
            UserItem.PK.does_not_exist(),
            VersionConflict("user id taken"),
        )
        write.put(
            EmailClaimItem.for_user(user),
            EmailClaimItem.PK.does_not_exist(),
            EmailTaken("email already registered"),
        )
        for account in accounts:
            write.put(
                AccountItem.from_domain(account.evolve(stored=True)),
                AccountItem.PK.does_not_exist(),
                VersionConflict("account id taken"),
            )
        if mail is not None:
            DynamoOutbox().put_in(write, mail, now)
        write.append_audit(event)
        write.send_or_raise_tag()

    # -- email verification ---------------------------------------------------------------------
    def verified_user_id_for_email(self, email: str) -> str | None:
        """Like ``user_id_for_email``, for a verified email only (an unverified one answers like
        an unknown one)."""
        raw = read_ahead.get_raw(keys.email_pk(email), keys.EMAIL_SK)
        if raw is None:
            return None
        claim = EmailClaimItem.from_raw_data(raw)
        return claim.user_id if claim.verified else None

    def create_verification(self, token_hash: str, user: User, expires_at: int) -> None:
        VerifyTokenItem(
            keys.verify_pk(token_hash),
            keys.VERIFY_SK,
            item_type=VerifyTokenItem.ITEM_TYPE,
            user_id=user.id,
            email=user.email,
            expires_at=expires_at,
            used=False,
        ).save(VerifyTokenItem.PK.does_not_exist())

    def get_verification(self, token_hash: str) -> VerificationToken | None:
        try:
            item = VerifyTokenItem.get(
                keys.verify_pk(token_hash), keys.VERIFY_SK, consistent_read=True
            )
        except VerifyTokenItem.DoesNotExist:
            return None
        return VerificationToken(
            user_id=item.user_id,
            email=item.email,
            expires_at=int(item.expires_at),
            used=bool(item.used),
        )

    def verify_email(self, token_hash: str, user: User, now: int, event: AuditEvent) -> None:
        """Use the token once and mark the user's email (profile and claim) verified.

        Raises:
            InvalidToken: the token was used or expired meanwhile, or the email changed.
        """
        write = AtomicWrite()
        unused = VerifyTokenItem.used == False  # noqa: E712 - a DynamoDB condition
        write.update(
            VerifyTokenItem(keys.verify_pk(token_hash), keys.VERIFY_SK),
            [VerifyTokenItem.used.set(True)],
            unused & (VerifyTokenItem.expires_at > now) & (VerifyTokenItem.user_id == user.id),
            InvalidToken("the verification token is not valid"),
        )
        self._mark_verified(write, user)
        write.append_audit(event)
        write.send_or_raise_tag()

    def mark_email_verified(self, user: User, event: AuditEvent) -> None:
        """Mark a user's email verified without a token (an operator's migration of users who
        signed up before verification existed)."""
        write = AtomicWrite()
        self._mark_verified(write, user)
        write.append_audit(event)
        write.send_or_raise_tag()

    @staticmethod
    def _mark_verified(write: AtomicWrite, user: User) -> None:
        write.update(
            UserItem.from_domain(user),
            [UserItem.email_verified.set(True)],
            UserItem.PK.exists() & (UserItem.email == user.email),
            InvalidToken("the verification token is not valid"),
        )
        write.update(
            EmailClaimItem.for_user(user),
            [EmailClaimItem.verified.set(True)],
            EmailClaimItem.user_id == user.id,
            InvalidToken("the verification token is not valid"),
        )

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
        """The login, its audit event and, when given, the new sign-in's audit event and its
        mail and the user's known devices: one ``TransactWriteItems``, all or nothing, and only
        while the profile is still as ``user`` was read (same password, still active, no login
        voided and MFA not turned on or off since; ``_as_read``).

        The known devices are written entry by entry (``touch_devices`` set, ``forget_devices``
        removed), so parallel logins keep each other's entries; a profile read without a map
        gets the whole ``known_devices``, only if it still has none. Without a change of the
        devices the profile is a ``ConditionCheck``.

        Raises:
            VersionConflict: the profile changed since it was read, a concurrent write touched
                it (re-read it and decide again), or an id is taken.
        """
        write = AtomicWrite()
        write.put(
            SessionItem.from_domain(session),
            SessionItem.SK.does_not_exist(),
            VersionConflict("session id taken"),
        )
        write.append_audit(event)
        if notice is not None:
            write.append_audit(notice)
        if mail is not None:
            DynamoOutbox().put_in(write, mail, now)
        changed = VersionConflict("the user's profile changed since it was read")
        as_read = self._as_read(user)
        profile = UserItem(keys.user_pk(user.id), keys.PROFILE_SK)
        if known_devices is None:
            write.check(UserItem, keys.user_pk(user.id), keys.PROFILE_SK, as_read, changed)
        elif user.known_devices is None:
            write.update(
                profile,
                [UserItem.known_devices.set(dict(known_devices))],
                as_read & UserItem.known_devices.does_not_exist(),
                changed,
            )
        else:
            actions = [UserItem.known_devices[k].set(t) for k, t in (touch_devices or {}).items()]
            actions += [UserItem.known_devices[k].remove() for k in forget_devices]
            write.update(profile, actions, as_read & UserItem.known_devices.exists(), changed)
        write.send_or_raise_tag()

    @staticmethod
    def _as_read(user: User) -> Condition:
        """The profile still lets the login that read ``user`` in: the same password hash, still
        active, no login voided since (``sessions_valid_after``), MFA neither turned on nor off.
        """
        condition = _logins_unchanged(user)
        if user.mfa_enabled:
            condition &= UserItem.mfa_enabled == True  # noqa: E712 - a DynamoDB condition
        else:
            condition &= UserItem.mfa_enabled.does_not_exist() | (UserItem.mfa_enabled == False)  # noqa: E712
        return condition

    def rotate_session(
        self, session: Session, presented_hash: str, new_hash: str, now_ms: int
    ) -> None:
        """Replace the current refresh token; refused if it is no longer the current one.

        Raises:
            Unauthenticated: the presented token was rotated (or the login revoked) meanwhile.
        """
        write = AtomicWrite()
        write.update(
            SessionItem.from_domain(session),
            [
                SessionItem.token_hash.set(new_hash),
                SessionItem.used_token_hashes.add({presented_hash}),
                SessionItem.last_used_at.set(now_ms),
            ],
            (SessionItem.token_hash == presented_hash) & (SessionItem.revoked == False),  # noqa: E712
            Unauthenticated("refresh token already used"),
        )
        write.send_or_raise_tag()

    def revoke_session(self, session: Session, event: AuditEvent) -> None:
        write = AtomicWrite()
        write.update(
            SessionItem.from_domain(session),
            [SessionItem.revoked.set(True)],
            SessionItem.SK.exists(),
            None,
        )
        write.append_audit(event)
        write.send_or_raise_tag()

    def use_totp_step(self, user: User, step: int) -> None:
        """Record ``step`` as used; a code of that step (or an earlier one) is then refused.

        Raises:
            InvalidTotp: a code of this step or a later one was already used (a replay).
        """
        write = AtomicWrite()
        write.update(
            UserItem.from_domain(user),
            [UserItem.totp_last_step.set(step)],
            UserItem.totp_last_step < step,
            InvalidTotp("this code was already used"),
        )
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)

    def use_recovery_code(self, user: User, code_hash: str) -> None:
        """Strike a recovery code off; each works once.

        Raises:
            InvalidTotp: the code is not (or no longer) one of the user's.
        """
        write = AtomicWrite()
        write.update(
            UserItem.from_domain(user),
            [UserItem.recovery_code_hashes.delete({code_hash})],
            UserItem.recovery_code_hashes.contains(code_hash),
            InvalidTotp("this recovery code is not valid"),
        )
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)

    def set_pending_totp(self, user: User, secret: str, event: AuditEvent) -> None:
        write = AtomicWrite()
        write.update(
            UserItem.from_domain(user),
            [UserItem.totp_pending_secret.set(secret)],
            UserItem.mfa_enabled == False,  # noqa: E712
            InvalidState("MFA is already enabled"),
        )
        write.append_audit(event)
        write.send_or_raise_tag()

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
        """Turn MFA on with the secret that was set up, once, and end every login but ``keep``;
        only while the profile is as ``user`` was read as far as logins go (password, status,
        ``sessions_valid_after``): a reset or a suspension in between is not undone by re-stamping
        ``keep``.

        Raises:
            InvalidState: MFA was enabled meanwhile, another setup replaced the secret, or the
                profile changed (the caller re-reads it to tell).
            Unauthenticated: the kept login was revoked meanwhile.
        """
        write = AtomicWrite()
        write.update(
            UserItem.from_domain(user),
            [
                UserItem.mfa_enabled.set(True),
                UserItem.totp_secret.set(secret),
                UserItem.totp_pending_secret.remove(),
                UserItem.totp_last_step.set(step),
                UserItem.recovery_code_hashes.set(recovery_hashes),
                UserItem.sessions_valid_after.set(now_ms),
            ],
            (UserItem.mfa_enabled == False)  # noqa: E712
            & (UserItem.totp_pending_secret == secret)
            & _logins_unchanged(user),
            InvalidState("MFA setup changed meanwhile; start again"),
        )
        self._keep_login(write, keep, now_ms)
        write.append_audit(event)
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)

    def disable_mfa(self, user: User, event: AuditEvent, *, keep: Session, now_ms: int) -> None:
        """Turn MFA off (secret and recovery codes gone) and end every login but ``keep``; only
        while the profile is as ``user`` was read as far as logins go (like ``enable_mfa``).

        Raises:
            InvalidState: MFA was turned off meanwhile, or the profile changed (the caller
                re-reads it to tell).
            Unauthenticated: the kept login was revoked meanwhile.
        """
        write = AtomicWrite()
        write.update(
            UserItem.from_domain(user),
            [
                UserItem.mfa_enabled.set(False),
                UserItem.totp_secret.remove(),
                UserItem.recovery_code_hashes.remove(),
                UserItem.sessions_valid_after.set(now_ms),
            ],
            (UserItem.mfa_enabled == True) & _logins_unchanged(user),  # noqa: E712
            InvalidState("MFA is not enabled"),
        )
        self._keep_login(write, keep, now_ms)
        write.append_audit(event)
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)

    @staticmethod
    def _keep_login(write: AtomicWrite, session: Session, now_ms: int) -> None:
        """The login that made a change counts from now, like the user's other logins do not."""
        write.update(
            SessionItem.from_domain(session),
            [SessionItem.valid_from.set(now_ms)],
            SessionItem.revoked == False,  # noqa: E712
            Unauthenticated("this login was revoked meanwhile"),
        )

    def sessions_of(self, user_id: str) -> list[Session]:
        """Every login item of the user (live or not; expired ones go by TTL)."""
        found = SessionItem.query(
            keys.user_pk(user_id),
            SessionItem.SK.startswith(keys.SESSION_PREFIX),
            consistent_read=True,
        )
        return [item.to_domain() for item in found]

    def create_reset(
        self, token_hash: str, user_id: str, expires_at: int, event: AuditEvent
    ) -> None:
        write = AtomicWrite()
        item = ResetTokenItem(
            keys.reset_pk(token_hash),
            keys.RESET_SK,
            item_type=ResetTokenItem.ITEM_TYPE,
            user_id=user_id,
            expires_at=expires_at,
            used=False,
        )
        write.put(item, ResetTokenItem.PK.does_not_exist(), VersionConflict("token collision"))
        write.append_audit(event)
        write.send_or_raise_tag()

    def complete_reset(
        self,
        token_hash: str,
        user: User,
        password_hash: str,
        now: int,
        now_ms: int,
        event: AuditEvent,
    ) -> None:
        """Use the token once, set the password, and void every login issued before now.

        Raises:
            InvalidToken: the token was used or expired meanwhile.
        """
        write = AtomicWrite()
        token = ResetTokenItem(keys.reset_pk(token_hash), keys.RESET_SK)
        unused = ResetTokenItem.used == False  # noqa: E712 - a DynamoDB condition, not a bool
        still_valid = unused & (ResetTokenItem.expires_at > now)
        write.update(
            token,
            [ResetTokenItem.used.set(True)],
            still_valid & (ResetTokenItem.user_id == user.id),
            InvalidToken("reset token is not valid"),
        )
        write.update(
            UserItem.from_domain(user),
            [UserItem.password_hash.set(password_hash), UserItem.sessions_valid_after.set(now_ms)],
            UserItem.PK.exists(),
            InvalidToken("reset token is not valid"),
        )
        write.append_audit(event)
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)

    def record_failure(
        self,
        kind: str,
        value: str,
        failures: list[int],
        version: int,
        expires_at: int,
    ) -> None:
        """Store the attempt times of one email, if nobody else did since they were read.

        Raises:
            VersionConflict: a concurrent attempt was recorded first (re-read and retry).
        """
        item = ThrottleItem(
            keys.throttle_pk(kind, value),
            keys.THROTTLE_SK,
            item_type=ThrottleItem.ITEM_TYPE,
            failures=failures,
            version=version + 1,
            expires_at=expires_at,
        )
        condition = (
            ThrottleItem.PK.does_not_exist() if version == 0 else ThrottleItem.version == version
        )
        try:
            item.save(condition)
        except PutError as exc:
            if condition_failed(exc):
                raise VersionConflict("throttle changed") from exc
            raise

    def claim_attempt(
        self, kind: str, value: str, window_start: int, limit: int, expires_at: int
    ) -> bool:
        """Count one attempt in the window starting at ``window_start``, unless ``limit`` are
        counted already (then False): one conditional ``ADD``, so parallel attempts never
        contend for a version and can never pass the limit together."""
        item = ThrottleItem(keys.throttle_pk(kind, f"{value}#{window_start}"), keys.THROTTLE_SK)
        try:
            item.update(
                actions=[
                    ThrottleItem.attempts.add(1),
                    ThrottleItem.item_type.set(ThrottleItem.ITEM_TYPE),
                    ThrottleItem.expires_at.set(expires_at),
                ],
                condition=ThrottleItem.attempts.does_not_exist() | (ThrottleItem.attempts < limit),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def give_back_attempt(self, kind: str, value: str, window_start: int) -> None:
        """Uncount one attempt of that window (an attempt that did not fail)."""
        item = ThrottleItem(keys.throttle_pk(kind, f"{value}#{window_start}"), keys.THROTTLE_SK)
        try:
            item.update(
                actions=[ThrottleItem.attempts.add(-1)], condition=ThrottleItem.attempts > 0
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise

    def counted_attempts(self, kind: str, value: str, window_start: int) -> int:
        raw = read_ahead.get_raw(
            keys.throttle_pk(kind, f"{value}#{window_start}"), keys.THROTTLE_SK
        )
        return int(ThrottleItem.from_raw_data(raw).attempts or 0) if raw is not None else 0

    def clear_failures(self, kind: str, value: str) -> None:
        ThrottleItem(keys.throttle_pk(kind, value), keys.THROTTLE_SK).delete()

    def append_audit(self, event: AuditEvent) -> None:
        """An audit event of an action that writes nothing else (a refused login, a report
        read); append-only like the others."""
        AuditItem.from_domain(event).save(AuditItem.SK.does_not_exist())

    # -- operators ------------------------------------------------------------------------------
    def set_role(self, user: User, role: Role, event: AuditEvent) -> User:
        """Change the user's role from the one read, with its audit event, in one write.

        Raises:
            InvalidState: the role changed meanwhile (or the user no longer exists).
        """
        write = AtomicWrite()
        write.update(
            UserItem.from_domain(user),
            [UserItem.role.set(role.value)],
            UserItem.PK.exists() & (UserItem.role == user.role.value),
            InvalidState("the user's role changed meanwhile"),
        )
        write.append_audit(event)
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)
        return replace(user, role=role)

    def set_status(self, user: User, to: UserStatus, event: AuditEvent) -> User:
        """Suspend or unsuspend ``user``, with its audit event, in one write; only from the other
        status, so two admins acting at once cannot both succeed (nor audit twice). Returns the
        user as the write left them (no read-back).

        Raises:
            InvalidState: the user is already in status ``to`` (or no longer exists).
        """
        item = UserItem.from_domain(user)
        if to is UserStatus.SUSPENDED:
            # The logins of before the suspension end with it: an unsuspension does not bring
            # them back.
            void_before = int(parse_iso(event.at).timestamp() * 1000) + 1
            actions = [
                UserItem.status.set(to.value),
                UserItem.suspended_at.set(event.at),
                UserItem.suspended_by.set(event.actor_id),
                UserItem.suspension_reason.set(event.details.get("reason", "")),
                UserItem.sessions_valid_after.set(void_before),
            ]
            expected = UserStatus.ACTIVE
            stored = replace(
                user,
                status=to,
                suspended_at=event.at,
                suspended_by=event.actor_id,
                suspension_reason=event.details.get("reason", ""),
                sessions_valid_after=void_before,
            )
        else:
            actions = [
                UserItem.status.set(to.value),
                UserItem.suspended_at.remove(),
                UserItem.suspended_by.remove(),
                UserItem.suspension_reason.remove(),
            ]
            expected = UserStatus.SUSPENDED
            stored = replace(
                user, status=to, suspended_at=None, suspended_by=None, suspension_reason=None
            )
        write = AtomicWrite()
        write.update(
            item,
            actions,
            UserItem.PK.exists() & (UserItem.status == expected.value),
            InvalidState(f"the user is not {expected.value}"),
        )
        write.append_audit(event)
        write.send_or_raise_tag(conflict_retries=PROFILE_CONFLICT_RETRIES)
        return stored

    def list_users(self, email_prefix: str, limit: int, cursor: str | None) -> UserPage:
        """Users by lower-case email: a page of email claims from GSI2 (eventually consistent: a
        user who signed up a moment ago may be missing for a moment), then their profiles in one
        strongly consistent BatchGetItem. ``email_prefix`` "" lists everyone.

        Raises:
            ValueError: the cursor was not produced by this query.
        """
        low, high = keys.users_gsi_bounds(email_prefix)
        start = None
        if cursor:
            start = cursors.decode(
                cursor,
                partition={"GSI2PK": keys.USERS_GSI_PK, "SK": keys.EMAIL_SK},
                ranges={
                    "PK": (keys.EMAIL_PREFIX, keys.EMAIL_PREFIX + "\U0010ffff"),
                    "GSI2SK": (low, high),
                },
            )
        results = EmailClaimItem.users_index.query(
            keys.USERS_GSI_PK,
            EmailClaimItem.GSI2SK.startswith(low) if low else None,
            limit=limit,
            last_evaluated_key=start,
            page_size=limit,
        )
        ids = [claim.user_id for claim in results]
        last = results.last_evaluated_key
        found = {
            item.user_id: item.to_domain()
            for item in UserItem.batch_get(
                [(keys.user_pk(i), keys.PROFILE_SK) for i in ids], consistent_read=True
            )
        }
        users = [found[i] for i in ids if i in found]
        return UserPage(users, cursors.encode(last) if last and len(ids) == limit else None)


def _logins_unchanged(user: User) -> Condition:
    """The profile as ``user`` was read, as far as logins go: the same password hash, still
    active, no login voided since (``sessions_valid_after``)."""
    condition = (
        UserItem.PK.exists()
        & (UserItem.password_hash == user.password_hash)
        & (UserItem.status == UserStatus.ACTIVE.value)
    )
    if user.sessions_valid_after:
        return condition & (UserItem.sessions_valid_after == user.sessions_valid_after)
    return condition & (
        UserItem.sessions_valid_after.does_not_exist() | (UserItem.sessions_valid_after == 0)
    )
