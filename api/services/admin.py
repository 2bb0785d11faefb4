"""Who may manage the tenant's documents: members of ``ADMIN_GROUP`` with a valid ID token.

The RAG API checks the caller's token itself (the same JWKS, issuer, audience and tenant checks
as the web chat, :func:`rag.identity.verify_id_token`), so a request without an admin's token is
refused even when it comes from inside the pod. Group membership comes only from the verified
``cognito:groups`` claim; no header (``X-Auth-Request-Groups`` or any other) is consulted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.identity import Identity, IdentityError, Reason, verify_id_token
from rag.settings import Settings


class AdminDenied(Exception):
    """The caller is not a tenant admin.

    Attributes:
        status: 403, or 503 when the issuer's keys cannot be fetched.
        code: ``admin_token_missing``, ``admin_token_invalid``, ``admin_token_expired``,
            ``admin_wrong_tenant``, ``not_admin`` or ``identity_unavailable``.
        message: a sentence for people.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (header names lower-cased), else None."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorize_admin(headers: Mapping[str, str], settings: Settings, *, jwks_client: Any = None) -> Identity:
    """The verified admin behind a request, or :class:`AdminDenied`.

    Args:
        headers: request headers, lower-cased names.
        settings: ``AUTH_MODE``, ``ISSUER_URI``, ``COGNITO_CLIENT_ID``, ``TENANT_ID``, ``ADMIN_GROUP``
            (``DEV_USER_GROUPS`` in dev mode).
        jwks_client: the key source (tests).

    Raises:
        AdminDenied: no token, an invalid one, or a user outside ``ADMIN_GROUP``.
    """
    group = settings.admin_group
    if settings.auth_mode == "dev":  # the local demo without sign-in; never in the cluster manifests
        groups = tuple(g.strip() for g in settings.dev_user_groups.split(",") if g.strip())
        identity = Identity(
            subject="dev-user", email=settings.dev_user_email, tenant=settings.tenant_id, groups=groups, dev_mode=True
        )
    else:
        token = bearer_token(headers)
        if token is None:
            raise AdminDenied(403, "admin_token_missing", "This needs a tenant admin's sign-in token (none was sent).")
        try:
            identity = verify_id_token(token, settings, jwks_client=jwks_client)
        except IdentityError as exc:
            if exc.retryable:
                raise AdminDenied(
                    503, "identity_unavailable", f"The sign-in cannot be checked now: {exc.message}."
                ) from None
            code = {
                Reason.EXPIRED: "admin_token_expired",
                Reason.WRONG_TENANT: "admin_wrong_tenant",
            }.get(exc.reason, "admin_token_invalid")
            raise AdminDenied(
                403, code, f"The sign-in token was refused: {exc.message} ({exc.reason.value})."
            ) from None
    if not identity.in_group(group):
        raise AdminDenied(403, "not_admin", f"Only members of the {group!r} group manage this tenant's documents.")
    return identity
