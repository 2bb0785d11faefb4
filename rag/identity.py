"""Who is asking: verification of a Cognito (OIDC) ID token into an :class:`Identity`.

This is the kernel's one implementation of the token check; the web chat (``webapp.identity``)
and the RAG API use it. It depends only on PyJWT and :mod:`rag.settings`: no web framework.

A user is identified by the token's ``sub`` claim (the *subject*). In Cognito the ``sub`` is the
user's immutable id (a UUID), assigned at sign-up and never reused; the ``email`` claim is a
mutable attribute that a user (or an app client allowed to write it) can change, and a changed
address appears in new ID tokens at once, unverified. Keys of sessions, history, usage, quota
and feedback are therefore built from the subject; the e-mail is for display only
(see ``SECURITY.md``, "Which claim identifies a user").

The checks, in order (each refusal is an :class:`IdentityError` with a machine ``reason``):

1. the token is a JWS compact string of at most :data:`MAX_TOKEN_CHARS` characters with header
   ``alg: RS256`` (never ``none`` or ``HS*``) and a ``kid`` known to the issuer's JWKS
   (``<ISSUER_URI>/.well-known/jwks.json``, cached, re-fetched once for an unknown ``kid``);
2. the signature, ``iss == ISSUER_URI``, ``exp``/``nbf``/``iat`` with :data:`LEEWAY_SECONDS` of
   clock skew, and ``exp``, ``iat``, ``iss``, ``sub`` present;
3. the lifetime ``exp - iat`` is at most ``ID_TOKEN_VALIDITY_SECONDS`` (the user pool's ID
   token validity, default 3600 s) plus the leeway: a token minted to live 100 years is refused;
4. ``token_use == "id"`` and ``aud`` contains ``COGNITO_CLIENT_ID`` (when it is set);
5. ``custom:tenantid == TENANT_ID``;
6. ``sub`` matches :data:`rag.tenant.SUBJECT_PATTERN` (it becomes part of store keys);
7. ``email``, when present, is a plain address (no whitespace or control characters, at most
   :data:`MAX_EMAIL_CHARS`) and ``email_verified`` is true;
8. ``cognito:groups``, when present, is a list of at most :data:`MAX_GROUPS` short strings.

References: Cognito ID token claims
(https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html),
verifying a Cognito JWT
(https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-tokens-verifying-a-jwt.html),
OpenID Connect Core 1.0 section 2 (``sub``: "never reassigned", at most 255 ASCII characters).

Example (the API's admin check)::

    identity = verify_id_token(bearer, settings)
    if not identity.in_group("tenant-admins"):
        raise HTTPException(403)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rag.settings import Settings
from rag.tenant import SUBJECT_PATTERN, user_key

if TYPE_CHECKING:
    import jwt

# PyJWT (and the ``cryptography`` bindings under it, about 10 MiB of PSS) is imported by the functions
# that verify a token, on first use, not with this module: the RAG API imports the claim constants on
# every worker but verifies a token only for an admin request (see docs/api.md "Workers and memory").

#: Where Cognito (and most OIDC issuers) publish their signing keys, relative to ``ISSUER_URI``.
JWKS_PATH = "/.well-known/jwks.json"
#: The only signature algorithm accepted (Cognito signs with RS256). Never ``none`` or ``HS*``.
ALLOWED_ALGORITHMS = ("RS256",)
#: Clock skew tolerated for ``exp``, ``nbf``, ``iat`` and the lifetime check, in seconds.
LEEWAY_SECONDS = 30
#: Timeout of one JWKS download, in seconds.
JWKS_TIMEOUT_SECONDS = 5.0
#: How long a downloaded key set is trusted before it is fetched again, in seconds.
JWKS_LIFESPAN_SECONDS = 3600.0
#: The demo issuer's (and local gateway's) cookie holding the ID token; a request with two is refused.
TOKEN_COOKIE = "id_token"  # noqa: S105 - a cookie name, not a secret
#: The claim carrying the user's tenant (a Cognito custom attribute).
TENANT_CLAIM = "custom:tenantid"
#: The claim listing the user's Cognito groups.
GROUPS_CLAIM = "cognito:groups"
#: The only accepted ``token_use``: Cognito ID tokens (access tokens carry no ``aud``, no e-mail).
ID_TOKEN_USE = "id"  # noqa: S105 - a claim value, not a secret
#: Longest token accepted, in characters (Cognito ID tokens are 1-2 KB; Envoy allows 60 KB headers).
MAX_TOKEN_CHARS = 16_384
#: Longest e-mail address accepted (RFC 5321 section 4.5.3.1.3: a path is at most 256 octets incl. ``<>``).
MAX_EMAIL_CHARS = 254
#: Most groups accepted in ``cognito:groups``, and the longest group name (Cognito: 128 characters).
MAX_GROUPS = 100
MAX_GROUP_CHARS = 128

_SUBJECT_RE = re.compile(SUBJECT_PATTERN)
# No whitespace, no control characters (C0, DEL, C1), no ':' (a separator in display strings), one '@'.
_EMAIL_RE = re.compile(r"^[^\s\x00-\x1f\x7f-\x9f:@]{1,64}@[^\s\x00-\x1f\x7f-\x9f:@]{1,189}$")


class Reason(StrEnum):
    """Why a token was refused: stable, machine-readable codes (logs, tests, API error bodies)."""

    NO_TOKEN = "no_token"  # noqa: S105 - no credentials at all
    NOT_CONFIGURED = "not_configured"  # ISSUER_URI missing
    MALFORMED = "malformed"  # not a JWS, too long, undecodable
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"  # alg other than RS256
    UNKNOWN_KEY = "unknown_key"  # kid not in the issuer's JWKS (after a refresh)
    KEYS_UNAVAILABLE = "keys_unavailable"  # the JWKS could not be fetched
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # nbf or iat in the future
    MISSING_CLAIM = "missing_claim"  # exp, iat, iss or sub absent
    WRONG_ISSUER = "wrong_issuer"
    WRONG_TOKEN_USE = "wrong_token_use"  # noqa: S105 - not an ID token
    WRONG_AUDIENCE = "wrong_audience"  # issued to another app client
    LIFETIME_TOO_LONG = "lifetime_too_long"  # exp - iat above the pool's ID token validity
    WRONG_TENANT = "wrong_tenant"
    INVALID_SUBJECT = "invalid_subject"
    INVALID_EMAIL = "invalid_email"  # control characters, whitespace, oversize, not an address
    EMAIL_NOT_VERIFIED = "email_not_verified"
    INVALID_GROUPS = "invalid_groups"
    INVALID_CLAIM = "invalid_claim"  # any other claim of the wrong type or value
    AMBIGUOUS_TOKEN = "ambiguous_token"  # noqa: S105 - two Authorization headers or two token cookies
    HEADER_MISMATCH = "header_mismatch"  # a gateway identity header disagrees with the token
    WRONG_ORIGIN = "wrong_origin"  # the browser page is not the tenant's own (cross-site websocket)


#: Reasons that mean "try again later" rather than "you may not".
RETRYABLE_REASONS = frozenset({Reason.KEYS_UNAVAILABLE, Reason.NOT_CONFIGURED})


class IdentityError(Exception):
    """The token does not establish an acceptable identity.

    Attributes:
        reason: the machine-readable cause (:class:`Reason`).
        message: a short, user-safe explanation (never token contents).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """True when the refusal is the issuer's or the configuration's fault, not the token's."""
        return self.reason in RETRYABLE_REASONS


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user.

    Attributes:
        subject: the ``sub`` claim: the user's immutable id; the only part used in store keys.
        email: the verified ``email`` claim, for display only; None when the token has none.
        tenant: the tenant id (always this deployment's ``TENANT_ID``).
        groups: the ``cognito:groups`` claim (empty when absent), in token order.
        token: the verified token itself (to forward); empty in dev mode.
        dev_mode: True when nothing was verified (``AUTH_MODE=dev``, the local demo only).
    """

    subject: str
    email: str | None
    tenant: str
    groups: tuple[str, ...] = ()
    token: str = ""
    dev_mode: bool = False

    @property
    def user_key(self) -> str:
        """``<tenant>:<subject>``: the user's key in the sessions, usage, quota and feedback stores."""
        return user_key(self.tenant, self.subject)

    @property
    def display_name(self) -> str:
        """The e-mail address when known, else the subject (for page headers and logs)."""
        return self.email or self.subject

    def in_group(self, group: str) -> bool:
        """True when the user belongs to Cognito group ``group`` (exact, case-sensitive match)."""
        return group in self.groups


@functools.lru_cache(maxsize=4)
def cached_jwks_client(issuer_uri: str) -> jwt.PyJWKClient:
    """A key-caching JWKS client for ``issuer_uri`` (shared by all requests; holds no user state).

    Keys are cached for :data:`JWKS_LIFESPAN_SECONDS`; a token signed with an unknown ``kid``
    makes PyJWT fetch the set again (key rotation).

    Args:
        issuer_uri: the issuer, without a trailing slash.
    """
    import jwt

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
        token: the compact JWS (the ``Authorization: Bearer`` value), at most
            :data:`MAX_TOKEN_CHARS` characters.
        settings: supplies ``ISSUER_URI``, ``COGNITO_CLIENT_ID`` (None skips the audience check),
            ``TENANT_ID`` and ``ID_TOKEN_VALIDITY_SECONDS``.
        jwks_client: the key source; default :func:`cached_jwks_client` of ``ISSUER_URI`` (tests pass one).

    Returns:
        The identity; ``token`` is the argument.

    Raises:
        IdentityError: with the :class:`Reason` of the first failed check (see the module docstring).
    """
    if not token:
        raise IdentityError(Reason.NO_TOKEN, "no sign-in token was sent with the request")
    if not settings.issuer_uri:
        raise IdentityError(Reason.NOT_CONFIGURED, "ISSUER_URI is not configured")
    claims = _verified_claims(token, settings, jwks_client or cached_jwks_client(settings.issuer_uri))
    return identity_from_claims(claims, settings, token=token)


def identity_from_claims(claims: Mapping[str, Any], settings: Settings, *, token: str = "") -> Identity:
    """Apply the claim rules (checks 3 to 8) to claims whose signature is already verified.

    Args:
        claims: the decoded payload.
        settings: as for :func:`verify_id_token`.
        token: stored in the result.

    Raises:
        IdentityError: see :class:`Reason`.
    """
    _check_lifetime(claims, settings.id_token_validity_seconds)
    if claims.get("token_use") != ID_TOKEN_USE:
        raise IdentityError(Reason.WRONG_TOKEN_USE, "the sign-in token is not an ID token")
    if settings.cognito_client_id:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.cognito_client_id not in audiences:
            raise IdentityError(Reason.WRONG_AUDIENCE, "the sign-in token was issued to another application")
    if claims.get(TENANT_CLAIM) != settings.tenant_id:
        raise IdentityError(Reason.WRONG_TENANT, "your account does not belong to this tenant")
    return Identity(
        subject=check_subject(claims.get("sub")),
        email=_email(claims),
        tenant=settings.tenant_id,
        groups=_groups(claims.get(GROUPS_CLAIM)),
        token=token,
    )


def check_subject(value: object) -> str:
    """Return ``value`` if it is a usable subject (``sub``), else raise.

    Args:
        value: the claim; must be a ``str`` matching :data:`rag.tenant.SUBJECT_PATTERN`.

    Raises:
        IdentityError: ``MISSING_CLAIM`` when None, ``INVALID_SUBJECT`` otherwise.
    """
    if value is None:
        raise IdentityError(Reason.MISSING_CLAIM, "the sign-in token has no subject")
    if not isinstance(value, str) or not _SUBJECT_RE.fullmatch(value):
        raise IdentityError(Reason.INVALID_SUBJECT, "the sign-in token's user id is not allowed")
    return value


def check_email(value: object) -> str:
    """Return ``value`` if it is a displayable e-mail address, else raise.

    Args:
        value: a ``str`` of at most :data:`MAX_EMAIL_CHARS` characters with one ``@``, no
            whitespace, no control characters and no ``:``. Nothing is stripped or lowered:
            ``"alice@example.com "`` is refused, not repaired.

    Raises:
        IdentityError: ``INVALID_EMAIL``.
    """
    if not isinstance(value, str) or len(value) > MAX_EMAIL_CHARS or not _EMAIL_RE.fullmatch(value):
        raise IdentityError(Reason.INVALID_EMAIL, "the e-mail address of your account is not allowed")
    return value


def _verified_claims(token: str, settings: Settings, keys: jwt.PyJWKClient) -> dict[str, Any]:
    import jwt

    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise IdentityError(Reason.MALFORMED, "the sign-in token is malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdentityError(Reason.MALFORMED, "the sign-in token is malformed") from None
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise IdentityError(Reason.UNSUPPORTED_ALGORITHM, "the sign-in token uses an unsupported algorithm")
    key = _signing_key(token, keys)
    try:
        return jwt.decode(
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
    except jwt.exceptions.InvalidSubjectError:
        raise IdentityError(Reason.INVALID_SUBJECT, "the sign-in token's user id is not allowed") from None
    except jwt.InvalidSignatureError:
        raise IdentityError(Reason.BAD_SIGNATURE, "the sign-in token's signature is invalid") from None
    except jwt.DecodeError:
        raise IdentityError(Reason.MALFORMED, "the sign-in token is malformed") from None
    except jwt.PyJWTError as exc:
        raise IdentityError(Reason.INVALID_CLAIM, f"the sign-in token is invalid ({type(exc).__name__})") from None


def _signing_key(token: str, keys: jwt.PyJWKClient) -> Any:
    import jwt

    try:
        return keys.get_signing_key_from_jwt(token).key
    except jwt.PyJWKClientConnectionError:
        raise IdentityError(Reason.KEYS_UNAVAILABLE, "the sign-in keys could not be fetched") from None
    except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.DecodeError):
        # unknown kid even after a refresh, or an unusable key set
        raise IdentityError(Reason.UNKNOWN_KEY, "the sign-in token is signed with an unknown key") from None
    except Exception:  # e.g. network blocked or DNS failure surfacing as a non-PyJWT error
        raise IdentityError(Reason.KEYS_UNAVAILABLE, "the sign-in keys could not be fetched") from None


def _check_lifetime(claims: Mapping[str, Any], validity_seconds: int) -> None:
    issued, expires = claims.get("iat"), claims.get("exp")
    if not _is_number(issued) or not _is_number(expires):  # PyJWT checked presence, not both types
        raise IdentityError(Reason.INVALID_CLAIM, "the sign-in token's times are not numbers")
    if expires - issued > validity_seconds + LEEWAY_SECONDS:
        raise IdentityError(Reason.LIFETIME_TOO_LONG, "the sign-in token lives longer than this pool allows")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _email(claims: Mapping[str, Any]) -> str | None:
    if "email" not in claims:
        return None
    email = check_email(claims["email"])
    verified = claims.get("email_verified")
    if verified is not True and verified != "true":  # Cognito sends a boolean; some IdPs the string
        raise IdentityError(Reason.EMAIL_NOT_VERIFIED, "the e-mail address of your account is not verified")
    return email


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
