"""Request and response bodies of the RAG API (compatible with the reference deployment's request).

Field names keep the reference's spelling (``maxTokenCount``, ``stopSequences``, ``topP``, ``topK``),
so existing clients work unchanged. Every field has a size limit.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from rag.tenant import MAX_SESSION_ID_CHARS

MAX_QUESTION_CHARS = 4000
StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class RagRequest(BaseModel):
    """``POST /api/v1/llm/rag`` and ``/api/v1/llm/rag/stream``.

    Attributes:
        q: the user's question (1-4000 characters, not blank).
        user_session_id: ``<tenant>:<email>:<uuid>``; the tenant must be this pod's.
        verbose: also return the full text of the retrieved documents (``docs``).
        max_matching_docs: documents retrieved and given to the model (k), 1-20.
        temperature: sampling temperature, 0-1.
        maxTokenCount: maximum answer tokens, 1-4096.
        stopSequences: up to 4 stop sequences of at most 100 characters.
        topP: nucleus sampling, 0-1.
        topK: top-k sampling, 0-500 (Anthropic models).
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    q: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    user_session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_CHARS)
    verbose: bool = False
    max_matching_docs: int = Field(default=3, ge=1, le=20)
    temperature: float = Field(default=0.1, ge=0, le=1)
    maxTokenCount: int = Field(default=512, ge=1, le=4096)
    stopSequences: list[StopSequence] = Field(default_factory=list, max_length=4)
    topP: float = Field(default=0.9, ge=0, le=1)
    topK: int = Field(default=250, ge=0, le=500)

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
        snippet: the first 300 characters of the chunk.
        cited: the answer cites this source (``[n]``); the others were only retrieved.
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
    """The answer.

    ``grounded`` is False when the tenant's documents hold nothing relevant to the question (the
    answer model was not called) or the model said they do not answer it; then ``answer`` is the
    fixed sentence :data:`rag.answer.grounding.NO_ANSWER` and ``sources`` is empty.
    """

    question: str
    answer: str
    grounded: bool = True
    session_id: str
    sources: list[Source]
    docs: list[RetrievedDoc] | None = None
    usage: Usage
    model_id: str
    answer_id: str | None = Field(default=None, description="Identifies the answer for POST /api/v1/feedback.")


class HistoryMessage(BaseModel):
    """One message of a session's history."""

    role: Literal["user", "assistant"]
    content: str
    sources: list[Source] | None = None
    created_at: str
    answer_id: str | None = None


class HistoryResponse(BaseModel):
    """``GET /api/v1/sessions/{session_id}/messages``."""

    session_id: str
    messages: list[HistoryMessage]


class FeedbackRequest(BaseModel):
    """``POST /api/v1/feedback``: a rating of one answer, identified by ``answer_id`` or ``turn_index``.

    Attributes:
        session_id: ``<tenant>:<email>:<uuid>``; the tenant must be this pod's (else 403).
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
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _identified(self) -> FeedbackRequest:
        if self.answer_id is None and self.turn_index is None:
            raise ValueError("answer_id or turn_index is required")
        return self


class FeedbackResponse(BaseModel):
    """The stored feedback's id."""

    feedback_id: str
    answer_id: str


class ErrorBody(BaseModel):
    """Every error response."""

    error: str
    message: str


class Readiness(BaseModel):
    """``GET /readyz``."""

    status: Literal["ready", "not_ready"]
    tenant: str
    index_version: str | None = None
    embedding_model: str | None = None
    chunks: int | None = None
    message: str | None = None
