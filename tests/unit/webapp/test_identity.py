"""JWT verification against a local JWKS, and identity resolution from request headers."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from rag.settings import load_settings
from tests.unit.webapp.conftest import CLIENT_ID, EMAIL, ISSUER, TENANT, Issuer, bearer
from webapp.identity import Denial, IdentityError, TokenVerifier, bearer_token, jwks_client, resolve_identity


@pytest.fixture
def verifier(issuer: Issuer) -> TokenVerifier:
    return TokenVerifier(ISSUER, TENANT, CLIENT_ID)


def denial_of(verifier: TokenVerifier, token: str) -> Denial:
    with pytest.raises(IdentityError) as info:
        verifier.verify(token)
    return info.value.denial


def test_valid_id_token(verifier, issuer):
    claims = verifier.verify(issuer.token())
    assert claims["email"] == EMAIL


def test_valid_access_token_checks_client_id(verifier, issuer):
    token = issuer.token(token_use="access", aud=None, client_id=CLIENT_ID, email=None)
    assert verifier.verify(token)["client_id"] == CLIENT_ID
    other = issuer.token(token_use="access", aud=None, client_id="other-app", email=None)
    assert denial_of(verifier, other) is Denial.NOT_ALLOWED


def test_id_token_for_another_client_is_refused(verifier, issuer):
    assert denial_of(verifier, issuer.token(aud="other-app")) is Denial.NOT_ALLOWED


def test_client_id_not_checked_when_unset(issuer):
    assert TokenVerifier(ISSUER, TENANT, None).verify(issuer.token(aud="any-app"))


@pytest.mark.parametrize("token_use", [None, "refresh", "ID"])
def test_token_use_must_be_id_or_access(verifier, issuer, token_use):
    assert denial_of(verifier, issuer.token(token_use=token_use)) is Denial.NOT_ALLOWED


def test_missing_tenant_claim_is_refused(verifier, issuer):
    assert denial_of(verifier, issuer.token(**{"custom:tenantid": None})) is Denial.NOT_ALLOWED


def test_expired_beyond_leeway(verifier, issuer):
    now = int(time.time())
    assert denial_of(verifier, issuer.token(iat=now - 4000, exp=now - 60)) is Denial.EXPIRED
    # within the 30 s leeway: still accepted
    assert verifier.verify(issuer.token(iat=now - 4000, exp=now - 10))


def test_not_yet_valid_and_issued_in_future(verifier, issuer):
    now = int(time.time())
    assert denial_of(verifier, issuer.token(nbf=now + 600)) is Denial.NOT_ALLOWED
    assert denial_of(verifier, issuer.token(iat=now + 600, exp=now + 4000)) is Denial.NOT_ALLOWED


def test_exp_is_required(verifier, issuer):
    assert denial_of(verifier, issuer.token(exp=None)) is Denial.NOT_ALLOWED


def test_garbage_and_unsigned_tokens(verifier, issuer):
    assert denial_of(verifier, "not-a-jwt") is Denial.NOT_ALLOWED
    assert denial_of(verifier, jwt.encode(issuer.claims(), None, algorithm="none")) is Denial.NOT_ALLOWED


def test_rs512_is_refused(verifier, issuer):
    token = jwt.encode(issuer.claims(), issuer.key, algorithm="RS512", headers={"kid": issuer.kid})
    assert denial_of(verifier, token) is Denial.NOT_ALLOWED


def test_key_rotation_refetches_jwks_on_unknown_kid(issuer):
    verifier = TokenVerifier(ISSUER, TENANT, CLIENT_ID, keys=jwks_client(ISSUER))
    verifier.verify(issuer.token())
    verifier.verify(issuer.token())
    assert len(issuer.fetches) == 1  # cached
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.extra_keys.append(("test-key-2", new_key))  # the issuer rotates
    assert verifier.verify(issuer.token(key=new_key, kid="test-key-2"))
    assert len(issuer.fetches) == 2
    assert issuer.fetches[0] == ISSUER + "/.well-known/jwks.json"


def test_unknown_kid_after_refresh_is_refused(verifier, issuer):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert denial_of(verifier, issuer.token(key=stranger, kid="nobody")) is Denial.NOT_ALLOWED


def test_jwks_unreachable_is_unavailable(monkeypatch):
    def broken(self):
        raise jwt.PyJWKClientConnectionError("down")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", broken)
    jwks_client.cache_clear()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(Issuer(key=key).claims(), key, algorithm="RS256", headers={"kid": "k"})
    assert denial_of(TokenVerifier(ISSUER, TENANT, CLIENT_ID), token) is Denial.UNAVAILABLE
    jwks_client.cache_clear()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None), ("", None)],
)
def test_bearer_token(value, expected):
    assert bearer_token({"authorization": value}) == expected


def oidc_settings(**overrides):
    values = {
        "tenant_id": TENANT,
        "issuer_uri": ISSUER,
        "cognito_client_id": CLIENT_ID,
        "embeddings_provider": "local",
        "llm_provider": "extractive",
    }
    values.update(overrides)
    return load_settings(**values)


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def test_resolve_identity_uses_token_email(issuer):
    user = resolve_identity(lower(bearer(issuer.token(), email="ALICE@example.com")), oidc_settings())
    assert (user.tenant, user.email, user.dev_mode) == (TENANT, EMAIL, False)
    assert user.user_key == f"{TENANT}:{EMAIL}"


def test_resolve_identity_access_token_falls_back_to_header_email(issuer):
    token = issuer.token(token_use="access", aud=None, client_id=CLIENT_ID, email=None)
    assert resolve_identity(lower(bearer(token)), oidc_settings()).email == EMAIL
    with pytest.raises(IdentityError) as info:
        resolve_identity(lower(bearer(token, email=None)), oidc_settings())
    assert info.value.denial is Denial.NOT_SIGNED_IN


def test_resolve_identity_rejects_colon_in_email(issuer):
    with pytest.raises(IdentityError):
        resolve_identity(lower(bearer(issuer.token(email="a:b@example.com"), email=None)), oidc_settings())


def test_dev_mode_uses_dev_user():
    user = resolve_identity({}, oidc_settings(auth_mode="dev", dev_user_email="dev@example.com"))
    assert (user.email, user.dev_mode) == ("dev@example.com", True)
