"""HTTP client for the RAG API's document and ingestion endpoints, on behalf of one signed-in admin.

Every call forwards the user's own ID token (``Authorization: Bearer``): the API checks it again
(issuer, audience, tenant, ``ADMIN_GROUP``), so the web chat never vouches for anybody. Responses
are validated with the wire models of :mod:`rag.documents.contract`. Failures become
:class:`DocumentsApiError` with the API's error code and message (or a sentence when unreachable).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from rag.documents.contract import (
    DOCUMENT_PATH,
    DOCUMENTS_PATH,
    INGESTIONS_PATH,
    LATEST_INGESTION_PATH,
    DocumentItem,
    DocumentList,
    IngestionStatus,
)

#: Seconds to wait for a listing, a delete or a start; uploads get :attr:`DocumentsClient.upload_timeout`.
SHORT_TIMEOUT_SECONDS = 15.0


class DocumentsApiError(Exception):
    """The API refused or could not be reached.

    Attributes:
        status: HTTP status, None when unreachable.
        code: the API's ``error`` code (``not_admin``, ``invalid_name``, ``ingestion_running``, ...).
        message: a sentence for the admin.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(response: httpx.Response) -> DocumentsApiError:
    try:
        body = response.json()
        code, message = str(body.get("error", "error")), str(body.get("message", ""))
    except (ValueError, AttributeError):
        code, message = "error", ""
    return DocumentsApiError(message or f"The assistant answered HTTP {response.status_code}.",
                             status=response.status_code, code=code)  # fmt: skip


class DocumentsClient:
    """Calls for one admin.

    Args:
        base_url: ``RAG_API_URL``.
        token: the admin's verified ID token ("" in dev mode: the API then applies ``DEV_USER_GROUPS``).
        upload_timeout: seconds for one upload.
        transport: an httpx transport (tests).
    """

    def __init__(
        self, base_url: str, token: str, *, upload_timeout: float = 120.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.upload_timeout = upload_timeout
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, transport=transport)

    def _call(self, method: str, path: str, *, timeout: float = SHORT_TIMEOUT_SECONDS, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, timeout=httpx.Timeout(timeout, connect=5.0), **kwargs)
        except httpx.TimeoutException:
            raise DocumentsApiError("The assistant did not answer in time; try again.", code="timeout") from None
        except httpx.HTTPError:
            raise DocumentsApiError("The assistant cannot be reached right now.", code="unavailable") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def list(self) -> DocumentList:
        """``GET /api/v1/documents``."""
        return DocumentList.model_validate(self._call("GET", DOCUMENTS_PATH).json())

    def upload(self, name: str, data: bytes) -> DocumentItem:
        """``PUT /api/v1/documents/{name}`` with the raw bytes."""
        path = DOCUMENT_PATH.format(name=quote(name, safe=""))
        response = self._call(
            "PUT", path, content=data, headers={"Content-Type": "application/octet-stream"},
            timeout=self.upload_timeout,
        )  # fmt: skip
        return DocumentItem.model_validate(response.json())

    def delete(self, name: str) -> None:
        """``DELETE /api/v1/documents/{name}``."""
        self._call("DELETE", DOCUMENT_PATH.format(name=quote(name, safe="")))

    def start_ingestion(self) -> IngestionStatus:
        """``POST /api/v1/ingestions`` (``ingestion_running`` while one runs)."""
        return IngestionStatus.model_validate(self._call("POST", INGESTIONS_PATH).json())

    def latest_ingestion(self) -> IngestionStatus | None:
        """``GET /api/v1/ingestions/latest``; None before the first run."""
        try:
            return IngestionStatus.model_validate(self._call("GET", LATEST_INGESTION_PATH).json())
        except DocumentsApiError as exc:
            if exc.code == "no_ingestion":
                return None
            raise

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
