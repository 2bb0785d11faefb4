"""A test chat model that streams slowly on request: ``LLM_PROVIDER=tests.support.slow_model:make``.

It is the offline extractive answerer, except that when the question contains :data:`SLOW_MARKER`
each piece of the answer is delayed by :data:`DELAY_SECONDS`, so a browser test can press Stop
while the answer is still streaming. Every other question answers at full speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from rag.answer.models import ExtractiveChatModel
from rag.settings import Settings

#: Put this in a question to get a slow answer.
SLOW_MARKER = "(slowly)"
#: Delay per streamed piece, seconds.
DELAY_SECONDS = 0.4


def _slow(messages: list[BaseMessage]) -> bool:
    return any(SLOW_MARKER in str(m.content) for m in messages)


class SlowExtractiveChatModel(ExtractiveChatModel):
    """:class:`rag.answer.models.ExtractiveChatModel` with a delay per piece for marked questions."""

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        slow = _slow(messages)
        for chunk in super()._stream(messages, stop=stop, **kwargs):
            if slow:
                time.sleep(DELAY_SECONDS)
            yield chunk

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        slow = _slow(messages)
        for chunk in super()._stream(messages, stop=stop, **kwargs):
            if slow:
                await asyncio.sleep(DELAY_SECONDS)
            yield chunk


def make(settings: Settings) -> SlowExtractiveChatModel:
    """The factory ``LLM_PROVIDER`` names."""
    return SlowExtractiveChatModel()
