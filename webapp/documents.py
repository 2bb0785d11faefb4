"""The Documents page's logic, independent of Streamlit: who is an admin, upload planning, texts.

Only tenant admins (``ADMIN_GROUP`` in the verified ``cognito:groups`` claim; ``DEV_USER_GROUPS``
with ``AUTH_MODE=dev``) see the page. The page never decides alone: every call carries the admin's
token and the API checks it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rag.documents.contract import IngestionState, IngestionStatus, UploadLimits
from rag.identity import Identity, IdentityError, verify_id_token
from rag.settings import Settings
from webapp.documents_client import DocumentsApiError, DocumentsClient

log = logging.getLogger(__name__)

PAGE_CHAT = "Chat"
PAGE_DOCUMENTS = "Documents"


def admin_identity(headers: Mapping[str, str], settings: Settings) -> Identity | None:
    """The signed-in user when they are a tenant admin, else None (the page stays hidden).

    Args:
        headers: request headers, lower-cased names (``webapp.identity.request_headers``).
        settings: ``AUTH_MODE``, ``ADMIN_GROUP``, ``DEV_USER_GROUPS`` and the issuer settings.
    """
    if settings.auth_mode == "dev":
        groups = tuple(g.strip() for g in settings.dev_user_groups.split(",") if g.strip())
        identity = Identity("dev-user", settings.dev_user_email, settings.tenant_id, groups, dev_mode=True)
        return identity if identity.in_group(settings.admin_group) else None
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        identity = verify_id_token(token.strip(), settings)
    except IdentityError as exc:  # the chat page reports sign-in problems; here: simply no admin page
        log.info("no Documents page: %s", exc.reason.value)
        return None
    return identity if identity.in_group(settings.admin_group) else None


def client_for(settings: Settings, admin: Identity) -> DocumentsClient:
    """The documents client acting as ``admin`` (tests patch this)."""
    return DocumentsClient(settings.rag_api_url, admin.token, upload_timeout=max(settings.rag_api_timeout_seconds, 60))


@dataclass(frozen=True)
class UploadOutcome:
    """One file of an upload: its name, whether it was stored, and the message to show."""

    name: str
    ok: bool
    message: str


def human_size(size: int) -> str:
    """``1536`` → ``1.5 KB`` (powers of 1024, one decimal)."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def check_upload_total(files: list[tuple[str, int]], limits: UploadLimits) -> str | None:
    """A message when the files together exceed ``max_upload_bytes`` (then nothing is sent), else None.

    Args:
        files: ``(name, size in bytes)`` of the selected files.
        limits: from the API's listing.
    """
    total = sum(size for _, size in files)
    if total > limits.max_upload_bytes:
        return (
            f"These {len(files)} files have {human_size(total)} together, over the "
            f"{human_size(limits.max_upload_bytes)} limit of one upload. Nothing was uploaded; upload fewer at a time."
        )
    return None


def upload_files(client: DocumentsClient, files: list[tuple[str, bytes]], limits: UploadLimits) -> list[UploadOutcome]:
    """Upload each file (the API checks name, type and content; a refused file is not written).

    Returns:
        One outcome per file, in order; an over-limit total gives one outcome per file, none sent.
    """
    problem = check_upload_total([(n, len(d)) for n, d in files], limits)
    if problem:
        return [UploadOutcome(name, False, problem) for name, _ in files]
    outcomes = []
    for name, data in files:
        try:
            item = client.upload(name, data)
        except DocumentsApiError as exc:
            outcomes.append(UploadOutcome(name, False, exc.message))
            continue
        outcomes.append(UploadOutcome(item.name, True, f"{item.name} uploaded ({human_size(item.size)})."))
    return outcomes


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def describe_ingestion(status: IngestionStatus | None) -> tuple[str, str]:
    """``(kind, text)`` for the last ingestion: kind is ``info``, ``running``, ``success`` or ``error``."""
    if status is None:
        return "info", "No ingestion has run yet."
    if status.state is IngestionState.QUEUED:
        return "info", f"Re-indexing is queued (run {status.run_id}); it starts in a moment."
    if status.state is IngestionState.RUNNING:
        progress = status.progress
        step = f": {progress.phase} {progress.done} of {progress.total}" if progress else ""
        return "running", f"Re-indexing is running since {_when(status.started_at)}{step}."
    if status.state is IngestionState.SUCCEEDED:
        counts = status.counts
        what = (
            f"{counts.sources} files, {counts.chunks} chunks ({counts.embedded_chunks} newly embedded, "
            f"{counts.reused_chunks} reused)"
            if counts
            else "done"
        )
        unchanged = " Nothing had changed." if status.unchanged else ""
        skipped = f" {len(status.skipped)} file(s) skipped (see the list)." if status.skipped else ""
        return "success", f"Last re-indexing succeeded at {_when(status.finished_at)}: {what}.{unchanged}{skipped}"
    reasons = "; ".join(status.errors) or "no reason was reported"
    return "error", f"Last re-indexing failed at {_when(status.finished_at)}: {reasons}"
