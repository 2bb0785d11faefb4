"""Tenant document management and on-demand ingestion: what the document and ingestion routes call.

:class:`DocumentServices` is built once per worker by the lifespan (``app.state.documents``):
the document store (``DOCUMENTS_URI`` or ``s3://$CONTEXTUAL_DATA_BUCKET/documents/``), the index
root (for the status object beside it) and the ingestion runner (:mod:`api.services.runners`).
Blocking calls (S3, files, the Kubernetes API) run in worker threads; the routes await them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.services.runners import IngestionRunner, RunnerUnavailableError, make_runner
from api.state import IndexHolder
from rag.documents.contract import (
    DocumentItem,
    DocumentList,
    IngestionState,
    IngestionStatus,
    UploadLimits,
    is_run_id,
    new_run_id,
)
from rag.documents.rules import UPLOAD_TYPES, check_document, normalise_name
from rag.documents.status import StatusUnreadableError, read_status
from rag.documents.store import DocumentStore, DocumentStoreUnavailableError, open_document_store
from rag.index.store import BlobStore
from rag.settings import Settings, SettingsError

log = logging.getLogger("api.documents")

#: Message of a status the job never finished (killed, out of memory, node lost).
VANISHED = "the ingestion job ended without reporting a result (stopped, out of memory or evicted?)"


class DocumentNotFoundError(LookupError):
    """No document of that name."""


def _store_call(what: str, call: Any, *args: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(*args)
    except (ClientError, BotoCoreError, OSError) as exc:
        log.warning("document store failed while %s: %s", what, exc)
        raise DocumentStoreUnavailableError(f"the document store failed while {what} ({type(exc).__name__})") from None


class IngestionBusyError(RuntimeError):
    """An ingestion is queued or running; ``run_id`` names it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"ingestion {run_id or '(scheduled)'} is still queued or running")
        self.run_id = run_id


@dataclass
class DocumentServices:
    """The documents, the status object and the runner of one worker.

    Attributes:
        settings: the validated settings.
        store: the tenant's documents.
        index_store: the index root (the status object is ``ingestion.json`` there).
        runner: starts ingestion runs.
        clock: UTC now (tests).
    """

    settings: Settings
    store: DocumentStore
    index_store: BlobStore
    runner: IngestionRunner
    clock: Any = field(default=lambda: datetime.now(UTC))
    _start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _queued: dict[str, IngestionStatus] = field(default_factory=dict)

    @property
    def limits(self) -> UploadLimits:
        """What uploads may be (from settings)."""
        return UploadLimits(
            max_file_bytes=self.settings.upload_max_file_bytes,
            max_upload_bytes=self.settings.upload_max_request_bytes,
            suffixes=sorted(UPLOAD_TYPES),
        )

    # --- documents ------------------------------------------------------------------
    def list_documents(self, holder: IndexHolder) -> DocumentList:
        """The documents with their chunks in the served index and the last run's skip reasons."""
        current = holder.get()
        chunks = {s.uri: s.chunks for s in current.version.manifest.sources} if current else {}
        last = self.latest()
        skipped = {s.source: s.reason for s in last.skipped} if last and not last.state.active else {}
        items = [
            DocumentItem(
                name=doc.name,
                size=doc.size,
                last_modified=doc.last_modified,
                uri=doc.uri,
                chunks=chunks.get(doc.uri),
                skipped_reason=skipped.get(doc.uri),
                deletable="/" not in doc.name,
            )
            for doc in _store_call("listing", self.store.list)
        ]
        return DocumentList(
            documents=items,
            index_version=current.version.version if current else None,
            index_chunks=current.version.manifest.count if current else None,
            last_ingestion=last,
            limits=self.limits,
        )

    def put_document(self, raw_name: str, data: bytes) -> DocumentItem:
        """Check and write one upload (nothing is written when a check fails).

        Raises:
            rag.documents.rules.DocumentRejected: the name, size or content is refused.
        """
        checked = check_document(raw_name, data, max_bytes=self.settings.upload_max_file_bytes)
        info = _store_call("writing", self.store.put, checked.name, checked.data, checked.content_type)
        log.info("document %s written (%d bytes, %s)", checked.name, info.size, checked.kind)
        return DocumentItem(name=info.name, size=info.size, last_modified=info.last_modified, uri=info.uri)

    def delete_document(self, raw_name: str) -> None:
        """Delete one document (it leaves the index at the next ingestion).

        Raises:
            rag.documents.rules.DocumentRejected: the name is not a plain file name.
            DocumentNotFoundError: there is no such document.
        """
        name = normalise_name(raw_name)
        if not _store_call("deleting", self.store.delete, name):
            raise DocumentNotFoundError(f"{name}: no such document")
        log.info("document %s deleted", name)

    # --- ingestion runs -------------------------------------------------------------
    def _read_status(self) -> IngestionStatus | None:
        try:
            return read_status(self.index_store)
        except StatusUnreadableError as exc:
            log.warning("ingestion status unreadable: %s", exc)
            return None

    def latest(self) -> IngestionStatus | None:
        """The newest run: a queued one this API started (or the runner knows), else the status object.

        A ``queued``/``running`` status older than ``INGESTION_GRACE_SECONDS`` whose run the runner
        no longer knows is reported as ``failed`` (the job died without a word).

        Raises:
            RunnerUnavailableError: the runner cannot say what runs.
        """
        status = self._read_status()
        active = self.runner.active_runs()
        now = self.clock()
        newest = max((r for r in active if is_run_id(r)), default=None)
        if newest and (status is None or newest > status.run_id):
            queued = self._queued.get(newest) or IngestionStatus(
                run_id=newest,
                tenant=self.settings.tenant_id,
                state=IngestionState.QUEUED,
                trigger="web",
                updated_at=now,
            )
            return queued
        if status and status.state.active and not active:
            age = (now - status.updated_at).total_seconds()
            if age > self.settings.ingestion_grace_seconds:
                return status.model_copy(
                    update={"state": IngestionState.FAILED, "errors": [*status.errors, VANISHED], "progress": None}
                )
        return status

    def _busy_run(self) -> str | None:
        active = self.runner.active_runs()
        if active:
            return max(active)
        status = self._read_status()
        if status and status.state.active:
            age = (self.clock() - status.updated_at).total_seconds()
            if age <= self.settings.ingestion_grace_seconds:
                return status.run_id
        return None

    async def start_ingestion(self) -> IngestionStatus:
        """Queue a run unless one is queued or running (one start at a time per worker).

        Raises:
            IngestionBusyError: a run is queued or running.
            RunnerUnavailableError: the job could not be started.
        """
        async with self._start_lock:
            busy = await asyncio.to_thread(self._busy_run)
            if busy is not None:
                raise IngestionBusyError(busy)
            now = self.clock()
            run_id = new_run_id(now)
            status = IngestionStatus(
                run_id=run_id,
                tenant=self.settings.tenant_id,
                state=IngestionState.QUEUED,
                trigger="web",
                requested_at=now,
                updated_at=now,
            )
            await asyncio.to_thread(self.runner.start, run_id)
            self._queued = {run_id: status}
            return status


def build_document_services(
    settings: Settings,
    index_store: BlobStore,
    *,
    s3_client: Any = None,
    store: DocumentStore | None = None,
    runner: IngestionRunner | None = None,
) -> DocumentServices | None:
    """Create the services from settings (called by the lifespan, in a worker thread); None when
    neither ``DOCUMENTS_URI`` nor ``CONTEXTUAL_DATA_BUCKET`` says where the documents are.

    A runner that cannot be built (``INGESTION_RUNNER=kubernetes`` outside a cluster) is replaced
    by one that answers every start with a 503 naming the reason, so the documents still work.
    """
    if store is None:
        try:
            uri = settings.default_source_uri
        except SettingsError:
            log.warning("no DOCUMENTS_URI or CONTEXTUAL_DATA_BUCKET: the document endpoints answer 503")
            return None
        if uri.startswith("s3://") and s3_client is None:
            from rag.aws import make_client

            try:
                s3_client = make_client("s3", settings)
            except SettingsError as exc:  # e.g. no AWS_DEFAULT_REGION: the rest of the API still serves
                log.warning("document store unavailable (%s): the document endpoints answer 503", exc)
                return None
        store = open_document_store(
            uri, s3_client=s3_client, sse=settings.documents_sse, kms_key_id=settings.documents_kms_key_id
        )
    if runner is None:
        try:
            runner = make_runner(settings)
        except RunnerUnavailableError as exc:
            log.warning("ingestion on demand unavailable: %s", exc)
            runner = _BrokenRunner(str(exc))
    return DocumentServices(settings=settings, store=store, index_store=index_store, runner=runner)


@dataclass
class _BrokenRunner:
    reason: str

    def start(self, run_id: str) -> str:
        raise RunnerUnavailableError(self.reason)

    def active_runs(self) -> list[str]:
        return []
