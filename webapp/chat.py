"""One chat turn, independent of Streamlit: stream the answer text, keep the sources.

:class:`AnswerStream` adapts :meth:`webapp.api_client.RagApiClient.stream_answer` to what
``st.write_stream`` wants (an iterator of strings) and remembers the sources and the final
``done`` event for the message history.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from webapp.api_client import ChatMessage, DoneEvent, RagApiClient, Source, SourcesEvent, TokenEvent


@dataclass
class AnswerStream:
    """The answer to one question, consumed once by iterating over its text pieces.

    Args:
        client: the RAG API client.
        question: the user's text.
        session_id: ``<tenant>:<email>:<uuid>``.
        request_id: ``X-Request-ID`` of the turn (default: a new uuid4 hex).

    Attributes:
        text: the text received so far (the ``done`` event's answer once complete).
        sources: the passages, once the ``sources`` event arrived.
        done: the final event, None until the stream completed.
    """

    client: RagApiClient
    question: str
    session_id: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    text: str = ""
    sources: tuple[Source, ...] = ()
    done: DoneEvent | None = None

    def __iter__(self) -> Iterator[str]:
        """Yield answer text pieces; raises :class:`webapp.api_client.ApiError` on failure."""
        for event in self.client.stream_answer(self.question, self.session_id, request_id=self.request_id):
            if isinstance(event, TokenEvent):
                if event.text:
                    self.text += event.text
                    yield event.text
            elif isinstance(event, SourcesEvent):
                self.sources = event.sources
            elif isinstance(event, DoneEvent):
                self.done = event
                if event.answer and event.answer != self.text:
                    # the API's final text wins (e.g. it post-processed the tokens)
                    missing = event.answer[len(self.text) :] if event.answer.startswith(self.text) else ""
                    if missing:
                        yield missing
                    self.text = event.answer

    @property
    def grounded(self) -> bool:
        """False when the API said the documents do not cover the question."""
        return self.done.grounded if self.done else True

    def as_message(self) -> dict[str, Any]:
        """The assistant message to keep in ``st.session_state.messages``."""
        return message_dict(
            "assistant",
            self.text,
            self.sources if self.grounded else (),
            answer_id=self.done.answer_id if self.done else None,
            grounded=self.grounded,
        )


def message_dict(
    role: str,
    content: str,
    sources: tuple[Source, ...] | list[Source] = (),
    *,
    answer_id: str | None = None,
    grounded: bool = True,
) -> dict[str, Any]:
    """A chat message as kept in ``st.session_state.messages`` (plain, picklable data)."""
    message: dict[str, Any] = {"role": role, "content": content, "sources": [s.to_json() for s in sources]}
    if answer_id:
        message["answer_id"] = answer_id
    if not grounded:
        message["grounded"] = False
    return message


def history_to_messages(history: list[ChatMessage]) -> list[dict[str, Any]]:
    """API history → ``st.session_state.messages`` entries."""
    return [message_dict(m.role, m.content, m.sources, answer_id=m.answer_id) for m in history]
