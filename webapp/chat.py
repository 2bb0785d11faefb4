"""One chat turn, independent of Streamlit: stream the answer text, keep the sources.

:class:`AnswerStream` adapts :meth:`webapp.api_client.RagApiClient.stream_answer` to what
``st.write_stream`` wants (an iterator of strings) and remembers the sources and the final
``done`` event for the message history. :meth:`AnswerStream.close` stops it (the Stop button):
the HTTP stream is closed, so the API cancels the answer and stores nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from webapp.api_client import DoneEvent, HistoryMessage, RagApiClient, Source, SourcesEvent, TokenEvent


@dataclass
class AnswerStream:
    """The answer to one question, consumed once by iterating over its text pieces.

    Args:
        client: the RAG API client.
        question: the user's text.
        session_id: ``<tenant>:<subject>:<uuid>``.
        regenerate: answer the session's last question again, replacing its last turn.
        request_id: ``X-Request-ID`` of the turn (default: a new uuid4 hex).

    Attributes:
        text: the text received so far (the ``done`` event's answer once complete).
        sources: the passages, once the ``sources`` event arrived (rank order).
        done: the final event, None until the stream completed.
    """

    client: RagApiClient
    question: str
    session_id: str
    regenerate: bool = False
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    text: str = ""
    sources: list[Source] = field(default_factory=list)
    done: DoneEvent | None = None
    _events: Iterator[Any] | None = None

    def __iter__(self) -> Iterator[str]:
        """Yield answer text pieces; raises :class:`webapp.api_client.ApiError` on failure."""
        self._events = self.client.stream_answer(
            self.question, self.session_id, request_id=self.request_id, regenerate=self.regenerate
        )
        for event in self._events:
            if isinstance(event, TokenEvent):
                if event.text:
                    self.text += event.text
                    yield event.text
            elif isinstance(event, SourcesEvent):
                self.sources = list(event.sources)
            elif isinstance(event, DoneEvent):
                self.done = event
                if event.answer and event.answer != self.text:
                    # the API's final text wins (e.g. it post-processed the tokens)
                    missing = event.answer[len(self.text) :] if event.answer.startswith(self.text) else ""
                    if missing:
                        yield missing
                    self.text = event.answer

    def close(self) -> None:
        """Close the HTTP stream now (idempotent); the API then drops the answer."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def as_message(self) -> dict[str, Any]:
        """The assistant message to keep in ``st.session_state.messages``."""
        return message_dict(
            "assistant",
            self.text,
            self.sources,
            answer_id=self.done.answer_id if self.done else None,
            grounded=self.done.grounded if self.done else True,
        )


def message_dict(
    role: str,
    content: str,
    sources: list[Source] | None = None,
    *,
    answer_id: str | None = None,
    grounded: bool = True,
) -> dict[str, Any]:
    """A chat message as kept in ``st.session_state.messages`` (plain, picklable data)."""
    message: dict[str, Any] = {
        "role": role,
        "content": content,
        "sources": [s.model_dump() for s in sources or []],
        "grounded": grounded,
    }
    if answer_id:
        message["answer_id"] = answer_id
    return message


def history_to_messages(history: list[HistoryMessage]) -> list[dict[str, Any]]:
    """API history → ``st.session_state.messages`` entries (an assistant turn with no sources is ungrounded)."""
    messages = []
    for m in history:
        grounded = m.role == "user" or bool(m.sources)
        message = message_dict(m.role, m.content, m.sources, answer_id=m.answer_id, grounded=grounded)
        if m.feedback:
            message["rating"] = m.feedback
        messages.append(message)
    return messages
