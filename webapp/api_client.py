"""HTTP client for the tenant's RAG API (the only way the web chat reaches the model).

Endpoints (all under ``RAG_API_URL``):

- ``POST /api/v1/llm/rag/stream`` → server-sent events ``token`` (many), ``sources``, ``done``,
  or ``error``;
- ``GET /api/v1/sessions/{session_id}/messages`` → the session's earlier messages;
- ``DELETE /api/v1/sessions/{session_id}/messages`` → 204;
- ``POST /api/v1/feedback`` → 201 (a thumbs up/down and an optional comment on one answer);
- ``GET /readyz`` → 200 when the API can answer.

Every call has a timeout. Failures become :class:`ApiError` with a user-safe message, so the
page can show "try again" instead of a traceback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource

from rag.settings import Settings

STREAM_PATH = "/api/v1/llm/rag/stream"
MESSAGES_PATH = "/api/v1/sessions/{session_id}/messages"
READY_PATH = "/readyz"
FEEDBACK_PATH = "/api/v1/feedback"
#: Timeout for opening a TCP connection to the API, in seconds.
CONNECT_TIMEOUT_SECONDS = 5.0
#: Timeout for the small JSON calls (history, delete, readiness), in seconds.
SHORT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_MATCHING_DOCS = 3


@dataclass(frozen=True, slots=True)
class Source:
    """One retrieved passage shown under an answer.

    Attributes:
        id: the chunk id in the index.
        source: the file name (or URI) the passage comes from.
        row: CSV row number, when the source is a table.
        page: page number, when the source is a PDF.
        title: a human title (e.g. the FAQ question).
        score: relevance score as reported by the API (higher is better).
        snippet: a short excerpt of the passage.
        cited: the answer cites it (False: only retrieved; None: an API that does not say).
    """

    id: str = ""
    source: str = ""
    row: int | None = None
    page: int | None = None
    title: str | None = None
    score: float | None = None
    snippet: str = ""
    cited: bool | None = None

    @classmethod
    def from_json(cls, data: Any) -> Source:
        """Build from the API's JSON object, tolerating missing or extra fields."""
        if not isinstance(data, dict):
            return cls(snippet=str(data))

        def as_int(value: Any) -> int | None:
            try:
                return int(value) if value is not None else None
            except (TypeError, ValueError):
                return None

        score = data.get("score")
        try:
            score = float(score) if score is not None else None
        except (TypeError, ValueError):
            score = None
        return cls(
            id=str(data.get("id") or ""),
            source=str(data.get("source") or ""),
            row=as_int(data.get("row")),
            page=as_int(data.get("page")),
            title=(str(data["title"]) if data.get("title") else None),
            score=score,
            snippet=str(data.get("snippet") or ""),
            cited=data["cited"] if isinstance(data.get("cited"), bool) else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the API uses (for keeping sources in ``st.session_state``)."""
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message of a session's history.

    Attributes:
        role: ``"user"`` or ``"assistant"``.
        content: the text (Markdown for assistant answers).
        sources: passages the answer was based on (assistant messages only).
        created_at: as sent by the API (ISO 8601 or epoch), informational.
        answer_id: the answer's id (assistant messages), for feedback.
    """

    role: str
    content: str
    sources: tuple[Source, ...] = ()
    created_at: str | float | None = None
    answer_id: str | None = None


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A piece of the answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class SourcesEvent:
    """The passages the answer is based on."""

    sources: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The end of a successful answer.

    Attributes:
        session_id: the session the turn was stored under.
        answer: the full answer text.
        usage: token counts (``input_tokens``, ``output_tokens``, ``total_tokens``).
        model_id: the model that answered.
        answer_id: identifies the answer for feedback (empty from APIs that predate it).
        grounded: False when the documents do not cover the question (then there are no sources).
    """

    session_id: str = ""
    answer: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    model_id: str = ""
    answer_id: str = ""
    grounded: bool = True


StreamEvent = TokenEvent | SourcesEvent | DoneEvent


class ApiError(Exception):
    """The RAG API could not answer.

    Attributes:
        status: HTTP status (or the ``status`` of an SSE ``error`` event); None when unreachable.
        code: machine-readable code (``"timeout"``, ``"unavailable"``, ``"throttled"``, ...).
        message: user-safe text.
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
        """True for outages, timeouts and throttling; False for rejected questions (4xx)."""
        return self.status is None or self.status in (408, 429) or self.status >= 500


def _retry_after(value: Any) -> float | None:
    try:
        return max(0.0, float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _friendly(status: int | None, code: str, message: str | None) -> str:
    if status == 429 and code == "quota_exceeded" and message:
        return message  # "Usage limit reached: ... Try again in N seconds." (written for users by the API)
    if status == 429:
        return "The assistant is busy right now. Please try again in a moment."
    if status == 504 or code == "timeout":
        return "The assistant took too long to answer. Please try again."
    if status is None or status >= 500:
        return "The assistant is not available right now. Please try again in a moment."
    return message or f"The question was rejected ({status})."


def _error_from_response(response: httpx.Response) -> ApiError:
    try:
        body = json.loads(response.read() or b"{}")
    except (ValueError, httpx.HTTPError):
        body = {}
    body = body if isinstance(body, dict) else {}
    code = str(body.get("error") or f"http_{response.status_code}")
    message = body.get("message") if isinstance(body.get("message"), str) else None
    if message is None and isinstance(body.get("detail"), str):
        message = body["detail"]
    return ApiError(
        _friendly(response.status_code, code, message),
        status=response.status_code,
        code=code,
        retry_after=_retry_after(response.headers.get("retry-after")),
    )


def _error_from_exception(exc: httpx.HTTPError) -> ApiError:
    if isinstance(exc, httpx.TimeoutException):
        return ApiError(_friendly(None, "timeout", None), code="timeout")
    return ApiError(_friendly(None, "unavailable", None), code="unavailable")


def parse_event(event: str, data: str) -> StreamEvent:
    """Turn one SSE event into a typed event.

    Args:
        event: the SSE ``event:`` name.
        data: the SSE ``data:`` payload (JSON).

    Raises:
        ApiError: for an ``error`` event or a malformed payload.
    """
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        raise ApiError(_friendly(502, "bad_stream", None), status=502, code="bad_stream") from None
    if not isinstance(payload, dict):
        payload = {}
    if event == "token":
        return TokenEvent(text=str(payload.get("text", "")))
    if event == "sources":
        return SourcesEvent(sources=tuple(Source.from_json(s) for s in payload.get("sources") or []))
    if event == "done":
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return DoneEvent(
            session_id=str(payload.get("session_id", "")),
            answer=str(payload.get("answer", "")),
            usage={k: int(v) for k, v in usage.items() if isinstance(v, int | float)},
            model_id=str(payload.get("model_id", "")),
            answer_id=str(payload.get("answer_id") or ""),
            grounded=payload.get("grounded") is not False,
        )
    if event == "error":
        status = payload.get("status") if isinstance(payload.get("status"), int) else 502
        code = str(payload.get("error") or "error")
        raise ApiError(
            _friendly(status, code, payload.get("message")),
            status=status,
            code=code,
            retry_after=_retry_after(payload.get("retry_after")),
        )
    raise ApiError(_friendly(502, "bad_stream", None), status=502, code="bad_stream")


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
    ) -> Iterator[StreamEvent]:
        """Ask ``question`` and yield the answer's events as they arrive.

        Args:
            question: the user's text.
            session_id: ``<tenant>:<email>:<uuid>``.
            request_id: ``X-Request-ID`` for the turn (default: a new uuid4 hex).
            max_matching_docs: passages to retrieve.

        Yields:
            :class:`TokenEvent` (many), then :class:`SourcesEvent` and :class:`DoneEvent`.

        Raises:
            ApiError: HTTP error, ``error`` event, timeout, unreachable API, or a stream that
                ends without ``done``.
        """
        body = {"q": question, "user_session_id": session_id, "max_matching_docs": max_matching_docs}
        headers = {"X-Request-ID": request_id or uuid.uuid4().hex, "Accept": "text/event-stream"}
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
            raise ApiError("The answer was cut off. Please try again.", status=502, code="incomplete")

    def history(self, session_id: str) -> list[ChatMessage]:
        """The session's earlier messages, oldest first (empty for an unknown session).

        Raises:
            ApiError: the API failed or is unreachable.
        """
        resp = self._short_request("GET", MESSAGES_PATH.format(session_id=quote(session_id, safe="")))
        if resp.status_code == 404:
            return []
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        try:
            items = resp.json().get("messages") or []
        except (ValueError, AttributeError):
            raise ApiError(_friendly(502, "bad_response", None), status=502, code="bad_response") from None
        messages = []
        for item in items:
            if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
                continue
            messages.append(
                ChatMessage(
                    role=item["role"],
                    content=str(item.get("content", "")),
                    sources=tuple(Source.from_json(s) for s in item.get("sources") or []),
                    created_at=item.get("created_at"),
                    answer_id=str(item["answer_id"]) if item.get("answer_id") else None,
                )
            )
        return messages

    def delete_history(self, session_id: str) -> None:
        """Delete the session's messages on the server.

        Raises:
            ApiError: the API failed or is unreachable.
        """
        resp = self._short_request("DELETE", MESSAGES_PATH.format(session_id=quote(session_id, safe="")))
        if resp.status_code >= 400 and resp.status_code != 404:
            raise _error_from_response(resp)

    def send_feedback(
        self, session_id: str, answer_id: str, rating: str, comment: str = "", *, request_id: str | None = None
    ) -> None:
        """Rate one answer: ``rating`` is ``"up"`` or ``"down"``; ``comment`` at most 2000 characters.

        Raises:
            ApiError: the API refused the feedback, failed or is unreachable.
        """
        body = {"session_id": session_id, "answer_id": answer_id, "rating": rating, "comment": comment[:2000]}
        headers = {"X-Request-ID": request_id or uuid.uuid4().hex}
        resp = self._short_request("POST", FEEDBACK_PATH, json=body, headers=headers)
        if resp.status_code >= 400:
            raise _error_from_response(resp)

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
