"""Authentication primitives: passwords, access tokens, refresh tokens, TOTP, recovery codes."""

from __future__ import annotations

import base64
import json

import jwt
import pyotp
import pytest

from chalicelib.auth import passwords, totp
from chalicelib.auth.passwords import (
    PasswordTooLong,
    PasswordTooShort,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from chalicelib.auth.tokens import (
    ACCESS_TOKEN_TTL_SECONDS,
    InvalidAccessToken,
    InvalidRefreshToken,
    SigningKeys,
    constant_time_equals,
    hash_secret,
    issue_access_token,
    new_refresh_token,
    new_reset_token,
    parse_refresh_token,
    verify_access_token,
)
from chalicelib.auth.totp import (
    RECOVERY_CODE_COUNT,
    TOTP_PERIOD,
    is_recovery_code_shape,
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    normalize_recovery_code,
    provisioning_uri,
)

NOW = 1_750_000_000
# 64 bytes: long enough for HS512 too, so forging with HS512 raises no key-length warning.
SECRET_A = "a" * 64
SECRET_B = "b" * 64
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True, scope="module")
def _fast_hashing():
    passwords.configure_for_tests()


@pytest.fixture
def keys() -> SigningKeys:
    return SigningKeys(active_kid="k1", keys={"k1": SECRET_A})


def _issue(keys: SigningKeys, now: int = NOW, **overrides) -> str:
    fields = {"user_id": "u_1", "role": "user", "mfa": False, "session_id": "s_1"} | overrides
    token, _ = issue_access_token(keys, now=now, **fields)
    return token


def _b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _payload(now: int = NOW) -> dict:
    return {
        "sub": "u_1",
        "role": "admin",
        "mfa": True,
        "sid": "s_1",
        "iat": now,
        "nbf": now,
        "exp": now + ACCESS_TOKEN_TTL_SECONDS,
        "jti": "j",
        "iss": "ledger",
        "aud": "ledger-api",
    }


def _refused(keys: SigningKeys, token: object, now: int = NOW) -> str:
    with pytest.raises(InvalidAccessToken) as caught:
        verify_access_token(keys, token, now=now)  # type: ignore[arg-type]
    return str(caught.value)


# -- passwords ------------------------------------------------------------------------------------
def test_password_verifies_against_its_hash():
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert verify_password(stored, PASSWORD)


def test_same_password_hashes_differently_each_time():
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_wrong_password_is_refused():
    assert not verify_password(hash_password(PASSWORD), PASSWORD + "!")


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$v=19$m=1024,t=1,p=1$x$y", None])
def test_malformed_hash_answers_false_instead_of_raising(stored):
    assert verify_password(stored, PASSWORD) is False


def test_short_password_is_not_hashed():
    with pytest.raises(PasswordTooShort):
        hash_password("a" * (passwords.MIN_PASSWORD_LENGTH - 1))


def test_over_long_password_is_not_hashed_nor_verified():
    too_long = "a" * (passwords.MAX_PASSWORD_LENGTH + 1)
    with pytest.raises(PasswordTooLong):
        hash_password(too_long)
    assert not verify_password(hash_password(PASSWORD), too_long)


def test_hash_with_other_parameters_needs_rehash():
    stored = hash_password(PASSWORD)
    assert not needs_rehash(stored)
    stronger = passwords.PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    assert needs_rehash(stronger.hash(PASSWORD))
    assert needs_rehash("not-a-hash")


def test_dummy_verify_never_matches():
    assert passwords.DUMMY_HASH.startswith("$argon2id$")
    assert dummy_verify(PASSWORD) is False
    assert dummy_verify("") is False


# -- signing keys ---------------------------------------------------------------------------------
def test_signing_keys_read_from_json():
    keys = SigningKeys.from_json(json.dumps({"k1": SECRET_A, "k2": SECRET_B}), "k2")
    assert keys.active_kid == "k2"
    assert dict(keys.keys) == {"k1": SECRET_A, "k2": SECRET_B}


@pytest.mark.parametrize(
    ("raw", "active"),
    [
        (json.dumps({"k1": SECRET_A}), "k2"),  # active kid not listed
        (json.dumps({"k1": SECRET_A, "k2": "short"}), "k1"),  # a secret under 32 bytes
        (json.dumps({"k1": 12345}), "k1"),
        (json.dumps([SECRET_A]), "k1"),
        ("{not json", "k1"),
    ],
)
def test_bad_signing_keys_are_refused(raw, active):
    with pytest.raises(ValueError, match=r"^(?!.*aaaa)"):  # never echoes a secret
        SigningKeys.from_json(raw, active)


# -- access tokens --------------------------------------------------------------------------------
def test_access_token_round_trip(keys):
    token, issued = issue_access_token(
        keys, user_id="u_1", role="admin", mfa=True, session_id="s_1", now=NOW
    )
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    assert issued.expires_at == NOW + ACCESS_TOKEN_TTL_SECONDS
    verified = verify_access_token(keys, token, now=NOW + 1)
    assert verified == issued
    assert (verified.user_id, verified.role, verified.mfa, verified.session_id) == (
        "u_1",
        "admin",
        True,
        "s_1",
    )


def test_every_token_has_its_own_id(keys):
    _, first = issue_access_token(keys, user_id="u", role="user", mfa=False, session_id="s", now=1)
    _, second = issue_access_token(keys, user_id="u", role="user", mfa=False, session_id="s", now=1)
    assert first.token_id != second.token_id


def test_token_forged_with_another_key_is_refused(keys):
    forged = _issue(SigningKeys(active_kid="k9", keys={"k9": SECRET_B}))
    assert _refused(keys, forged) == "unknown kid"


def test_token_with_our_kid_but_another_secret_is_refused(keys):
    forged = _issue(SigningKeys(active_kid="k1", keys={"k1": SECRET_B}))
    assert _refused(keys, forged) == "bad signature"


def test_token_is_valid_until_just_before_expiry(keys):
    token = _issue(keys)
    verify_access_token(keys, token, now=NOW + ACCESS_TOKEN_TTL_SECONDS - 1)
    assert _refused(keys, token, now=NOW + ACCESS_TOKEN_TTL_SECONDS) == "expired"


def test_leeway_extends_expiry(keys):
    token = _issue(keys)
    verify_access_token(keys, token, now=NOW + ACCESS_TOKEN_TTL_SECONDS, leeway=5)


def test_token_before_its_nbf_is_refused(keys):
    token = jwt.encode(_payload(NOW + 60), SECRET_A, algorithm="HS256", headers={"kid": "k1"})
    assert _refused(keys, token) == "not yet valid"


def test_token_issued_in_the_future_is_refused(keys):
    payload = _payload() | {"iat": NOW + 60}
    token = jwt.encode(payload, SECRET_A, algorithm="HS256", headers={"kid": "k1"})
    assert _refused(keys, token) == "issued in the future"


def test_alg_none_is_refused(keys):
    header = {"alg": "none", "typ": "JWT", "kid": "k1"}
    token = f"{_b64(header)}.{_b64(_payload())}."
    assert _refused(keys, token) == "algorithm not allowed"


@pytest.mark.parametrize("alg", ["HS512", "RS256", "ES256", "hs256", ""])
def test_algorithms_other_than_hs256_are_refused(keys, alg):
    header = {"alg": alg, "typ": "JWT", "kid": "k1"}
    body = f"{_b64(header)}.{_b64(_payload())}"
    token = f"{body}.{base64.urlsafe_b64encode(b'sig').rstrip(b'=').decode()}"
    assert _refused(keys, token) == "algorithm not allowed"


def test_hs512_signed_with_our_secret_is_refused(keys):
    token = jwt.encode(_payload(), SECRET_A, algorithm="HS512", headers={"kid": "k1"})
    assert _refused(keys, token) == "algorithm not allowed"


def test_token_without_kid_is_refused(keys):
    token = jwt.encode(_payload(), SECRET_A, algorithm="HS256")
    assert _refused(keys, token) == "missing kid"


def test_tampered_payload_is_refused(keys):
    header, _, signature = _issue(keys).split(".")
    escalated = _payload() | {"role": "admin", "mfa": True}
    assert _refused(keys, f"{header}.{_b64(escalated)}.{signature}") == "bad signature"


def test_wrong_audience_or_issuer_is_refused(keys):
    token = _issue(keys)
    with pytest.raises(InvalidAccessToken, match="wrong audience"):
        verify_access_token(keys, token, now=NOW, audience="other-api")
    with pytest.raises(InvalidAccessToken, match="wrong issuer"):
        verify_access_token(keys, token, now=NOW, issuer="other")


@pytest.mark.parametrize("claim", ["sub", "role", "mfa", "sid", "iat", "nbf", "exp", "jti"])
def test_missing_claim_is_refused(keys, claim):
    payload = _payload()
    del payload[claim]
    token = jwt.encode(payload, SECRET_A, algorithm="HS256", headers={"kid": "k1"})
    assert _refused(keys, token) == f"missing claim {claim}"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("mfa", "true"),
        ("mfa", 1),
        ("exp", True),
        ("exp", "9999999999"),
        ("iat", 1.5),
        ("role", 7),
        ("sid", "s-1"),
        ("sub", ["u_1"]),
    ],
)
def test_claim_of_the_wrong_type_is_refused(keys, claim, value):
    payload = _payload() | {claim: value}
    token = jwt.encode(payload, SECRET_A, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(InvalidAccessToken):
        verify_access_token(keys, token, now=NOW)


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "a.b.c", "a.b", "....", "Bearer x", "eyJ.eyJ.", "x" * 5000, None, b"bytes"],
)
def test_garbage_is_refused(keys, garbage):
    _refused(keys, garbage)


def test_old_key_verifies_until_it_is_removed():
    old = SigningKeys(active_kid="k1", keys={"k1": SECRET_A})
    token = _issue(old)
    rotated = SigningKeys(active_kid="k2", keys={"k1": SECRET_A, "k2": SECRET_B})
    assert verify_access_token(rotated, token, now=NOW).user_id == "u_1"
    assert jwt.get_unverified_header(_issue(rotated))["kid"] == "k2"
    retired = SigningKeys(active_kid="k2", keys={"k2": SECRET_B})
    assert _refused(retired, token) == "unknown kid"


def test_ids_outside_the_alphabet_are_not_issued(keys):
    with pytest.raises(ValueError, match="user_id"):
        _issue(keys, user_id="u.1")


# -- refresh and reset tokens ---------------------------------------------------------------------
def test_refresh_token_names_its_user_and_session():
    token, token_hash = new_refresh_token("u_1", "s_1")
    assert token.startswith("rt_u_1.s_1.")
    assert token_hash == hash_secret(token)
    assert token_hash not in token
    assert parse_refresh_token(token) == ("u_1", "s_1", token_hash)


def test_refresh_tokens_are_unique():
    assert new_refresh_token("u", "s") != new_refresh_token("u", "s")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rt_",
        "rt_u_1.s_1",
        "rt_u_1.s_1.",
        "u_1.s_1." + "x" * 43,
        "rt_u-1.s_1." + "x" * 43,
        "rt_u_1.s.1." + "x" * 43,
        "rt_u_1.s_1." + "x" * 42,
        "rt_u_1.s_1." + "x" * 43 + "\n",
        "rt_u_1.s_1." + "x" * 42 + "=",
        "rt_" + "u" * 500 + ".s_1." + "x" * 43,
        None,
    ],
)
def test_malformed_refresh_token_is_refused(token):
    with pytest.raises(InvalidRefreshToken):
        parse_refresh_token(token)


def test_tampered_refresh_token_hashes_differently():
    token, token_hash = new_refresh_token("u_1", "s_1")
    other_user = token.replace("rt_u_1.", "rt_u_2.", 1)
    assert parse_refresh_token(other_user)[2] != token_hash


@pytest.mark.parametrize(("user_id", "session_id"), [("u.1", "s"), ("u", "s-1"), ("", "s")])
def test_refresh_token_refuses_ids_outside_the_alphabet(user_id, session_id):
    with pytest.raises(ValueError, match="must match"):
        new_refresh_token(user_id, session_id)


def test_reset_token_is_stored_only_as_its_hash():
    token, token_hash = new_reset_token()
    assert len(token) >= 43
    assert token_hash == hash_secret(token)
    assert len(token_hash) == 64
    assert new_reset_token()[0] != token


def test_constant_time_equals():
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "ab")
    assert constant_time_equals("café", "café")


# -- TOTP -----------------------------------------------------------------------------------------
@pytest.fixture
def secret() -> str:
    return new_totp_secret()


def _code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def test_totp_secret_and_provisioning_uri(secret):
    assert len(secret) == 32
    uri = provisioning_uri(secret, "ada@example.com")
    assert uri.startswith("otpauth://totp/Ledger:ada%40example.com?")
    assert f"secret={secret}" in uri
    assert "issuer=Ledger" in uri


def test_current_code_matches_its_step(secret):
    step = NOW // TOTP_PERIOD
    assert matching_step(secret, pyotp.TOTP(secret).at(NOW), now=NOW, after_step=None) == step


@pytest.mark.parametrize("offset", [-1, 1])
def test_code_from_the_neighbouring_step_matches(secret, offset):
    step = NOW // TOTP_PERIOD + offset
    assert matching_step(secret, _code(secret, step), now=NOW, after_step=None) == step


def test_code_outside_the_window_is_refused(secret):
    step = NOW // TOTP_PERIOD
    assert matching_step(secret, _code(secret, step - 2), now=NOW, after_step=None) is None
    assert matching_step(secret, _code(secret, step + 2), now=NOW, after_step=None) is None


def test_code_of_an_already_used_step_is_refused(secret):
    step = NOW // TOTP_PERIOD
    code = _code(secret, step)
    used = matching_step(secret, code, now=NOW, after_step=None)
    assert used == step
    assert matching_step(secret, code, now=NOW + 5, after_step=used) is None
    # An older code from the window is refused too once a later step was used.
    assert matching_step(secret, _code(secret, step - 1), now=NOW, after_step=used) is None
    assert matching_step(secret, _code(secret, step + 1), now=NOW, after_step=used) == step + 1


def test_wrong_code_is_refused(secret):
    step = NOW // TOTP_PERIOD
    window = {_code(secret, s) for s in range(step - 1, step + 2)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)
    assert matching_step(secret, wrong, now=NOW, after_step=None) is None


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "12345a", " 123456", "123456 ", "١٢٣٤٥٦", "12 456", None]
)
def test_codes_that_are_not_six_ascii_digits_are_refused(secret, code):
    assert matching_step(secret, code, now=NOW, after_step=None) is None


def test_negative_window_is_a_programming_error(secret):
    with pytest.raises(ValueError, match="valid_window"):
        matching_step(secret, "123456", now=NOW, after_step=None, valid_window=-1)


# -- recovery codes -------------------------------------------------------------------------------
def test_recovery_codes_are_unique_and_well_shaped():
    codes = new_recovery_codes()
    assert len(codes) == RECOVERY_CODE_COUNT
    assert len(set(codes)) == RECOVERY_CODE_COUNT
    for code in codes:
        assert len(code) == 11
        assert code[5] == "-"
        assert set(code.replace("-", "")) <= set(totp.RECOVERY_CODE_ALPHABET)
        assert normalize_recovery_code(code) == code
        assert is_recovery_code_shape(code)


@pytest.mark.parametrize("typed", ["ABCDE-FGHJK", "abcdefghjk", " abcde fghjk ", "AbCdE--FgHjK"])
def test_typed_recovery_code_normalizes(typed):
    assert normalize_recovery_code(typed) == "abcde-fghjk"


@pytest.mark.parametrize(
    "typed", ["", "abcde-fghj", "abcde-fghjkm", "abcde-fghj0", "abcde-fghjl", "abcde_fghjk", None]
)
def test_malformed_recovery_code_is_refused(typed):
    assert normalize_recovery_code(typed) is None
    assert not is_recovery_code_shape(typed)


def test_recovery_code_hash_is_the_same_however_it_is_typed():
    code = new_recovery_codes()[0]
    assert hash_secret(normalize_recovery_code(code.upper().replace("-", " "))) == hash_secret(code)
