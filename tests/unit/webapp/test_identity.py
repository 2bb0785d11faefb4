"""webapp.identity: the request glue around rag.identity (headers, cookies, pages, dev mode).

The token rules themselves are tested in tests/unit/rag/test_identity.py.
"""

from __future__ import annotations

import pytest

from rag.identity import Reason
from tests.support.jwt_issuer import issuer_settings
from tests.unit.webapp.conftest import EMAIL, SUBJECT, TENANT, Issuer, bearer
from webapp.identity import Denial, IdentityError, bearer_token, denial_of, resolve_identity, token_cookie_count


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def refusal(headers: dict[str, str]) -> IdentityError:
    with pytest.raises(IdentityError) as info:
        resolve_identity(lower(headers), issuer_settings())
    return info.value


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None), ("", None)],
)
def test_bearer_token(value: str, expected: str | None) -> None:
    assert bearer_token({"authorization": value}) == expected


@pytest.mark.parametrize("value", ["Bearer a.b.c, Bearer d.e.f", "Bearer a.b.c d.e.f", "Bearer a.b.c,d.e.f"])
def test_two_bearer_tokens_are_ambiguous(value: str) -> None:
    with pytest.raises(IdentityError) as info:
        bearer_token({"authorization": value})
    assert info.value.reason is Reason.AMBIGUOUS_TOKEN


def test_resolve_identity_is_keyed_by_subject(issuer: Issuer) -> None:
    user = resolve_identity(lower(bearer(issuer.token(), email="ALICE@example.com")), issuer_settings())
    assert (user.tenant, user.subject, user.email, user.dev_mode) == (TENANT, SUBJECT, EMAIL, False)
    assert user.user_key == f"{TENANT}:{SUBJECT}"


def test_email_header_is_optional(issuer: Issuer) -> None:
    assert resolve_identity(lower(bearer(issuer.token(), email=None)), issuer_settings()).email == EMAIL


def test_email_header_disagreeing_with_token_is_refused(issuer: Issuer) -> None:
    error = refusal(bearer(issuer.token(), email="mallory@example.com"))
    assert (error.reason, denial_of(error)) == (Reason.HEADER_MISMATCH, Denial.NOT_ALLOWED)


def test_email_header_without_token_email_is_refused(issuer: Issuer) -> None:
    error = refusal(bearer(issuer.token(email=None, email_verified=None), email=EMAIL))
    assert error.reason is Reason.HEADER_MISMATCH


def test_unverified_email_is_not_allowed(issuer: Issuer) -> None:
    error = refusal(bearer(issuer.token(email_verified=False), email=None))
    assert (error.reason, denial_of(error)) == (Reason.EMAIL_NOT_VERIFIED, Denial.NOT_ALLOWED)


def test_no_token_is_not_signed_in() -> None:
    error = refusal({"X-Auth-Request-Email": EMAIL})
    assert (error.reason, denial_of(error)) == (Reason.NO_TOKEN, Denial.NOT_SIGNED_IN)


def test_expired_token_is_expired_page(issuer: Issuer) -> None:
    error = refusal(bearer(issuer.token(iat=1_000_000, exp=1_000_600)))
    assert (error.reason, denial_of(error)) == (Reason.EXPIRED, Denial.EXPIRED)


@pytest.mark.parametrize(
    "cookie",
    ["id_token=a.b.c; id_token=d.e.f", "other=1; id_token=a.b.c;id_token=a.b.c", "id_token=a.b.c, id_token=x"],
)
def test_two_token_cookies_are_refused(issuer: Issuer, cookie: str) -> None:
    assert token_cookie_count({"cookie": cookie}) == 2
    error = refusal({**bearer(issuer.token()), "Cookie": cookie})
    assert (error.reason, denial_of(error)) == (Reason.AMBIGUOUS_TOKEN, Denial.NOT_ALLOWED)


def test_one_token_cookie_is_fine(issuer: Issuer) -> None:
    token = issuer.token()
    headers = lower({**bearer(token), "Cookie": f"theme=dark; id_token={token}; x_id_token=1"})
    assert token_cookie_count(headers) == 1
    assert resolve_identity(headers, issuer_settings()).subject == SUBJECT


def test_dev_mode_uses_dev_user_with_stable_subject() -> None:
    settings = issuer_settings(auth_mode="dev", dev_user_email="dev@example.com")
    first, second = resolve_identity({}, settings), resolve_identity({}, settings)
    assert (first.email, first.dev_mode, first.token) == ("dev@example.com", True, "")
    assert first.subject == second.subject and "@" not in first.subject
    other = resolve_identity({}, issuer_settings(auth_mode="dev", dev_user_email="bob@example.com"))
    assert other.subject != first.subject


def test_keys_unavailable_is_unavailable_page() -> None:
    assert denial_of(IdentityError(Reason.KEYS_UNAVAILABLE, "down")) is Denial.UNAVAILABLE
    assert denial_of(IdentityError(Reason.LIFETIME_TOO_LONG, "too long")) is Denial.NOT_ALLOWED


def test_origin_is_checked_when_configured(issuer: Issuer) -> None:
    settings = issuer_settings(web_allowed_origins="https://tenanta.chat.example.com,http://tenanta.localhost:8080")
    ok = lower({**bearer(issuer.token()), "Origin": "http://tenanta.localhost:8080"})
    assert resolve_identity(ok, settings).subject == SUBJECT
    for origin in ("http://localhost:8080", "https://tenanta.chat.example.com.evil", "null", None):
        headers = lower(bearer(issuer.token())) | ({"origin": origin} if origin else {})
        with pytest.raises(IdentityError) as info:
            resolve_identity(headers, settings)
        assert (info.value.reason, denial_of(info.value)) == (Reason.WRONG_ORIGIN, Denial.NOT_ALLOWED)


def test_origin_is_checked_in_dev_mode_too() -> None:
    settings = issuer_settings(auth_mode="dev", web_allowed_origins="http://127.0.0.1:8501")
    with pytest.raises(IdentityError) as info:
        resolve_identity({"origin": "http://localhost:9999"}, settings)
    assert info.value.reason is Reason.WRONG_ORIGIN


def test_origin_not_checked_when_unset(issuer: Issuer) -> None:
    headers = lower({**bearer(issuer.token()), "Origin": "http://localhost:9999"})
    assert resolve_identity(headers, issuer_settings()).subject == SUBJECT


@pytest.mark.parametrize("value", ["https://a.example/", "*", "https://a.example, https://b.example", "ftp://a"])
def test_allowed_origins_setting_is_validated(value: str) -> None:
    from rag.settings import SettingsError

    with pytest.raises(SettingsError, match=r"WEB_ALLOWED_ORIGINS|web_allowed_origins"):
        issuer_settings(web_allowed_origins=value)
