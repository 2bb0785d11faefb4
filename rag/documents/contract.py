"""Wire models of tenant document management: listings, uploads, ingestion runs and their status.

The RAG API builds its responses (and OpenAPI schema) from these; the web chat validates what it
receives with them; the ingestion job writes :class:`IngestionStatus` as JSON beside the index
(:mod:`rag.index.status`), which the API reads back with the same model.

Paths (all under ``RAG_API_URL``; every one needs a tenant admin's ID token, see ``docs/documents.md``)::

    GET    /api/v1/documents               DocumentList
    PUT    /api/v1/documents/{name}        body: the file's bytes  -> 201 DocumentItem
    DELETE /api/v1/documents/{name}        -> 204
    POST   /api/v1/ingestions              -> 202 IngestionStatus (409 while one runs)
    GET    /api/v1/ingestions/latest       -> IngestionStatus (404 before the first run)
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DOCUMENTS_PATH = "/api/v1/documents"
DOCUMENT_PATH = "/api/v1/documents/{name}"
INGESTIONS_PATH = "/api/v1/ingestions"
LATEST_INGESTION_PATH = "/api/v1/ingestions/latest"

#: A run id: UTC time to the second plus 32 random bits, e.g. ``20261202T010203Z-1a2b3c4d``
#: (sortable; lower-cased it is a valid part of a Kubernetes Job name).
RUN_ID_PATTERN = r"^\d{8}T\d{6}Z-[0-9a-f]{8}$"
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)
#: Most skipped files and errors kept in one status object (the rest are counted, not listed).
MAX_LISTED_PROBLEMS = 1000
#: Longest reason or error message kept, in characters.
MAX_REASON_CHARS = 500


def new_run_id(now: datetime | None = None) -> str:
    """A fresh ingestion run id (see :data:`RUN_ID_PATTERN`)."""
    return f"{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def is_run_id(value: object) -> bool:
    """True when ``value`` is a well-formed run id."""
    return isinstance(value, str) and bool(_RUN_ID_RE.fullmatch(value))


class IngestionState(StrEnum):
    """Where an ingestion run is: ``queued`` (asked for, not started), ``running``, then
    ``succeeded`` or ``failed``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """True for ``queued`` and ``running``."""
        return self in (IngestionState.QUEUED, IngestionState.RUNNING)


class SkippedFile(BaseModel):
    """A source file the run left out, and why (e.g. ``not valid UTF-8 (byte 3)``)."""

    source: str = Field(max_length=2048, description="S3 URI or path of the file")
    reason: str = Field(max_length=MAX_REASON_CHARS)


class IngestionProgress(BaseModel):
    """How far a running ingestion is: ``done`` of ``total`` items of its current ``phase``."""

    phase: Literal["loading", "embedding", "publishing"]
    done: int = Field(ge=0)
    total: int = Field(ge=0)


class IngestionCounts(BaseModel):
    """What the new index version holds (reused plus newly embedded), as the job's summary counts it."""

    sources: int = Field(ge=0)
    documents: int = Field(ge=0)
    chunks: int = Field(ge=0)
    embedded_chunks: int = Field(ge=0)
    reused_chunks: int = Field(ge=0)
    removed_sources: int = Field(ge=0)


class IngestionStatus(BaseModel):
    """One ingestion run: the object ``<index root>/ingestion.json`` and the API's ingestion responses.

    Attributes:
        run_id: see :data:`RUN_ID_PATTERN`.
        tenant: the tenant id.
        state: see :class:`IngestionState`.
        trigger: who started it: ``web`` (the Documents page / API), ``schedule`` (the CronJob),
            ``cli`` (``rag load``) or ``job`` (``python -m ingest`` run by hand).
        requested_at: when the run was asked for (UTC).
        started_at: when the job started (None while queued).
        finished_at: when it ended (None while active).
        updated_at: the last write (progress is written every few seconds while running).
        progress: while running.
        version: the published index version (succeeded; unchanged sources keep the old one).
        unchanged: nothing changed, the published version stays.
        counts: of the new version (succeeded).
        skipped: files left out, with reasons (also on failure).
        errors: why the run failed.
    """

    model_config = ConfigDict(extra="ignore")

    format: Literal[1] = 1
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    tenant: str = Field(max_length=32)
    state: IngestionState
    trigger: Literal["web", "schedule", "cli", "job"] = "job"
    requested_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    progress: IngestionProgress | None = None
    version: str | None = Field(default=None, max_length=64)
    unchanged: bool = False
    counts: IngestionCounts | None = None
    skipped: list[SkippedFile] = Field(default_factory=list, max_length=MAX_LISTED_PROBLEMS)
    errors: list[str] = Field(default_factory=list, max_length=MAX_LISTED_PROBLEMS)


class UploadLimits(BaseModel):
    """What the API accepts (``UPLOAD_MAX_FILE_BYTES``, ``UPLOAD_MAX_REQUEST_BYTES``), for the page to check first."""

    max_file_bytes: int = Field(description="largest single file, bytes")
    max_upload_bytes: int = Field(description="largest total of one upload of several files, bytes")
    suffixes: list[str] = Field(description="accepted file name suffixes, e.g. .pdf")


class DocumentItem(BaseModel):
    """One file under the tenant's ``documents/``.

    Attributes:
        name: the file name (relative to ``documents/``).
        size: bytes.
        last_modified: when it was last written (UTC).
        uri: where the ingestion job reads it (``s3://bucket/documents/name`` or a path).
        chunks: chunks of this file in the current index version (None: not in it).
        skipped_reason: why the last ingestion left the file out (None: it did not).
        deletable: False for files in sub-folders (put there by an operator, outside the page's rules).
    """

    name: str
    size: int = Field(ge=0)
    last_modified: datetime
    uri: str
    chunks: int | None = None
    skipped_reason: str | None = None
    deletable: bool = True


class DocumentList(BaseModel):
    """``GET /api/v1/documents``: the files, the index they are in and the last ingestion."""

    documents: list[DocumentItem]
    index_version: str | None = Field(description="the index version this API serves now (None: none loaded)")
    index_chunks: int | None = Field(default=None, description="chunks in that version")
    last_ingestion: IngestionStatus | None = None
    limits: UploadLimits
