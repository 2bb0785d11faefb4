"""The local test issuer: Cognito-shaped tokens, discovery, JWKS and the demo login (no sockets)."""

from __future__ import annotations

import json
import time
from http.cookies import SimpleCookie
from types import SimpleNamespace

import jwt
import pytest

from gateway.issuer import DEMO_USERS, LocalIssuer, SigningKey, safe_redirect
from rag.tenant import InvalidTenantIdError


@pytest.fixture
def issuer() -> LocalIssuer:
    issuer = LocalIssuer(port=4444)  # never started: respond() is pure
    return issuer


def jwks_of(issuer: LocalIssuer) -> dict:
    response = issuer.respond("GET", f"/{issuer.pool_id}/.well-known/jwks.json")
    assert response.status == 200
    return json.loads(response.body)


def test_issuer_url_has_cognito_shape(issuer: LocalIssuer) -> None:
    assert issuer.issuer_url == "http://127.0.0.1:4444/us-east-1_TESTPOOL"
    doc = json.loads(issuer.respond("GET", "/us-east-1_TESTPOOL/.well-known/openid-configuration").body)
    assert doc["issuer"] == issuer.issuer_url
    assert doc["jwks_uri"] == issuer.issuer_url + "/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]


def test_token_is_cognito_shaped_and_verifies_against_published_jwks(issuer: LocalIssuer) -> None:
    token = issuer.mint_for("alice")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == issuer.key.kid
    (key,) = jwks_of(issuer)["keys"]
    assert key["kid"] == issuer.key.kid and key["use"] == "sig" and "d" not in key  # public only
    claims = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience="localtestclient", issuer=issuer.issuer_url
    )
    assert claims["token_use"] == "id"
    assert claims["custom:tenantid"] == "tenanta" and claims["email"] == "alice@tenanta.example.com"
    assert claims["cognito:username"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600 and claims["auth_time"] == claims["iat"]
    assert {"sub", "jti", "origin_jti", "event_id", "email_verified"} <= set(claims)


def test_mint_overrides_and_removals(issuer: LocalIssuer) -> None:
    other = SigningKey()
    token = issuer.mint("tenantb", "x@y.z", key=other, now=1000, aud="other", **{"custom:tenantid": None})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "other" and claims["iat"] == 1000 and "custom:tenantid" not in claims
    assert jwt.get_unverified_header(token)["kid"] == other.kid


def test_kernel_verifier_accepts_issuer_tokens_and_refuses_other_tenant(issuer: LocalIssuer) -> None:
    """The issuer's tokens meet the kernel's check (rag.identity.verify_id_token) used by the web chat."""
    from rag.identity import IdentityError, Reason, verify_id_token
    from rag.settings import load_settings

    (key,) = jwks_of(issuer)["keys"]
    keys = SimpleNamespace(get_signing_key_from_jwt=lambda token: jwt.PyJWK(key))
    settings = load_settings(
        tenant_id="tenanta", issuer_uri=issuer.issuer_url, cognito_client_id=issuer.client_id, auth_mode="oidc"
    )
    alice = verify_id_token(issuer.mint_for("alice"), settings, jwks_client=keys)
    assert alice.email == "alice@tenanta.example.com"
    assert alice.subject == jwt.decode(issuer.mint_for("alice"), options={"verify_signature": False})["sub"]
    with pytest.raises(IdentityError) as info:
        verify_id_token(issuer.mint_for("bob"), settings, jwks_client=keys)
    assert info.value.reason is Reason.WRONG_TENANT
    with pytest.raises(IdentityError) as info:
        verify_id_token(
            issuer.mint("tenanta", "alice@tenanta.example.com", now=int(time.time()) - 7200), settings, jwks_client=keys
        )
    assert info.value.reason is Reason.EXPIRED


def test_login_sets_host_only_httponly_strict_cookie_and_redirects(issuer: LocalIssuer) -> None:
    response = issuer.respond("GET", "/oauth2/login?user=alice&rd=/chat", {"host": "tenanta.localhost:8701"})
    headers = dict(response.headers)
    assert response.status == 302 and headers["Location"] == "/chat"
    cookie = SimpleCookie(headers["Set-Cookie"])["id_token"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/" and not cookie["domain"]
    assert not cookie["secure"]  # plain-HTTP demo: a Secure cookie would never come back
    assert jwt.decode(cookie.value, options={"verify_signature": False})["custom:tenantid"] == "tenanta"


def test_login_cookie_is_secure_behind_tls(issuer: LocalIssuer) -> None:
    response = issuer.respond("GET", "/oauth2/login?user=alice", {"x-forwarded-proto": "https"})
    cookie = SimpleCookie(dict(response.headers)["Set-Cookie"])["id_token"]
    assert cookie["secure"] and cookie["samesite"] == "Strict"


@pytest.mark.parametrize(
    "rd",
    [
        "/",
        "/chat",
        "/a/b?x=1&y=%2F#frag",
        "/_stcore/health",
        "/%09/evil.example/",  # percent-encoded once more: stays a literal path on this site
    ],
)
def test_safe_redirect_accepts_same_origin_paths(rd: str) -> None:
    assert safe_redirect(rd) == rd


@pytest.mark.parametrize(
    "rd",
    [
        "https://evil.example/",
        "javascript:alert(1)",
        "//evil.example/",
        "/\\evil.example",
        "\\evil.example",
        "/\t/evil.example/",  # TAB between the slashes: browsers drop it and get //evil.example/
        "/\n/evil.example/",
        "/x\r\nSet-Cookie: id_token=attacker",
        "/\x00",
        "/a//b",
        " /x",
        "/x y",
        '/x"onload',
        "/é",
        "",
        "evil.example",
        "/" + "a" * 2048,
    ],
)
def test_safe_redirect_refuses_everything_else(rd: str) -> None:
    assert safe_redirect(rd) is None


@pytest.mark.parametrize(
    "query",
    [
        "rd=https://evil.example/",
        "rd=//evil.example/",
        "rd=/%5Cevil.example",
        "rd=/%09/evil.example/",
        "rd=/%0d%0aSet-Cookie:%20id_token=attacker",
        "rd=/x%0aLocation:%20https://evil.example",
    ],
)
def test_login_refuses_unsafe_redirects_without_a_cookie(issuer: LocalIssuer, query: str) -> None:
    response = issuer.respond("GET", f"/oauth2/login?user=bob&{query}")
    assert response.status == 400
    assert b"rd must be a relative path" in response.body
    names = [name.lower() for name, _ in response.headers]
    assert "set-cookie" not in names and "location" not in names


def test_login_page_lists_users_of_the_host_tenant(issuer: LocalIssuer) -> None:
    page = issuer.respond("GET", "/oauth2/login", {"host": "tenantb.localhost:8701"})
    assert page.status == 200 and b"bob" in page.body and b"alice" not in page.body
    page = issuer.respond("GET", "/oauth2/login?user=mallory<script>", {"host": "127.0.0.1"})
    assert b"alice" in page.body and b"bob" in page.body and b"<script>" not in page.body


def test_other_endpoints(issuer: LocalIssuer) -> None:
    token = issuer.respond("GET", "/oauth2/token?user=bob")
    assert token.status == 200 and jwt.decode(token.body, options={"verify_signature": False})["email"].startswith(
        "bob"
    )
    assert issuer.respond("GET", "/oauth2/token?user=nobody").status == 404
    logout = issuer.respond("GET", "/oauth2/logout")
    assert logout.status == 302 and "Max-Age=0" in dict(logout.headers)["Set-Cookie"]
    assert issuer.respond("POST", "/oauth2/login?user=alice").status == 405
    assert issuer.respond("GET", "/other/.well-known/jwks.json").status == 404


def test_demo_users_and_bad_tenants() -> None:
    assert {(u.username, u.tenant, u.groups) for u in DEMO_USERS} == {
        ("alice", "tenanta", ("admins",)),  # the admin of tenanta: sees the Documents page
        ("bob", "tenantb", ()),
        ("carol", "tenanta", ()),  # a member of tenanta, not an admin
    }
    issuer = LocalIssuer()
    assert jwt.decode(issuer.mint_for("alice"), options={"verify_signature": False})["cognito:groups"] == ["admins"]
    assert "cognito:groups" not in jwt.decode(issuer.mint_for("carol"), options={"verify_signature": False})
    from gateway.issuer import DemoUser

    with pytest.raises(InvalidTenantIdError):
        DemoUser("eve", "eve@x.y", "../tenanta")
