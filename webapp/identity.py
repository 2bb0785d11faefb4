"""Who is asking: the signed-in user's e-mail, verified from the gateway's headers.

In the cluster the ingress gateway (oauth2-proxy / Istio ``RequestAuthentication``) has already
checked the Cognito token and forwards ``Authorization: Bearer <jwt>`` and
``X-Auth-Request-Email``. The web chat verifies the token again as a second line of defence
(signature against the issuer's JWKS, RS256 only, issuer, expiry, ``token_use``, client id and
``custom:tenantid == TENANT_ID``). ``AUTH_MODE=dev`` skips all of this and uses
``DEV_USER_EMAIL``: for the local demo only.

Nothing here renders anything; :mod:`webapp.ui` turns an :class:`IdentityError` into a page.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from rag.contract import EMAIL_CLAIM, EMAIL_HEADER, TENANT_CLAIM
from rag.settings import Settings

#: Where Cognito (and most OIDC issuers) publish their signing keys, relative to ``ISSUER_URI``.
JWKS_PATH = "/.well-known/jwks.json"
#: The only signature algorithm accepted (Cognito signs with RS256). Never ``none`` or ``HS*``.
ALLOWED_ALGORITHMS = ("RS256",)
#: Clock skew tolerated for ``exp``, ``nbf`` and ``iat``, in seconds.
LEEWAY_SECONDS = 30
#: Timeout of one JWKS download, in seconds.
JWKS_TIMEOUT_SECONDS = 5.0
#: How long a downloaded key set is trusted before it is fetched again, in seconds.
JWKS_LIFESPAN_SECONDS = 3600.0
#: Accepted ``token_use`` values: Cognito id tokens (checked by ``aud``) and access tokens (``client_id``).
TOKEN_USES = ("id", "access")


class Denial(StrEnum):
    """Why no identity could be established; each maps to one page in the UI."""

    NOT_SIGNED_IN = "not_signed_in"  # no credentials at all
    EXPIRED = "expired"  # a valid token whose time is up: reload to sign in again
    NOT_ALLOWED = "not_allowed"  # bad token, wrong tenant, wrong client, ...
    UNAVAILABLE = "unavailable"  # the issuer's keys could not be fetched


class IdentityError(Exception):
    """The request carries no acceptable identity.

    Attributes:
        denial: the category (decides the page shown).
        reason: a short, user-safe explanation (no token contents).
    """

    def __init__(self, denial: Denial, reason: str) -> None:
        super().__init__(f"{denial.value}: {reason}")
        self.denial = denial
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified user of this page view.

    Attributes:
        tenant: the tenant id (always ``TENANT_ID``).
        email: the user's e-mail address.
        dev_mode: True when identity was not verified (``AUTH_MODE=dev``).
    """

    tenant: str
    email: str
    dev_mode: bool = False

    @property
    def user_key(self) -> str:
        """``<tenant>:<email>``, the key of the user's row in the sessions store."""
        return f"{self.tenant}:{self.email}"


def request_headers() -> Mapping[str, str]:
    """The HTTP headers of the browser's request, lower-cased names (tests patch this).

    Returns:
        An empty mapping outside a Streamlit request (e.g. in ``AppTest``).
    """
    import streamlit as st

    try:
        headers = st.context.headers
    except Exception:  # no script run context
        return {}
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    value = headers.get("authorization", "").strip()
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@functools.lru_cache(maxsize=4)
def jwks_client(issuer_uri: str) -> jwt.PyJWKClient:
    """A key-caching JWKS client for ``issuer_uri`` (shared by all sessions; holds no user state).

    Keys are cached for :data:`JWKS_LIFESPAN_SECONDS`; a token signed with an unknown ``kid``
    makes PyJWT fetch the set again (key rotation), at most once per cooldown period.
    """
    return jwt.PyJWKClient(
        issuer_uri.rstrip("/") + JWKS_PATH,
        cache_keys=True,
        cache_jwk_set=True,
        lifespan=JWKS_LIFESPAN_SECONDS,
        timeout=JWKS_TIMEOUT_SECONDS,
    )


class TokenVerifier:
    """Checks a Cognito JWT against the issuer's JWKS and this deployment's tenant and client.

    Args:
        issuer_uri: expected ``iss``, e.g. ``https://cognito-idp.<region>.amazonaws.com/<pool>``.
        tenant_id: expected ``custom:tenantid``.
        client_id: expected ``aud`` (id tokens) / ``client_id`` (access tokens); None skips it.
        keys: the JWKS client (tests pass one fed from a local key set).
        leeway: clock skew tolerated, in seconds.
    """

    def __init__(
        self,
        issuer_uri: str,
        tenant_id: str,
        client_id: str | None = None,
        keys: jwt.PyJWKClient | None = None,
        leeway: float = LEEWAY_SECONDS,
    ) -> None:
        self.issuer_uri = issuer_uri
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.keys = keys or jwks_client(issuer_uri)
        self.leeway = leeway

    def verify(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims.

        Raises:
            IdentityError: ``EXPIRED``, ``NOT_ALLOWED`` or ``UNAVAILABLE`` (keys not reachable).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise IdentityError(Denial.NOT_ALLOWED, "the sign-in token is malformed") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise IdentityError(Denial.NOT_ALLOWED, "the sign-in token uses an unsupported algorithm")
        key = self._signing_key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALLOWED_ALGORITHMS),
                issuer=self.issuer_uri,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise IdentityError(Denial.EXPIRED, "your sign-in has expired") from None
        except jwt.InvalidIssuerError:
            raise IdentityError(Denial.NOT_ALLOWED, "the sign-in token comes from another issuer") from None
        except jwt.PyJWTError as exc:
            raise IdentityError(Denial.NOT_ALLOWED, f"the sign-in token is invalid ({type(exc).__name__})") from None
        self._check_claims(claims)
        return claims

    def _signing_key(self, token: str) -> Any:
        try:
            return self.keys.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise IdentityError(Denial.UNAVAILABLE, "the sign-in keys could not be fetched") from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.DecodeError):
            # unknown kid even after a refresh, or an unusable key set
            raise IdentityError(Denial.NOT_ALLOWED, "the sign-in token is signed with an unknown key") from None
        except Exception:  # e.g. network blocked or DNS failure surfacing as a non-PyJWT error
            raise IdentityError(Denial.UNAVAILABLE, "the sign-in keys could not be fetched") from None

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        token_use = claims.get("token_use")
        if token_use not in TOKEN_USES:
            raise IdentityError(Denial.NOT_ALLOWED, "the sign-in token is neither an id nor an access token")
        if self.client_id:
            audience = claims.get("aud") if token_use == TOKEN_USES[0] else claims.get("client_id")
            audiences = audience if isinstance(audience, list) else [audience]
            if self.client_id not in audiences:
                raise IdentityError(Denial.NOT_ALLOWED, "the sign-in token was issued to another application")
        if claims.get(TENANT_CLAIM) != self.tenant_id:
            raise IdentityError(Denial.NOT_ALLOWED, "your account does not belong to this tenant")


def resolve_identity(headers: Mapping[str, str], settings: Settings, verifier: TokenVerifier | None = None) -> Identity:
    """Establish the user from request headers (or ``DEV_USER_EMAIL`` in dev mode).

    Args:
        headers: request headers with lower-cased names (see :func:`request_headers`).
        settings: supplies ``AUTH_MODE``, ``ISSUER_URI``, ``COGNITO_CLIENT_ID``, ``TENANT_ID``.
        verifier: overrides the JWKS-backed verifier (tests).

    Returns:
        The identity. The e-mail is the token's ``email`` claim; when the token has none (Cognito
        access tokens) the gateway's ``X-Auth-Request-Email`` is used. When both are present
        they must agree (case-insensitively).

    Raises:
        IdentityError: no or unacceptable credentials.
    """
    if settings.auth_mode == "dev":
        return Identity(tenant=settings.tenant_id, email=settings.dev_user_email, dev_mode=True)
    token = bearer_token(headers)
    header_email = headers.get(EMAIL_HEADER, "").strip() or None
    if token is None:
        raise IdentityError(Denial.NOT_SIGNED_IN, "no sign-in token was sent with the request")
    if not settings.issuer_uri:  # also caught by the config check; defence in depth
        raise IdentityError(Denial.UNAVAILABLE, "ISSUER_URI is not configured")
    verifier = verifier or TokenVerifier(settings.issuer_uri, settings.tenant_id, settings.cognito_client_id)
    claims = verifier.verify(token)
    token_email = claims.get(EMAIL_CLAIM)
    token_email = token_email.strip() if isinstance(token_email, str) and token_email.strip() else None
    if token_email and header_email and token_email.lower() != header_email.lower():
        raise IdentityError(Denial.NOT_ALLOWED, "the e-mail header does not match the sign-in token")
    email = token_email or header_email
    if not email:
        raise IdentityError(Denial.NOT_SIGNED_IN, "the sign-in carries no e-mail address")
    if ":" in email or "@" not in email:
        raise IdentityError(Denial.NOT_ALLOWED, "the e-mail address is not usable")
    return Identity(tenant=settings.tenant_id, email=email)
