"""The wire contract between the web chat and the RAG API: every request, response, SSE event and error body.

Both runtime units import these pydantic models: the API builds its responses (and its OpenAPI schema)
from them, the web chat validates what it receives with them instead of parsing dicts by hand. The
constants both sides need (paths, header names, size limits) are defined here once.

Field names of :class:`RagRequest` keep the reference deployment's spelling (``maxTokenCount``,
``stopSequences``, ``topP``, ``topK``), so its clients work unchanged. Every field has a size limit.

Stream events (``text/event-stream``, https://html.spec.whatwg.org/multipage/server-sent-events.html)::

    event: token    data: TokenEvent    {"text": "..."}                      (many)
    event: sources  data: SourcesEvent  {"sources": [Source, ...]}
    event: done     data: DoneEvent     {"session_id", "answer", "usage", "model_id", "answer_id", "grounded"}
    event: error    data: ErrorEvent    {"status", "error", "message", "retry_after"}  (instead, on failure)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from rag.identity import TENANT_CLAIM, TOKEN_COOKIE  # noqa: F401 - re-exported (owned by rag.identity)
from rag.tenant import MAX_SESSION_ID_CHARS

#: Longest question accepted (characters); the web chat's input box has the same limit.
MAX_QUESTION_CHARS = 4000
#: Longest feedback comment (characters).
MAX_FEEDBACK_COMMENT_CHARS = 2000
#: Characters of a chunk returned as a source's ``snippet``.
SNIPPET_CHARS = 300
#: Documents retrieved per question when the request does not say (``max_matching_docs``).
DEFAULT_MAX_MATCHING_DOCS = 3
#: Upper bound of ``max_matching_docs``.
MAX_MATCHING_DOCS = 20

#: The request id header: a client may send one; the API echoes it (or a new one) and logs with it.
REQUEST_ID_HEADER = "X-Request-ID"

# --- identity: what the gateway (Envoy here, Istio + oauth2-proxy in the cluster) hands the web chat ---
# TENANT_CLAIM (custom:tenantid) and TOKEN_COOKIE (the demo's id_token cookie) are owned by the
# kernel's token check, rag.identity, and re-exported here.
#: Claim of the user's e-mail address (display only: users are identified by ``sub``).
EMAIL_CLAIM = "email"
#: Header the gateway writes the verified tenant claim to.
TENANT_HEADER = "x-auth-request-tenantid"
#: Header oauth2-proxy writes the e-mail to in the cluster (the local gateway never sets it).
EMAIL_HEADER = "x-auth-request-email"

RAG_PATH = "/api/v1/llm/rag"
STREAM_PATH = "/api/v1/llm/rag/stream"
MESSAGES_PATH = "/api/v1/sessions/{session_id}/messages"
FEEDBACK_PATH = "/api/v1/feedback"
READY_PATH = "/readyz"
#: ``GET ?source=s3://bucket/key`` -> :class:`DocumentLinkResponse` (a presigned link to a source document).
DOCUMENT_LINK_PATH = "/api/v1/documents/link"
#: Lifetime of a presigned document link, seconds (short: the link is a bearer credential).
DOCUMENT_LINK_SECONDS = 300

StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class RagRequest(BaseModel):
    """``POST /api/v1/llm/rag`` and ``/api/v1/llm/rag/stream``.

    Attributes:
        q: the user's question (1-4000 characters, not blank).
        user_session_id: ``<tenant>:<subject>:<uuid>`` (lower-case UUID); the tenant must be this pod's.
        verbose: also return the full text of the retrieved documents (``docs``).
        max_matching_docs: documents retrieved and given to the model (k), 1-20.
        temperature: sampling temperature, 0-1.
        maxTokenCount: maximum answer tokens, 1-4096.
        stopSequences: up to 4 stop sequences of at most 100 characters.
        topP: nucleus sampling, 0-1.
        topK: top-k sampling, 0-500 (Anthropic models).
        regenerate: answer again: ``q`` must be the session's last question; the new answer replaces
            that turn in the history (which keeps one turn, not two).
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    q: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    user_session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_CHARS)
    verbose: bool = False
    max_matching_docs: int = Field(default=DEFAULT_MAX_MATCHING_DOCS, ge=1, le=MAX_MATCHING_DOCS)
    temperature: float = Field(default=0.1, ge=0, le=1)
    maxTokenCount: int = Field(default=512, ge=1, le=4096)
    stopSequences: list[StopSequence] = Field(default_factory=list, max_length=4)
    topP: float = Field(default=0.9, ge=0, le=1)
    topK: int = Field(default=250, ge=0, le=500)
    # --- web chat: regenerate (chat area) ---
    regenerate: bool = Field(
        default=False,
        description="Answer the session's last question again and replace its last turn (409 when `q` is not it).",
    )

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Usage(BaseModel):
    """Model tokens of one request (condense + answer calls); estimated for local models."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class Source(BaseModel):
    """A document the answer was generated from.

    Attributes:
        id: chunk id in the index.
        source: S3 URI or path of the source file.
        row: CSV row (0-based), when the source is a CSV.
        page: PDF page, when the source is a PDF.
        title: document title, when known.
        score: retrieval score (RRF for hybrid, cosine for dense).
        snippet: the first :data:`SNIPPET_CHARS` characters of the chunk.
        cited: the answer cites this source (``[n]`` markers or quoted by the extractive answerer);
            the others were retrieved but not used ("also retrieved").
    """

    id: str
    source: str
    row: int | None = None
    page: int | None = None
    title: str | None = None
    score: float
    snippet: str
    cited: bool = False


class RetrievedDoc(BaseModel):
    """A retrieved document in full (``verbose=true``)."""

    page_content: str
    metadata: dict[str, str | int | float | bool | None]


class RagResponse(BaseModel):
    """The answer."""

    question: str
    answer: str
    session_id: str
    sources: list[Source]
    docs: list[RetrievedDoc] | None = None
    usage: Usage
    model_id: str
    answer_id: str | None = Field(default=None, description="Identifies the answer for POST /api/v1/feedback.")
    grounded: bool = Field(
        default=True,
        description="False when the tenant's documents do not cover the question (then `sources` is empty).",
    )


class HistoryMessage(BaseModel):
    """One message of a session's history.

    Attributes:
        feedback: the answer's rating (``"up"``/``"down"``) when it was rated (assistant messages;
            one feedback record per answer, :mod:`rag.stores.feedback`).
    """

    role: Literal["user", "assistant"]
    content: str
    sources: list[Source] | None = None
    created_at: str
    answer_id: str | None = None
    feedback: Literal["up", "down"] | None = None


class HistoryResponse(BaseModel):
    """``GET /api/v1/sessions/{session_id}/messages``."""

    session_id: str
    messages: list[HistoryMessage]


class FeedbackRequest(BaseModel):
    """``POST /api/v1/feedback``: a rating of one answer, identified by ``answer_id`` or ``turn_index``.

    Attributes:
        session_id: ``<tenant>:<subject>:<uuid>`` (lower-case UUID); the tenant must be this pod's (else 403).
        answer_id: the ``answer_id`` of the ``done`` event / the response (preferred).
        turn_index: position of the turn in the session's history (0-based), when no answer id is known.
        rating: ``"up"`` or ``"down"``.
        comment: optional, at most 2000 characters.
    """

    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_CHARS)
    answer_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    turn_index: int | None = Field(default=None, ge=0, le=1000)
    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=MAX_FEEDBACK_COMMENT_CHARS)

    @model_validator(mode="after")
    def _identified(self) -> FeedbackRequest:
        if self.answer_id is None and self.turn_index is None:
            raise ValueError("answer_id or turn_index is required")
        return self


class FeedbackResponse(BaseModel):
    """The stored feedback's id."""

    feedback_id: str
    answer_id: str


class DocumentLinkResponse(BaseModel):
    """``GET /api/v1/documents/link``: a presigned ``GET`` URL for one source document in the tenant's bucket.

    Attributes:
        url: the presigned HTTPS URL (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ShareObjectPreSignedURL.html).
        expires_in: seconds the URL stays valid (:data:`DOCUMENT_LINK_SECONDS`).
    """

    url: str
    expires_in: int


class ErrorBody(BaseModel):
    """Every error response: ``{"error": <machine code>, "message": <a sentence for people>}``."""

    error: str
    message: str


class TokenEvent(BaseModel):
    """SSE ``token``: the next piece of the answer text."""

    text: str


class SourcesEvent(BaseModel):
    """SSE ``sources``: the documents the answer is generated from, in rank order."""

    sources: list[Source]


class DoneEvent(BaseModel):
    """SSE ``done``: the end of a successful answer (the turn is stored).

    Attributes:
        session_id: the session the turn was stored under.
        answer: the full answer text.
        usage: the model tokens of the turn.
        model_id: the model that answered.
        answer_id: identifies the answer for ``POST /api/v1/feedback``.
        grounded: as :attr:`RagResponse.grounded`.
    """

    session_id: str
    answer: str
    usage: Usage
    model_id: str
    answer_id: str | None = None
    grounded: bool = True


class ErrorEvent(BaseModel):
    """SSE ``error``: the answer failed after the stream started (then the stream ends).

    Attributes:
        status: the HTTP status the failure would have had (e.g. 503).
        error: machine code, as in :class:`ErrorBody`.
        message: a sentence for people.
        retry_after: seconds to wait before retrying, when retrying can help.
    """

    status: int
    error: str
    message: str
    retry_after: int | None = None


#: SSE event name -> its payload model.
STREAM_EVENTS: dict[str, type[BaseModel]] = {
    "token": TokenEvent,
    "sources": SourcesEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}
