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
# A pragmatic e-mail shape (the identity provider already verified the address); no ':' allowed
# because ':' separates the parts of a session id.
_EMAIL_RE = re.compile(r"^[^\s:@]{1,64}@[^\s:@]{1,255}$")
MAX_SESSION_ID_CHARS = 400


class InvalidTenantIdError(ValueError):
    """Raised when a tenant id does not match :data:`TENANT_ID_PATTERN`."""


class InvalidSessionIdError(ValueError):
    """Raised when a session id is not ``<tenant>:<email>:<uuid>``."""


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


@dataclass(frozen=True, slots=True)
class SessionId:
    """A chat session id, ``<tenant>:<email>:<uuid>``, as the web chat creates it.

    Attributes:
        tenant: the tenant id (validated).
        email: the user's e-mail address from the identity provider.
        session_uuid: a UUID (any version) in canonical lowercase form.
    """

    tenant: str
    email: str
    session_uuid: str

    def __str__(self) -> str:
        return f"{self.tenant}:{self.email}:{self.session_uuid}"

    @property
    def user_key(self) -> str:
        """``<tenant>:<email>``: the key of the user's row in the sessions table."""
        return f"{self.tenant}:{self.email}"

    @classmethod
    def new(cls, tenant: str, email: str) -> SessionId:
        """Create a fresh session id for ``email`` in ``tenant``.

        Raises:
            InvalidTenantIdError: bad tenant id.
            InvalidSessionIdError: bad e-mail address.
        """
        return parse_session_id(f"{tenant}:{email}:{uuid.uuid4()}")


def parse_session_id(value: object) -> SessionId:
    """Parse and validate ``<tenant>:<email>:<uuid>``.

    Args:
        value: the session id string, at most :data:`MAX_SESSION_ID_CHARS` characters.

    Raises:
        InvalidSessionIdError: wrong shape, bad e-mail or bad UUID.
        InvalidTenantIdError: the tenant part is not a valid tenant id.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_ID_CHARS:
        raise InvalidSessionIdError("session id must be a non-empty string of at most 400 characters")
    parts = value.split(":")
    if len(parts) != 3:
        raise InvalidSessionIdError("session id must look like '<tenant>:<email>:<uuid>'")
    tenant, email, raw_uuid = parts
    validate_tenant_id(tenant)
    if not _EMAIL_RE.fullmatch(email):
        raise InvalidSessionIdError("session id has an invalid e-mail part")
    try:
        parsed = uuid.UUID(raw_uuid)
    except ValueError as exc:
        raise InvalidSessionIdError("session id has an invalid UUID part") from exc
    if str(parsed) != raw_uuid.lower():
        raise InvalidSessionIdError("session id UUID must be in canonical form")
    return SessionId(tenant=tenant, email=email, session_uuid=str(parsed))
