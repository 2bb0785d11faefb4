"""Fakes and helpers shared by the API unit and integration tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from rag.index.embeddings import NormalizedEmbeddings
from rag.index.store import open_store, write_index_version
from rag.settings import Settings, load_settings

TENANT = "tenanta"
SESSION = "tenanta:alice@example.com:6f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d10"
OTHER_TENANT_SESSION = "tenantb:bob@example.com:6f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d11"
EMBEDDING_MODEL = "fake-embedding-32"

FAQ = [
    ("What is Amazon SageMaker Studio?", "SageMaker Studio is a web-based IDE for machine learning."),
    ("How is SageMaker Studio priced?", "Studio itself is free; you pay for the compute you use."),
    ("What is Amazon EMR?", "EMR runs Apache Spark and Hadoop clusters on EC2."),
    ("Does EMR support Presto?", "Yes, EMR supports Presto and Trino."),
    ("What regions is SageMaker available in?", "See the AWS regional services list."),
    ("Can I use R with SageMaker?", "Yes, via the R kernel and the reticulate package."),
]


def fake_embeddings() -> NormalizedEmbeddings:
    return NormalizedEmbeddings(DeterministicFakeEmbedding(size=32), EMBEDDING_MODEL, 32)


def publish_index(root: Path, rows: list[tuple[str, str]] = FAQ, tenant: str = TENANT) -> str:
    """Write (and publish) an index version of ``rows`` under ``root``; returns the version id."""
    emb = fake_embeddings()
    docs = [
        Document(f"{q}\n{a}", metadata={"id": f"faq.csv#{i}", "source": "faq.csv", "row": i, "title": q})
        for i, (q, a) in enumerate(rows)
    ]
    vectors = np.array(emb.embed_documents([d.page_content for d in docs]))
    return write_index_version(
        open_store(str(root)),
        tenant=tenant,
        embedding_model=EMBEDDING_MODEL,
        vectors=vectors,
        documents=docs,
        sources=[],
    )


class ScriptedChatModel(BaseChatModel):
    """A fake chat model that streams scripted replies word by word and records every call.

    ``replies`` are used in order (the last one repeats). ``fail_after`` raises ``error`` after
    that many tokens of the answer call (``None``: never).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    replies: list[str] = Field(default_factory=lambda: ["The answer is 42."])
    calls: list[dict[str, Any]] = Field(default_factory=list)
    error: BaseException | None = None
    fail_after: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    gate: Any = None  # a threading.Event to wait on after the first token
    token_delay: float = 0.0  # seconds between tokens (like a real model's token rate)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _record(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> str:
        index = len(self.calls)
        self.calls.append(
            {
                "messages": messages,
                "prompt": "\n".join(str(m.content) for m in messages),
                "stop": stop,
                "kwargs": dict(kwargs),  # per-call generation parameters (temperature, max_tokens, ...)
            }
        )
        return self.replies[min(index, len(self.replies) - 1)]

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        reply = self._record(messages, stop, kwargs)
        is_condense = "Standalone question:" in self.calls[-1]["prompt"]
        for n, word in enumerate(reply.split(" ")):
            if self.fail_after is not None and n >= self.fail_after and not is_condense:
                raise self.error or RuntimeError("boom")
            if n == 1 and self.gate is not None:
                self.gate.wait(10)
            if n and self.token_delay:
                time.sleep(self.token_delay)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word if n == 0 else " " + word))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
            )
        )


def make_settings(index_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tenant_id": TENANT,
        "index_uri": str(index_dir),
        "embeddings_provider": "local",
        "llm_provider": "extractive",
        "retriever_mode": "hybrid",
        "index_poll_seconds": 0,
    }
    values.update(overrides)
    return load_settings(**values)


def rag_body(q: str = "What is SageMaker Studio?", **extra: Any) -> dict[str, Any]:
    return {"q": q, "user_session_id": SESSION, **extra}


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``[(event, data), ...]`` from a text/event-stream body (comments/pings skipped)."""
    import json

    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if name:
            events.append((name, json.loads("\n".join(data))))
    return events


@contextlib.contextmanager
def started_clients() -> Iterator[Callable[[FastAPI], TestClient]]:
    """``start(app)`` → a TestClient whose lifespan ran (server errors answered, not raised); every
    client started this way is shut down on exit."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(TestClient(app, raise_server_exceptions=False))
