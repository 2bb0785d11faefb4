"""Who is asking: verification of a Cognito (OIDC) ID token into an :class:`Identity`.

The kernel's one token check, for the RAG API's admin endpoints (and the web chat's Documents
page). It depends only on PyJWT and :mod:`rag.settings`. The checks: RS256 only, a ``kid`` from
the issuer's JWKS (``<ISSUER_URI>/.well-known/jwks.json``, cached), the signature, ``iss``,
``exp``/``nbf``/``iat`` with :data:`LEEWAY_SECONDS` of skew, ``token_use == "id"``, ``aud``
containing ``COGNITO_CLIENT_ID`` (when set), ``custom:tenantid == TENANT_ID``, and
``cognito:groups`` a list of short strings.

References: https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-tokens-verifying-a-jwt.html
and the ID token's claims,
https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from rag.settings import Settings

JWKS_PATH = "/.well-known/jwks.json"
ALLOWED_ALGORITHMS = ("RS256",)
LEEWAY_SECONDS = 30
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_LIFESPAN_SECONDS = 3600.0
TENANT_CLAIM = "custom:tenantid"
GROUPS_CLAIM = "cognito:groups"
ID_TOKEN_USE = "id"  # noqa: S105 - a claim value, not a secret
MAX_TOKEN_CHARS = 16_384
MAX_GROUPS = 100
MAX_GROUP_CHARS = 128


class Reason(StrEnum):
    """Why a token was refused (stable codes for logs, tests and API error bodies)."""

    NO_TOKEN = "no_token"  # noqa: S105 - a reason code, not a secret
    NOT_CONFIGURED = "not_configured"
    MALFORMED = "malformed"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_KEY = "unknown_key"
    KEYS_UNAVAILABLE = "keys_unavailable"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MISSING_CLAIM = "missing_claim"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_TOKEN_USE = "wrong_token_use"  # noqa: S105 - a reason code
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_TENANT = "wrong_tenant"
    INVALID_GROUPS = "invalid_groups"
    INVALID_CLAIM = "invalid_claim"


RETRYABLE_REASONS = frozenset({Reason.KEYS_UNAVAILABLE, Reason.NOT_CONFIGURED})


class IdentityError(Exception):
    """The token does not establish an acceptable identity.

    Attributes:
        reason: the machine-readable cause.
        message: a short, user-safe explanation (never token contents).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """True when the issuer or the configuration is at fault, not the token."""
        return self.reason in RETRYABLE_REASONS


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user.

    Attributes:
        subject: the ``sub`` claim (the user's immutable id).
        email: the ``email`` claim (display only), None when absent.
        tenant: the tenant id (this deployment's ``TENANT_ID``).
        groups: the ``cognito:groups`` claim (empty when absent).
        token: the verified token (to forward); empty in dev mode.
        dev_mode: nothing was verified (``AUTH_MODE=dev``, the local demo only).
    """

    subject: str
    email: str | None
    tenant: str
    groups: tuple[str, ...] = ()
    token: str = ""
    dev_mode: bool = False

    def in_group(self, group: str) -> bool:
        """True when the user belongs to Cognito group ``group`` (exact match)."""
        return group in self.groups


@functools.lru_cache(maxsize=4)
def cached_jwks_client(issuer_uri: str) -> jwt.PyJWKClient:
    """A key-caching JWKS client for ``issuer_uri`` (shared; holds no user state)."""
    return jwt.PyJWKClient(
        issuer_uri.rstrip("/") + JWKS_PATH,
        cache_keys=True,
        cache_jwk_set=True,
        lifespan=JWKS_LIFESPAN_SECONDS,
        timeout=JWKS_TIMEOUT_SECONDS,
    )


def verify_id_token(token: str, settings: Settings, *, jwks_client: jwt.PyJWKClient | None = None) -> Identity:
    """Verify a Cognito ID token for this deployment's tenant and return the user.

    Args:
        token: the compact JWS (the ``Authorization: Bearer`` value).
        settings: ``ISSUER_URI``, ``COGNITO_CLIENT_ID`` (None skips the audience check), ``TENANT_ID``.
        jwks_client: the key source (default :func:`cached_jwks_client`).

    Raises:
        IdentityError: with the :class:`Reason` of the first failed check.
    """
    if not token:
        raise IdentityError(Reason.NO_TOKEN, "no sign-in token was sent with the request")
    if not settings.issuer_uri:
        raise IdentityError(Reason.NOT_CONFIGURED, "ISSUER_URI is not configured")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise IdentityError(Reason.MALFORMED, "the sign-in token is malformed")
    keys = jwks_client or cached_jwks_client(settings.issuer_uri)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdentityError(Reason.MALFORMED, "the sign-in token is malformed") from None
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise IdentityError(Reason.UNSUPPORTED_ALGORITHM, "the sign-in token uses an unsupported algorithm")
    try:
        key = keys.get_signing_key_from_jwt(token).key
    except jwt.PyJWKClientConnectionError:
        raise IdentityError(Reason.KEYS_UNAVAILABLE, "the sign-in keys could not be fetched") from None
    except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.DecodeError):
        raise IdentityError(Reason.UNKNOWN_KEY, "the sign-in token is signed with an unknown key") from None
    except Exception:
        raise IdentityError(Reason.KEYS_UNAVAILABLE, "the sign-in keys could not be fetched") from None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=list(ALLOWED_ALGORITHMS),
            issuer=settings.issuer_uri,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise IdentityError(Reason.EXPIRED, "your sign-in has expired") from None
    except jwt.ImmatureSignatureError:
        raise IdentityError(Reason.NOT_YET_VALID, "the sign-in token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise IdentityError(Reason.WRONG_ISSUER, "the sign-in token comes from another issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise IdentityError(Reason.MISSING_CLAIM, f"the sign-in token has no '{exc.claim}' claim") from None
    except jwt.InvalidSignatureError:
        raise IdentityError(Reason.BAD_SIGNATURE, "the sign-in token's signature is invalid") from None
    except jwt.DecodeError:
        raise IdentityError(Reason.MALFORMED, "the sign-in token is malformed") from None
    except jwt.PyJWTError as exc:
        raise IdentityError(Reason.INVALID_CLAIM, f"the sign-in token is invalid ({type(exc).__name__})") from None
    return identity_from_claims(claims, settings, token=token)


def identity_from_claims(claims: Mapping[str, Any], settings: Settings, *, token: str = "") -> Identity:
    """Apply the claim rules to claims whose signature is already verified.

    Raises:
        IdentityError: see :class:`Reason`.
    """
    if claims.get("token_use") != ID_TOKEN_USE:
        raise IdentityError(Reason.WRONG_TOKEN_USE, "the sign-in token is not an ID token")
    if settings.cognito_client_id:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.cognito_client_id not in audiences:
            raise IdentityError(Reason.WRONG_AUDIENCE, "the sign-in token was issued to another application")
    if claims.get(TENANT_CLAIM) != settings.tenant_id:
        raise IdentityError(Reason.WRONG_TENANT, "your account does not belong to this tenant")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise IdentityError(Reason.INVALID_CLAIM, "the sign-in token's user id is not allowed")
    email = claims.get("email")
    return Identity(
        subject=subject,
        email=email if isinstance(email, str) else None,
        tenant=settings.tenant_id,
        groups=_groups(claims.get(GROUPS_CLAIM)),
        token=token,
    )


def _groups(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > MAX_GROUPS
        or not all(isinstance(g, str) and 0 < len(g) <= MAX_GROUP_CHARS and g.isprintable() for g in value)
    ):
        raise IdentityError(Reason.INVALID_GROUPS, "the sign-in token's groups are not allowed")
    return tuple(value)
