"""The tenant's documents: ``GET /api/v1/documents``, ``PUT`` and ``DELETE /api/v1/documents/{name}``.

Tenant admins only (:data:`api.deps.AdminDep`: the caller's own ID token, ``ADMIN_GROUP`` in its
``cognito:groups``). A ``PUT`` body is the file's raw bytes (``Content-Type`` is not trusted: the
type is recognised from the name and the content, :mod:`rag.documents.rules`); it is read up to
``UPLOAD_MAX_FILE_BYTES`` and refused (413) beyond, before anything is written.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminDep, DocumentServicesDep, IndexDep
from api.errors import ApiError, classify_exception
from rag.contract import ErrorBody
from rag.documents.contract import DocumentItem, DocumentList

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])
_ERRORS = {403: {"model": ErrorBody}, 503: {"model": ErrorBody}}
#: Longest ``{name}`` accepted in a path (characters); the rules allow 200, the rest is for a clear message.
MAX_PATH_NAME_CHARS = 1024
NameParam = Annotated[str, Path(max_length=MAX_PATH_NAME_CHARS, description="the file name, e.g. guide.pdf")]


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 ``file_too_large`` as soon as it passes ``max_bytes``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ApiError(413, "file_too_large", f"The file is over the {max_bytes} byte limit.")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise ApiError(413, "file_too_large", f"The file is over the {max_bytes} byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("", response_model=DocumentList, responses=_ERRORS)
async def list_documents(admin: AdminDep, documents: DocumentServicesDep, index: IndexDep) -> DocumentList:
    """The files under the tenant's ``documents/``: size, last modified, chunks in the served index,
    and why the last ingestion skipped a file; plus the index version and the last ingestion."""
    try:
        listing = await run_in_threadpool(documents.list_documents, index)
        last = listing.last_ingestion
        if last is not None and last.version and last.version != listing.index_version and await index.refresh():
            listing = await run_in_threadpool(documents.list_documents, index)  # the new version is served now
    except Exception as exc:
        raise classify_exception(exc) from None
    return listing


@router.put(
    "/{name:path}",
    status_code=201,
    response_model=DocumentItem,
    responses={**_ERRORS, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the file's bytes (CSV, TXT, MD, HTML or PDF)",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_document(
    name: NameParam, request: Request, admin: AdminDep, documents: DocumentServicesDep
) -> DocumentItem:
    """Upload (or replace) one document; it is searchable after the next ingestion."""
    try:
        data = await read_body(request, documents.settings.upload_max_file_bytes)
        return await run_in_threadpool(documents.put_document, name, data)
    except Exception as exc:
        raise classify_exception(exc) from None


@router.delete(
    "/{name:path}", status_code=204, responses={**_ERRORS, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)
async def delete_document(name: NameParam, admin: AdminDep, documents: DocumentServicesDep) -> Response:
    """Delete one document; it leaves the index at the next ingestion."""
    try:
        await run_in_threadpool(documents.delete_document, name)
    except Exception as exc:
        raise classify_exception(exc) from None
    return Response(status_code=204)
