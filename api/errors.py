"""Error mapping: every failure becomes JSON ``{"error", "message"}`` with the right status.

| cause | status | ``error`` |
|---|---|---|
| request body/params invalid | 422 | ``validation_error`` |
| body larger than the limit | 413 | ``payload_too_large`` |
| session of another tenant | 403 | ``forbidden`` |
| Bedrock throttled, unavailable, unreachable | 503 + ``Retry-After`` | ``model_throttled``, ``model_unavailable`` |
| Bedrock read timeout, ``ModelTimeoutException`` | 504 | ``model_timeout`` |
| a store fails (DynamoDB / SQLite) | 503 + ``Retry-After`` | the store's code, e.g. ``history_unavailable`` |
| no index loaded yet | 503 + ``Retry-After`` | ``index_not_ready`` |
| pgvector database down, refusing or slow | 503 + ``Retry-After`` | ``vector_store_unavailable`` |
| ``MAX_INFLIGHT_ANSWERS`` answers already running in this worker | 503 + ``Retry-After`` | ``overloaded`` |
| not a tenant admin (documents, ingestions) | 403 | ``admin_token_missing``, ``admin_token_invalid``, |
| | | ``admin_token_expired``, ``admin_wrong_tenant``, ``not_admin`` |
| upload refused (name, type, content) | 422 | ``invalid_name``, ``unsupported_type``, ``empty_file``, |
| | | ``content_mismatch``, ``invalid_encoding`` |
| upload over ``UPLOAD_MAX_FILE_BYTES`` | 413 | ``file_too_large`` |
| no such document | 404 | ``document_not_found`` |
| an ingestion is queued or running | 409 | ``ingestion_running`` |
| no document store, job cannot start, keys unreachable | 503 | ``documents_not_configured``, |
| | | ``ingestion_unavailable``, ``identity_unavailable`` (S3 failing: the store's ``documents_unavailable``) |
| anything else | 500 | ``internal_error`` (no traceback; the request id is in the logs) |

Bedrock error codes: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html#API_runtime_ConverseStream_Errors
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.answer.chain import IndexNotReadyError
from rag.index.backend import VectorStoreUnavailableError
from rag.stores.base import StoreUnavailableError

logger = logging.getLogger("api.errors")

#: Seconds a client should wait before retrying after a 503 (the ``Retry-After`` header).
RETRY_AFTER_THROTTLED = 5
RETRY_AFTER_UNAVAILABLE = 10
#: A vector database that failed: its pool reconnects in the background within seconds.
RETRY_AFTER_VECTOR_STORE = 5
RETRY_AFTER_OVERLOADED = 1
THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"})
UNAVAILABLE_CODES = frozenset(
    {"ServiceUnavailableException", "ModelNotReadyException", "InternalServerException", "ModelStreamErrorException"}
)
TIMEOUT_CODES = frozenset({"ModelTimeoutException", "RequestTimeout", "RequestTimeoutException"})


@dataclass
class ApiError(Exception):
    """An error with its HTTP status, machine-readable code, human message and ``Retry-After``.

    Attributes:
        status: HTTP status code.
        error: short code, e.g. ``model_throttled``.
        message: a sentence for humans (never a traceback).
        retry_after: seconds, or None.
    """

    status: int
    error: str
    message: str
    retry_after: int | None = None

    def body(self) -> dict[str, object]:
        """``{"error", "message"}``."""
        return {"error": self.error, "message": self.message}

    def headers(self) -> dict[str, str]:
        """``Retry-After`` when set."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def _client_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    return code[:1].upper() + code[1:] if code else None  # event-stream errors come as "throttlingException"


def classify_exception(exc: BaseException) -> ApiError:
    """Map any exception raised while answering to an :class:`ApiError`.

    Args:
        exc: the exception (botocore, a store, the index or anything else).
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StoreUnavailableError):  # the whole family, each with its own code (rag.stores.base)
        return ApiError(503, exc.code, exc.public_message, exc.retry_after)
    documents_error = _documents_error(exc)
    if documents_error is not None:
        return documents_error
    if isinstance(exc, IndexNotReadyError):
        return ApiError(
            503, "index_not_ready", "The document index is not loaded yet; try again shortly.", RETRY_AFTER_UNAVAILABLE
        )
    if isinstance(exc, VectorStoreUnavailableError):
        return ApiError(
            503,
            "vector_store_unavailable",
            "The document index database is unavailable; try again shortly.",
            RETRY_AFTER_VECTOR_STORE,
        )
    from botocore import exceptions as bx
    from urllib3 import exceptions as ux

    # urllib3's own errors surface when a streamed body (ConverseStream) times out or breaks mid-way.
    if isinstance(exc, bx.ReadTimeoutError | ux.ReadTimeoutError | TimeoutError):
        return ApiError(504, "model_timeout", "The language model did not answer in time.")
    if isinstance(exc, bx.ConnectionError | bx.ConnectionClosedError | ux.ProtocolError):
        return ApiError(
            503, "model_unavailable", "The language model endpoint is unreachable.", RETRY_AFTER_UNAVAILABLE
        )
    code = _client_error_code(exc)
    if code in THROTTLING_CODES:
        return ApiError(
            503, "model_throttled", "The language model is busy (throttled); retry later.", RETRY_AFTER_THROTTLED
        )
    if code in UNAVAILABLE_CODES:
        return ApiError(
            503, "model_unavailable", "The language model is unavailable; retry later.", RETRY_AFTER_UNAVAILABLE
        )
    if code in TIMEOUT_CODES:
        return ApiError(504, "model_timeout", "The language model did not answer in time.")
    if code:
        return ApiError(502, "model_error", f"The language model refused the request ({code}).")
    return ApiError(500, "internal_error", "Internal error; the request id identifies it in the logs.")


def _documents_error(exc: BaseException) -> ApiError | None:
    """The document area's exceptions (admin check, uploads, ingestion runs), or None."""
    from api.services.admin import AdminDenied
    from api.services.documents import DocumentNotFoundError, IngestionBusyError
    from api.services.runners import RunnerUnavailableError
    from rag.documents.rules import DocumentRejected

    if isinstance(exc, AdminDenied):
        return ApiError(exc.status, exc.code, exc.message, RETRY_AFTER_UNAVAILABLE if exc.status == 503 else None)
    if isinstance(exc, DocumentRejected):
        return ApiError(413 if exc.code == "file_too_large" else 422, exc.code, exc.message)
    if isinstance(exc, DocumentNotFoundError):
        return ApiError(404, "document_not_found", str(exc))
    if isinstance(exc, IngestionBusyError):
        return ApiError(
            409, "ingestion_running", f"An ingestion is already queued or running ({exc.run_id or 'scheduled'})."
        )
    if isinstance(exc, RunnerUnavailableError):
        return ApiError(
            503, "ingestion_unavailable", f"The ingestion job could not be started: {exc}", RETRY_AFTER_UNAVAILABLE
        )
    return None


def _readable(errors: list[dict]) -> tuple[str, list[dict[str, str]]]:
    details = []
    for item in errors:
        loc = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        details.append({"field": field, "message": str(item.get("msg", "invalid")).removeprefix("Value error, ")})
    return "; ".join(f"{d['field']}: {d['message']}" for d in details), details


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 500:
            logger.warning("request failed: %s %s (%s)", exc.status, exc.error, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(StoreUnavailableError)
    async def _store_unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        # a route let a store's failure through: logged once, without a traceback, answered 503
        logger.warning("store unavailable: %s (%s)", exc.code, exc)
        error = classify_exception(exc)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _readable(list(exc.errors()))
        return JSONResponse({"error": "validation_error", "message": message, "details": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        error = classify_exception(exc)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())
