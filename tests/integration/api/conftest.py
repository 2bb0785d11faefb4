"""Integration fixtures for the RAG API: fake Bedrock, an API server in a thread, demo indexes."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from langchain_core.documents import Document

from rag.index.store import SourceRecord, write_index_version
from tests.integration.conftest import free_port
from tests.support.fake_bedrock import FakeBedrock, FakeBedrockConfig, hashing_embedding

TITAN_V2 = "amazon.titan-embed-text-v2:0"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
SESSION = "tenanta:alice@example.com:6f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d10"


def faq_documents(csv_path: Path) -> list[Document]:
    """One document per CSV row: ``question\\nanswer``; metadata ``row`` (0-based) and ``source``."""
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    return [
        Document(
            f"{row[0].strip()}\n{row[1].strip()}",
            metadata={"id": f"{csv_path.name}#{i}", "source": str(csv_path), "row": i, "title": row[0].strip()},
        )
        for i, row in enumerate(rows)
        if len(row) >= 2
    ]


def publish_titan_index(store: Any, documents: list[Document], tenant: str = "tenanta", dim: int = 1024) -> str:
    """Publish an index whose vectors are what the fake Titan endpoint returns for each text."""
    vectors = np.array([hashing_embedding(d.page_content, dim) for d in documents], dtype=np.float32)
    return write_index_version(
        store,
        tenant=tenant,
        embedding_model=TITAN_V2,
        vectors=vectors,
        documents=documents,
        sources=[SourceRecord(uri="faq.csv", etag_or_sha256="0" * 64, chunks=len(documents))],
    )


@pytest.fixture
def fake_bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    """A fake Bedrock Runtime endpoint; ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` points at it."""
    with FakeBedrock(FakeBedrockConfig()) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.endpoint)
        yield fake


@pytest.fixture(scope="session")
def sagemaker_docs(data_dir: Path) -> list[Document]:
    return faq_documents(data_dir / "Amazon_SageMaker_FAQs.csv")


class ThreadedServer:
    """uvicorn serving an app in a background thread (lifespan on), on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ThreadedServer]]:
    """``serve(app)`` → a started :class:`ThreadedServer`; stopped at teardown."""
    servers: list[ThreadedServer] = []

    def start(app: Any) -> ThreadedServer:
        server = ThreadedServer(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
