"""rag.identity: ID token verification against a local JWKS; every refusal asserts its reason."""

from __future__ import annotations

import dataclasses
import time

import jwt
import pytest

from rag.identity import (
    LEEWAY_SECONDS,
    MAX_EMAIL_CHARS,
    MAX_TOKEN_CHARS,
    Identity,
    IdentityError,
    Reason,
    cached_jwks_client,
    check_email,
    verify_id_token,
)
from rag.settings import Settings
from tests.support import jwt_issuer
from tests.support.jwt_issuer import CLIENT_ID, EMAIL, ISSUER, SUBJECT, TENANT, Issuer, issuer_settings, new_rsa_key

rsa_key = jwt_issuer.rsa_key
issuer = jwt_issuer.issuer


SETTINGS = issuer_settings()


def reason_of(token: str, settings: Settings = SETTINGS) -> Reason:
    with pytest.raises(IdentityError) as info:
        verify_id_token(token, settings)
    assert info.value.message  # a user-safe sentence comes with every code
    assert token[:20] not in info.value.message or not token  # and never the token
    return info.value.reason


def test_valid_id_token_gives_subject_email_tenant_groups_and_token(issuer: Issuer) -> None:
    token = issuer.token(**{"cognito:groups": ["tenant-admins", "staff"]})
    identity = verify_id_token(token, SETTINGS)
    assert identity == Identity(
        subject=SUBJECT, email=EMAIL, tenant=TENANT, groups=("tenant-admins", "staff"), token=token
    )
    assert identity.user_key == f"{TENANT}:{SUBJECT}"
    assert identity.in_group("tenant-admins") and not identity.in_group("Tenant-Admins")
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.subject = "someone-else"  # type: ignore[misc]


def test_token_without_email_or_groups_is_keyed_by_subject(issuer: Issuer) -> None:
    identity = verify_id_token(issuer.token(email=None, email_verified=None), SETTINGS)
    assert (identity.subject, identity.email, identity.groups, identity.display_name) == (SUBJECT, None, (), SUBJECT)


def test_same_email_different_subject_is_a_different_user(issuer: Issuer) -> None:
    alice = verify_id_token(issuer.token(), SETTINGS)
    mallory = verify_id_token(issuer.token(sub="9a8b7c6d-0000-4000-8000-000000000001"), SETTINGS)
    assert alice.email == mallory.email and alice.user_key != mallory.user_key


@pytest.mark.parametrize("verified", [False, "false", None, 0, "True"])
def test_email_present_but_not_verified_is_refused(issuer: Issuer, verified: object) -> None:
    assert reason_of(issuer.token(email_verified=verified)) is Reason.EMAIL_NOT_VERIFIED


def test_email_verified_as_string_true_is_accepted(issuer: Issuer) -> None:
    assert verify_id_token(issuer.token(email_verified="true"), SETTINGS).email == EMAIL


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.com ",  # trailing space: refused, not stripped into alice's address
        " alice@example.com",
        "alice@exa\r\nmple.com",
        "alice\x00@example.com",
        "alice@example.com\x7f",
        "alice\u0085@example.com",  # C1 control (NEL)
        "a:b@example.com",
        "no-at-sign",
        "a@b@example.com",
        "a" * 60 + "@" + "b" * (MAX_EMAIL_CHARS - 60),  # one character over the limit
        "x" * 2048 + "@example.com",
        42,
        ["alice@example.com"],
    ],
)
def test_unusable_email_is_an_invalid_identity(issuer: Issuer, email: object) -> None:
    assert reason_of(issuer.token(email=email)) is Reason.INVALID_EMAIL


def test_email_at_the_length_limit_is_accepted() -> None:
    longest = "a" * 64 + "@" + "b" * (MAX_EMAIL_CHARS - 65)
    assert check_email(longest) == longest


@pytest.mark.parametrize(
    "subject",
    ["", "a:b", "tenant#user", "a b", "a\nb", "ü-user", "x" * 129, "-leading-dash", 12345, ["sub"]],
)
def test_unusable_subject_is_refused(issuer: Issuer, subject: object) -> None:
    assert reason_of(issuer.token(sub=subject)) is Reason.INVALID_SUBJECT


def test_subject_is_required(issuer: Issuer) -> None:
    assert reason_of(issuer.token(sub=None)) is Reason.MISSING_CLAIM


def test_subject_case_is_kept(issuer: Issuer) -> None:
    # OIDC subjects are case-sensitive: nothing is lowered.
    assert verify_id_token(issuer.token(sub="Google_1234AbC"), SETTINGS).subject == "Google_1234AbC"


@pytest.mark.parametrize("groups", ["tenant-admins", [1], [""], ["a\nb"], ["x" * 129], ["g"] * 101, {"a": 1}])
def test_malformed_groups_are_refused(issuer: Issuer, groups: object) -> None:
    assert reason_of(issuer.token(**{"cognito:groups": groups})) is Reason.INVALID_GROUPS


def test_lifetime_longer_than_the_pool_validity_is_refused(issuer: Issuer) -> None:
    now = int(time.time())
    century = issuer.token(iat=now, exp=now + 100 * 365 * 86400)
    assert reason_of(century) is Reason.LIFETIME_TOO_LONG
    assert reason_of(issuer.token(iat=now, exp=now + 3600 + LEEWAY_SECONDS + 1)) is Reason.LIFETIME_TOO_LONG
    assert verify_id_token(issuer.token(iat=now, exp=now + 3600 + LEEWAY_SECONDS), SETTINGS)


def test_lifetime_limit_follows_the_setting(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.token(iat=now, exp=now + 7200)
    assert reason_of(token) is Reason.LIFETIME_TOO_LONG
    assert verify_id_token(token, issuer_settings(id_token_validity_seconds=7200)).subject == SUBJECT


def test_iat_is_required(issuer: Issuer) -> None:
    assert reason_of(issuer.token(iat=None)) is Reason.MISSING_CLAIM


def test_exp_is_required(issuer: Issuer) -> None:
    assert reason_of(issuer.token(exp=None)) is Reason.MISSING_CLAIM


def test_issuer_claim_is_required_and_checked(issuer: Issuer) -> None:
    assert reason_of(issuer.token(iss=None)) is Reason.MISSING_CLAIM
    assert reason_of(issuer.token(iss=ISSUER + "-other")) is Reason.WRONG_ISSUER


def test_id_token_for_another_client_is_refused(issuer: Issuer) -> None:
    assert reason_of(issuer.token(aud="other-app")) is Reason.WRONG_AUDIENCE
    assert verify_id_token(issuer.token(aud=["other-app", CLIENT_ID]), SETTINGS)


def test_client_id_not_checked_when_unset(issuer: Issuer) -> None:
    assert verify_id_token(issuer.token(aud="any-app"), issuer_settings(cognito_client_id=None))


@pytest.mark.parametrize("token_use", [None, "access", "refresh", "ID"])
def test_only_id_tokens_are_accepted(issuer: Issuer, token_use: str | None) -> None:
    assert reason_of(issuer.token(token_use=token_use)) is Reason.WRONG_TOKEN_USE


@pytest.mark.parametrize("tenant", [None, "tenantb", "TENANTA", ["tenanta"]])
def test_other_or_missing_tenant_is_refused(issuer: Issuer, tenant: object) -> None:
    assert reason_of(issuer.token(**{"custom:tenantid": tenant})) is Reason.WRONG_TENANT


def test_expired_beyond_leeway(issuer: Issuer) -> None:
    now = int(time.time())
    assert reason_of(issuer.token(iat=now - 3660, exp=now - 60)) is Reason.EXPIRED
    assert verify_id_token(issuer.token(iat=now - 3610, exp=now - 10), SETTINGS)  # within the leeway


def test_not_yet_valid_and_issued_in_future(issuer: Issuer) -> None:
    now = int(time.time())
    assert reason_of(issuer.token(nbf=now + 600)) is Reason.NOT_YET_VALID
    assert reason_of(issuer.token(iat=now + 600, exp=now + 1200)) is Reason.NOT_YET_VALID


def test_non_numeric_times_are_refused(issuer: Issuer) -> None:
    assert reason_of(issuer.token(iat="yesterday")) is Reason.INVALID_CLAIM


def test_garbage_unsigned_and_oversize_tokens(issuer: Issuer) -> None:
    assert reason_of("not-a-jwt") is Reason.MALFORMED
    assert reason_of("a" * (MAX_TOKEN_CHARS + 1)) is Reason.MALFORMED
    assert reason_of(jwt.encode(issuer.claims(), None, algorithm="none")) is Reason.UNSUPPORTED_ALGORITHM
    assert reason_of("") is Reason.NO_TOKEN


def test_hs256_signed_with_the_public_key_is_refused(issuer: Issuer) -> None:
    token = jwt.encode(
        issuer.claims(), "public-key-used-as-an-hmac-secret-32b", algorithm="HS256", headers={"kid": issuer.kid}
    )
    assert reason_of(token) is Reason.UNSUPPORTED_ALGORITHM


def test_rs512_is_refused(issuer: Issuer) -> None:
    token = jwt.encode(issuer.claims(), issuer.key, algorithm="RS512", headers={"kid": issuer.kid})
    assert reason_of(token) is Reason.UNSUPPORTED_ALGORITHM


def test_tampered_payload_has_a_bad_signature(issuer: Issuer) -> None:
    header, _, signature = issuer.token().split(".")
    forged = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(issuer.claims(sub="mallory")).encode()).decode()
    assert reason_of(f"{header}.{forged}.{signature}") is Reason.BAD_SIGNATURE


def test_key_rotation_refetches_jwks_on_unknown_kid(issuer: Issuer) -> None:
    verify_id_token(issuer.token(), SETTINGS)
    verify_id_token(issuer.token(), SETTINGS)
    assert issuer.fetches == [ISSUER + "/.well-known/jwks.json"]  # cached
    new_key = new_rsa_key()
    issuer.extra_keys.append(("test-key-2", new_key))  # the issuer rotates
    assert verify_id_token(issuer.token(key=new_key, kid="test-key-2"), SETTINGS)
    assert len(issuer.fetches) == 2


def test_unknown_kid_after_refresh_is_refused(issuer: Issuer) -> None:
    assert reason_of(issuer.token(key=new_rsa_key(), kid="nobody")) is Reason.UNKNOWN_KEY


def test_jwks_unreachable_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: jwt.PyJWKClient) -> None:
        raise jwt.PyJWKClientConnectionError("down")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", broken)
    cached_jwks_client.cache_clear()
    key = new_rsa_key()
    token = jwt.encode(Issuer(key=key).claims(), key, algorithm="RS256", headers={"kid": "k"})
    with pytest.raises(IdentityError) as info:
        verify_id_token(token, SETTINGS)
    assert info.value.reason is Reason.KEYS_UNAVAILABLE and info.value.retryable
    cached_jwks_client.cache_clear()


def test_missing_issuer_setting_is_retryable(issuer: Issuer) -> None:
    with pytest.raises(IdentityError) as info:
        verify_id_token(issuer.token(), issuer_settings(issuer_uri=None, auth_mode="dev"))
    assert info.value.reason is Reason.NOT_CONFIGURED and info.value.retryable


def test_explicit_jwks_client_is_used(issuer: Issuer) -> None:
    keys = jwt.PyJWKClient("https://keys.test/jwks.json")
    assert verify_id_token(issuer.token(), SETTINGS, jwks_client=keys).subject == SUBJECT
    assert issuer.fetches == ["https://keys.test/jwks.json"]
