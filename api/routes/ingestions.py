"""On-demand ingestion: ``POST /api/v1/ingestions`` (409 while one runs), ``GET /api/v1/ingestions/latest``.

Tenant admins only. The job itself runs elsewhere (a Kubernetes Job from the tenant's CronJob, or
``python -m ingest`` locally: :mod:`api.services.runners`) and reports through the status object
beside the index; when it has published a new version, this API loads it at once (not only at the
next ``INDEX_POLL_SECONDS`` poll).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminDep, DocumentServicesDep, IndexDep
from api.errors import ApiError, classify_exception
from rag.contract import ErrorBody
from rag.documents.contract import IngestionState, IngestionStatus

router = APIRouter(prefix="/api/v1/ingestions", tags=["ingestions"])
_ERRORS = {403: {"model": ErrorBody}, 503: {"model": ErrorBody}}


@router.post("", status_code=202, response_model=IngestionStatus, responses={**_ERRORS, 409: {"model": ErrorBody}})
async def start_ingestion(admin: AdminDep, documents: DocumentServicesDep) -> IngestionStatus:
    """Queue a re-ingestion of the tenant's documents (202 ``queued``; 409 while one is queued or running)."""
    try:
        return await documents.start_ingestion()
    except Exception as exc:
        raise classify_exception(exc) from None


@router.get("/latest", response_model=IngestionStatus, responses={**_ERRORS, 404: {"model": ErrorBody}})
async def latest_ingestion(admin: AdminDep, documents: DocumentServicesDep, index: IndexDep) -> IngestionStatus:
    """The newest run: queued, running (with progress), succeeded (with counts) or failed (with reasons)."""
    try:
        status = await run_in_threadpool(documents.latest)
        if status is not None and status.state is IngestionState.SUCCEEDED and status.version:
            current = index.get()
            if current is None or current.version.version != status.version:
                await index.refresh()  # hot reload now; a failure keeps the old index (logged)
    except Exception as exc:
        raise classify_exception(exc) from None
    if status is None:
        raise ApiError(404, "no_ingestion", "No ingestion has run for this tenant yet.")
    return status
