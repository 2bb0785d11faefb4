"""HTTP client for the tenant's RAG API (the only way the web chat reaches the model).

Every request and response is a model of the wire contract :mod:`rag.contract` (paths and limits too):
what arrives is validated with those pydantic models, never parsed by hand.

- ``POST`` :data:`~rag.contract.STREAM_PATH` → server-sent events ``token`` (many), ``sources``,
  ``done``, or ``error`` (:data:`rag.contract.STREAM_EVENTS`);
- ``GET`` / ``DELETE`` :data:`~rag.contract.MESSAGES_PATH` → a session's history / 204;
- ``POST`` :data:`~rag.contract.FEEDBACK_PATH` → 201 (a thumbs up/down and an optional comment);
- ``GET`` :data:`~rag.contract.DOCUMENT_LINK_PATH` → a short-lived link to a source document in S3;
- ``GET`` :data:`~rag.contract.READY_PATH` → 200 when the API can answer.

Every call has a timeout. Failures become :class:`ApiError` with a plain sentence for people
(what happened and what to do), and :attr:`ApiError.retryable` says whether a Retry can help.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource
from pydantic import BaseModel, ValidationError

from rag.contract import (
    DEFAULT_MAX_MATCHING_DOCS,
    DOCUMENT_LINK_PATH,
    FEEDBACK_PATH,
    MAX_FEEDBACK_COMMENT_CHARS,
    MAX_QUESTION_CHARS,
    MESSAGES_PATH,
    READY_PATH,
    REQUEST_ID_HEADER,
    STREAM_EVENTS,
    STREAM_PATH,
    DocumentLinkResponse,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    FeedbackRequest,
    HistoryMessage,
    HistoryResponse,
    RagRequest,
    Source,
    SourcesEvent,
    TokenEvent,
)
from rag.settings import Settings

__all__ = [
    "ApiError",
    "DoneEvent",
    "HistoryMessage",
    "RagApiClient",
    "Source",
    "SourcesEvent",
    "StreamEvent",
    "TokenEvent",
    "client_from_settings",
    "parse_event",
]

#: Timeout for opening a TCP connection to the API, in seconds.
CONNECT_TIMEOUT_SECONDS = 5.0
#: Timeout for the small JSON calls (history, delete, feedback, links, readiness), in seconds.
SHORT_TIMEOUT_SECONDS = 10.0
#: Statuses where sending the same request again can help (timeouts and outages); never a 4xx
#: that says the request itself is wrong.
RETRYABLE_STATUSES = frozenset({408, 502, 503, 504})

StreamEvent = TokenEvent | SourcesEvent | DoneEvent

# --- the sentences people see ------------------------------------------------------------
UNREACHABLE = "The assistant cannot be reached right now. Check your connection, then try again."
TIMED_OUT = "The assistant took too long to answer. Try again in a moment."
UNAVAILABLE = "The assistant is not available right now. Try again in a moment."
CUT_OFF = "The answer was cut off before it was complete. Try again."
BAD_REPLY = "The assistant sent a reply the chat could not read. Try again; if it keeps happening, tell your admin."
INTERNAL = "Something went wrong on the assistant's side. If it happens again, tell your administrator."
BUSY = "The assistant is handling too many questions right now. Wait a minute, then send your question again."
QUESTION_INVALID = (
    f"Your question could not be sent: it must not be empty and can have at most {MAX_QUESTION_CHARS:,} characters. "
    "Edit it and send it again."
)
TOO_LARGE = "Your message is too large to send. Shorten it and send it again."
NOT_YOURS = "This conversation belongs to another account, so it cannot be opened. Start a new chat."
SIGNED_OUT = "Your sign-in is no longer valid. Reload the page to sign in again."
NOT_FOUND = "That item no longer exists (it may have expired or been deleted)."
REJECTED = "The assistant could not accept this request. Reload the page and try again."
NOTHING_TO_REGENERATE = "There is no answer to regenerate in this conversation any more. Ask the question again."


class ApiError(Exception):
    """The RAG API could not answer.

    Attributes:
        status: HTTP status (or the ``status`` of an SSE ``error`` event); None when unreachable.
        code: machine-readable code (``"timeout"``, ``"unavailable"``, ``"quota_exceeded"``, ...).
        message: a plain sentence for people: what happened and what to do.
        retry_after: seconds the API asked us to wait, when given.
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "error", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True only where sending again can help: network errors, timeouts, 502/503/504."""
        if self.status is None:
            return True
        return self.status in RETRYABLE_STATUSES or self.code == "timeout"


def _retry_after(value: Any) -> float | None:
    try:
        return max(0.0, float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def friendly(status: int | None, code: str, message: str | None = None) -> str:
    """The sentence shown for an error: never a field name, a status code or raw API text.

    Only the quota message is passed through: the API writes it for people ("Usage limit
    reached: ... Try again in N seconds.").
    """
    if status is None:
        return TIMED_OUT if code == "timeout" else UNREACHABLE
    if status == 429 and code == "quota_exceeded" and message:
        return message
    table = {
        401: SIGNED_OUT,
        403: NOT_YOURS,
        404: NOT_FOUND,
        408: TIMED_OUT,
        409: NOTHING_TO_REGENERATE,
        413: TOO_LARGE,
        429: BUSY,
        502: BAD_REPLY if code == "bad_stream" else UNAVAILABLE,
        503: UNAVAILABLE,
        504: TIMED_OUT,
    }
    if status in table:
        return table[status]
    if status == 422:
        return QUESTION_INVALID if (message or "").startswith("q:") else REJECTED
    if status >= 500:
        return INTERNAL
    return REJECTED


def _error_from_response(response: httpx.Response) -> ApiError:
    try:
        body: ErrorBody | None = ErrorBody.model_validate_json(response.read() or b"{}")
    except (ValidationError, httpx.HTTPError):
        body = None
    code = body.error if body else f"http_{response.status_code}"
    return ApiError(
        friendly(response.status_code, code, body.message if body else None),
        status=response.status_code,
        code=code,
        retry_after=_retry_after(response.headers.get("retry-after")),
    )


def _error_from_exception(exc: httpx.HTTPError) -> ApiError:
    if isinstance(exc, httpx.TimeoutException):
        return ApiError(friendly(None, "timeout"), code="timeout")
    return ApiError(friendly(None, "unavailable"), code="unavailable")


def _bad_reply() -> ApiError:
    return ApiError(BAD_REPLY, status=502, code="bad_stream")


def parse_event(event: str, data: str) -> StreamEvent:
    """Validate one SSE event with its :data:`rag.contract.STREAM_EVENTS` model.

    Args:
        event: the SSE ``event:`` name.
        data: the SSE ``data:`` payload (JSON).

    Raises:
        ApiError: for an ``error`` event, an unknown event name or a payload that breaks the contract.
    """
    model = STREAM_EVENTS.get(event)
    if model is None:
        raise _bad_reply()
    try:
        parsed: BaseModel = model.model_validate_json(data or "{}")
    except ValidationError:
        raise _bad_reply() from None
    if isinstance(parsed, ErrorEvent):
        raise ApiError(
            friendly(parsed.status, parsed.error, parsed.message),
            status=parsed.status,
            code=parsed.error,
            retry_after=_retry_after(parsed.retry_after),
        )
    assert isinstance(parsed, TokenEvent | SourcesEvent | DoneEvent)
    return parsed


class RagApiClient:
    """Talks to one tenant's RAG API over HTTP.

    Args:
        base_url: ``RAG_API_URL``, e.g. ``http://127.0.0.1:8000``.
        timeout: read timeout for the answer stream, in seconds (``RAG_API_TIMEOUT_SECONDS``):
            the longest wait for the next event, not for the whole answer.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(self, base_url: str, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    def _client(self, read_timeout: float) -> httpx.Client:
        timeout = httpx.Timeout(read_timeout, connect=min(CONNECT_TIMEOUT_SECONDS, read_timeout))
        return httpx.Client(base_url=self.base_url, timeout=timeout, transport=self.transport)

    def stream_answer(
        self,
        question: str,
        session_id: str,
        *,
        request_id: str | None = None,
        max_matching_docs: int = DEFAULT_MAX_MATCHING_DOCS,
        regenerate: bool = False,
    ) -> Iterator[StreamEvent]:
        """Ask ``question`` and yield the answer's events as they arrive.

        Closing the iterator early (the user pressed Stop) closes the HTTP stream; the API then
        cancels the answer and stores nothing.

        Args:
            question: the user's text (1-:data:`~rag.contract.MAX_QUESTION_CHARS` characters).
            session_id: ``<tenant>:<subject>:<uuid>``.
            request_id: ``X-Request-ID`` for the turn (default: a new uuid4 hex).
            max_matching_docs: passages to retrieve.
            regenerate: answer the session's last question again and replace its last turn.

        Yields:
            :class:`TokenEvent` (many), then :class:`SourcesEvent` and :class:`DoneEvent`.

        Raises:
            ApiError: HTTP error, ``error`` event, timeout, unreachable API, or a stream that
                ends without ``done``.
        """
        try:
            request = RagRequest(
                q=question, user_session_id=session_id, max_matching_docs=max_matching_docs, regenerate=regenerate
            )
        except ValidationError:
            raise ApiError(QUESTION_INVALID, status=422, code="validation_error") from None
        body = request.model_dump(include={"q", "user_session_id", "max_matching_docs"})
        if regenerate:
            body["regenerate"] = True
        headers = {REQUEST_ID_HEADER: request_id or uuid.uuid4().hex, "Accept": "text/event-stream"}
        done = False
        try:
            with (
                self._client(self.timeout) as client,
                client.stream("POST", STREAM_PATH, json=body, headers=headers) as resp,
            ):
                if resp.status_code >= 400:
                    raise _error_from_response(resp)
                for sse in EventSource(resp).iter_sse():
                    event = parse_event(sse.event, sse.data)
                    yield event
                    if isinstance(event, DoneEvent):
                        done = True
                        break
        except httpx.HTTPError as exc:
            raise _error_from_exception(exc) from exc
        if not done:
            raise ApiError(CUT_OFF, status=502, code="incomplete")

    def history(self, session_id: str) -> list[HistoryMessage]:
        """The session's earlier messages, oldest first (empty for an unknown session).

        Raises:
            ApiError: the API failed, is unreachable, or sent something outside the contract.
        """
        resp = self._short_request("GET", MESSAGES_PATH.format(session_id=quote(session_id, safe="")))
        if resp.status_code == 404:
            return []
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        try:
            return HistoryResponse.model_validate_json(resp.content).messages
        except ValidationError:
            raise ApiError(BAD_REPLY, status=502, code="bad_response") from None

    def delete_history(self, session_id: str) -> None:
        """Delete the session's messages on the server (idempotent: 404 counts as deleted).

        Raises:
            ApiError: the API failed or is unreachable.
        """
        resp = self._short_request("DELETE", MESSAGES_PATH.format(session_id=quote(session_id, safe="")))
        if resp.status_code >= 400 and resp.status_code != 404:
            raise _error_from_response(resp)

    def send_feedback(
        self, session_id: str, answer_id: str, rating: str, comment: str = "", *, request_id: str | None = None
    ) -> None:
        """Rate one answer: ``rating`` is ``"up"`` or ``"down"``; ``comment`` is cut to the contract's limit.

        Raises:
            ApiError: the API refused the feedback, failed or is unreachable.
        """
        body = FeedbackRequest(
            session_id=session_id,
            answer_id=answer_id,
            rating=rating,  # type: ignore[arg-type]  # validated by the model
            comment=comment[:MAX_FEEDBACK_COMMENT_CHARS],
        ).model_dump(exclude_none=True)
        headers = {REQUEST_ID_HEADER: request_id or uuid.uuid4().hex}
        resp = self._short_request("POST", FEEDBACK_PATH, json=body, headers=headers)
        if resp.status_code >= 400:
            raise _error_from_response(resp)

    def document_link(self, source: str) -> DocumentLinkResponse:
        """A short-lived presigned link to a source document in the tenant's bucket.

        Args:
            source: the source's ``s3://bucket/key`` URI, as in :attr:`rag.contract.Source.source`.

        Raises:
            ApiError: the API refused (not the tenant's bucket: 403), failed or is unreachable.
        """
        resp = self._short_request("GET", DOCUMENT_LINK_PATH, params={"source": source})
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        try:
            return DocumentLinkResponse.model_validate_json(resp.content)
        except ValidationError:
            raise ApiError(BAD_REPLY, status=502, code="bad_response") from None

    def _short_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with the short timeout (``min(SHORT_TIMEOUT_SECONDS, timeout)`` seconds).

        Raises:
            ApiError: the API is unreachable or timed out (HTTP errors are left to the caller).
        """
        try:
            with self._client(min(SHORT_TIMEOUT_SECONDS, self.timeout)) as client:
                return client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _error_from_exception(exc) from exc

    def ready(self) -> bool:
        """True when ``GET /readyz`` answers 200 within the short timeout."""
        try:
            with self._client(min(SHORT_TIMEOUT_SECONDS, self.timeout)) as client:
                return client.get(READY_PATH).status_code == 200
        except httpx.HTTPError:
            return False


def client_from_settings(settings: Settings) -> RagApiClient:
    """The client for ``RAG_API_URL`` with ``RAG_API_TIMEOUT_SECONDS`` (tests patch this)."""
    return RagApiClient(settings.rag_api_url, settings.rag_api_timeout_seconds)
