"""Tenant and session identifiers: the one place that says what a valid id is.

Every entry point (API, ingestion, web chat, deploy scripts) validates a tenant id with
:func:`validate_tenant_id` before it builds a path, S3 key, table name or manifest from it.
The pattern is a DNS label (RFC 1123) of 3 to 32 characters, so the id fits a namespace
(``<tenant>-ns``), a subdomain, an S3 bucket name and a DynamoDB table name.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

TENANT_ID_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
_TENANT_ID_RE = re.compile(TENANT_ID_PATTERN)
#: A user's subject (the ``sub`` claim; a UUID in Cognito): 1-128 characters from a URL- and
#: key-safe set. No ``:`` (it separates the parts of a session id and a user key) and no ``#``
#: (it separates the parts of quota keys). OIDC allows up to 255 ASCII characters; no issuer this
#: project supports comes close (Cognito: 36).
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+=~|-]{0,127}$"
_SUBJECT_RE = re.compile(SUBJECT_PATTERN)
MAX_SESSION_ID_CHARS = 400


class InvalidTenantIdError(ValueError):
    """Raised when a tenant id does not match :data:`TENANT_ID_PATTERN`."""


class InvalidSessionIdError(ValueError):
    """Raised when a session id is not ``<tenant>:<subject>:<uuid>`` in canonical form."""


def validate_tenant_id(value: object) -> str:
    """Return ``value`` if it is a valid tenant id, else raise.

    Args:
        value: the candidate id, e.g. ``"tenanta"``. Must be a ``str`` of 3-32 characters:
            lowercase letters, digits and ``-``, starting with a letter, not ending with ``-``.

    Returns:
        The same string, unchanged (no normalisation: ``"TenantA"`` is refused, not lowered).

    Raises:
        InvalidTenantIdError: for anything else (empty, uppercase, ``../``, ``/``, too long).
    """
    if not isinstance(value, str) or not _TENANT_ID_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidTenantIdError(f"invalid tenant id {shown}: expected 3-32 characters matching {TENANT_ID_PATTERN}")
    return value


def user_key(tenant: str, subject: str) -> str:
    """``<tenant>:<subject>``: a user's key in the sessions store (and the user of usage/feedback rows).

    Args:
        tenant: a valid tenant id.
        subject: a subject matching :data:`SUBJECT_PATTERN`.

    Raises:
        InvalidTenantIdError: bad tenant id.
        InvalidSessionIdError: bad subject.
    """
    validate_tenant_id(tenant)
    _check_subject(subject)
    return f"{tenant}:{subject}"


def _check_subject(subject: object) -> str:
    if not isinstance(subject, str) or not _SUBJECT_RE.fullmatch(subject):
        raise InvalidSessionIdError(f"invalid user subject: expected 1-128 characters matching {SUBJECT_PATTERN}")
    return subject


@dataclass(frozen=True, slots=True)
class SessionId:
    """A chat session id, ``<tenant>:<subject>:<uuid>``, as the web chat creates it.

    There is exactly one spelling of a session: :func:`parse_session_id` refuses any other
    (an upper-case UUID, braces, a URN prefix), so ``str(parse_session_id(x)) == x`` whenever
    it succeeds and every store sees the same key for the same session.

    Attributes:
        tenant: the tenant id (validated).
        subject: the user's subject (the token's ``sub`` claim), see :data:`SUBJECT_PATTERN`.
        session_uuid: a UUID (any version) in canonical form: lower-case, hyphenated, 36 characters.
    """

    tenant: str
    subject: str
    session_uuid: str

    def __str__(self) -> str:
        return f"{self.tenant}:{self.subject}:{self.session_uuid}"

    @property
    def user_key(self) -> str:
        """``<tenant>:<subject>``: the key of the user's row in the sessions table."""
        return f"{self.tenant}:{self.subject}"

    @classmethod
    def new(cls, tenant: str, subject: str) -> SessionId:
        """Create a fresh session id for user ``subject`` in ``tenant``.

        Raises:
            InvalidTenantIdError: bad tenant id.
            InvalidSessionIdError: bad subject.
        """
        validate_tenant_id(tenant)
        _check_subject(subject)
        return parse_session_id(f"{tenant}:{subject}:{uuid.uuid4()}")


def parse_session_id(value: object) -> SessionId:
    """Parse and validate ``<tenant>:<subject>:<uuid>``, refusing every non-canonical spelling.

    Args:
        value: the session id string, at most :data:`MAX_SESSION_ID_CHARS` characters. The UUID
            must be lower-case and hyphenated (``str(uuid.UUID(...))``); ``A0B1...`` is refused,
            not lowered, so a client cannot store turns under a key that reads and deletes miss.

    Raises:
        InvalidSessionIdError: wrong shape, bad subject or a UUID not in canonical form.
        InvalidTenantIdError: the tenant part is not a valid tenant id.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_ID_CHARS:
        raise InvalidSessionIdError(
            f"session id must be a non-empty string of at most {MAX_SESSION_ID_CHARS} characters"
        )
    parts = value.split(":")
    if len(parts) != 3:
        raise InvalidSessionIdError("session id must look like '<tenant>:<subject>:<uuid>'")
    tenant, subject, raw_uuid = parts
    validate_tenant_id(tenant)
    _check_subject(subject)
    try:
        parsed = uuid.UUID(raw_uuid)
    except ValueError as exc:
        raise InvalidSessionIdError("session id has an invalid UUID part") from exc
    if str(parsed) != raw_uuid:
        raise InvalidSessionIdError("session id UUID must be in canonical form (lower-case, hyphenated)")
    return SessionId(tenant=tenant, subject=subject, session_uuid=raw_uuid)
