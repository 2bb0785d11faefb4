"""Who is asking: the signed-in user, verified from the gateway's headers.

In the cluster the ingress gateway (oauth2-proxy / Istio ``RequestAuthentication``) has already
checked the Cognito ID token and forwards ``Authorization: Bearer <jwt>`` and
``X-Auth-Request-Email``. The web chat verifies the token again as a second line of defence with
the kernel's :func:`rag.identity.verify_id_token` (signature, issuer, client id, expiry, lifetime,
``custom:tenantid``, ``sub``, verified ``email``). This module is only the request glue: it reads
the headers, refuses ambiguous credentials (two ``Authorization`` headers, two ``id_token``
cookies) and an e-mail header that disagrees with the token, and maps each refusal to the page
the user sees. ``AUTH_MODE=dev`` skips all of this and uses ``DEV_USER_EMAIL``: for the local demo
only.

Nothing here renders anything; :mod:`webapp.ui` turns an :class:`IdentityError` into a page.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum

import jwt

from rag.contract import EMAIL_HEADER
from rag.identity import (
    TOKEN_COOKIE,
    Identity,
    IdentityError,
    Reason,
    cached_jwks_client,
    check_email,
    verify_id_token,
)
from rag.settings import Settings

__all__ = [
    "EMAIL_HEADER",
    "Denial",
    "Identity",
    "IdentityError",
    "Reason",
    "bearer_token",
    "cached_jwks_client",
    "check_origin",
    "denial_of",
    "dev_identity",
    "request_headers",
    "resolve_identity",
]

#: Namespace of the dev-mode subject (``uuid5(DEV_SUBJECT_NAMESPACE, DEV_USER_EMAIL)``).
DEV_SUBJECT_NAMESPACE = uuid.UUID("5b0e3d4c-7f0a-4a57-9d55-2c1f3c1e6d10")


class Denial(StrEnum):
    """Which page a refusal shows."""

    NOT_SIGNED_IN = "not_signed_in"  # no credentials at all
    EXPIRED = "expired"  # a valid token whose time is up: reload to sign in again
    NOT_ALLOWED = "not_allowed"  # bad token, wrong tenant, unverified or unusable e-mail, ...
    UNAVAILABLE = "unavailable"  # the issuer's keys could not be fetched


def denial_of(error: IdentityError) -> Denial:
    """The page for ``error`` (every reason not listed here is "Not allowed")."""
    if error.reason is Reason.NO_TOKEN:
        return Denial.NOT_SIGNED_IN
    if error.reason is Reason.EXPIRED:
        return Denial.EXPIRED
    if error.retryable:
        return Denial.UNAVAILABLE
    return Denial.NOT_ALLOWED


def request_headers() -> dict[str, str]:
    """The HTTP headers of the browser's request: lower-cased names (tests patch this).

    A header sent several times is combined into one value joined by ``", "`` (RFC 9110,
    section 5.3), so a second ``Authorization`` header is visible to :func:`bearer_token`.

    Returns:
        An empty mapping outside a Streamlit request (e.g. in ``AppTest``).
    """
    import streamlit as st

    try:
        headers = st.context.headers
    except Exception:  # no script run context
        return {}
    if headers is None:
        return {}
    return {str(k).lower(): ", ".join(str(v) for v in headers.get_all(k)) for k in headers}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None.

    Raises:
        IdentityError: ``AMBIGUOUS_TOKEN`` when the header holds more than one credential
            (a JWS contains neither ``,`` nor whitespace).
    """
    value = headers.get("authorization", "").strip()
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if "," in token or any(ch.isspace() for ch in token):
        raise IdentityError(Reason.AMBIGUOUS_TOKEN, "the request carries more than one sign-in token")
    return token


def token_cookie_count(headers: Mapping[str, str]) -> int:
    """How many ``id_token`` cookies the request's ``Cookie`` header(s) carry."""
    pairs = headers.get("cookie", "").replace(",", ";").split(";")
    return sum(1 for pair in pairs if pair.partition("=")[0].strip() == TOKEN_COOKIE)


def check_origin(headers: Mapping[str, str], settings: Settings) -> None:
    """Refuse a page opened from another site (cross-site websocket hijacking).

    The headers Streamlit hands the script are those of the websocket handshake, whose ``Origin``
    a browser always sets to the page that opened the socket. Streamlit's own check admits every
    ``localhost`` origin, so this one compares with ``WEB_ALLOWED_ORIGINS`` (exact match, no
    wildcard); nothing is checked when that setting is unset.

    Raises:
        IdentityError: ``WRONG_ORIGIN`` when the Origin is missing or not listed.
    """
    if not settings.web_allowed_origins:
        return
    if headers.get("origin") not in settings.web_allowed_origins.split(","):
        raise IdentityError(Reason.WRONG_ORIGIN, "this chat was opened from another site")


def dev_identity(settings: Settings) -> Identity:
    """The unverified demo user of ``AUTH_MODE=dev``: ``DEV_USER_EMAIL``, with a stable subject."""
    email = check_email(settings.dev_user_email)
    subject = str(uuid.uuid5(DEV_SUBJECT_NAMESPACE, email))
    return Identity(subject=subject, email=email, tenant=settings.tenant_id, dev_mode=True)


def resolve_identity(
    headers: Mapping[str, str], settings: Settings, *, jwks_client: jwt.PyJWKClient | None = None
) -> Identity:
    """Establish the user from request headers (or ``DEV_USER_EMAIL`` in dev mode).

    Args:
        headers: request headers with lower-cased names (see :func:`request_headers`).
        settings: supplies ``AUTH_MODE``, ``ISSUER_URI``, ``COGNITO_CLIENT_ID``, ``TENANT_ID``,
            ``ID_TOKEN_VALIDITY_SECONDS``.
        jwks_client: overrides the JWKS-backed key source (tests).

    Returns:
        The identity: keyed by the token's ``sub``; the e-mail (the token's verified ``email``)
        is for display only.

    Raises:
        IdentityError: no, ambiguous or unacceptable credentials; ``reason`` says which.
    """
    check_origin(headers, settings)
    if settings.auth_mode == "dev":
        return dev_identity(settings)
    if token_cookie_count(headers) > 1:
        raise IdentityError(Reason.AMBIGUOUS_TOKEN, "the request carries more than one sign-in cookie")
    token = bearer_token(headers)
    if token is None:
        raise IdentityError(Reason.NO_TOKEN, "no sign-in token was sent with the request")
    identity = verify_id_token(token, settings, jwks_client=jwks_client)
    header_email = headers.get(EMAIL_HEADER)
    if header_email is not None and header_email.casefold() != (identity.email or "").casefold():
        raise IdentityError(Reason.HEADER_MISMATCH, "the e-mail header does not match the sign-in token")
    return identity
