"""Fixtures for ingestion unit tests: fake embeddings and tiny source trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from rag.index.embeddings import NormalizedEmbeddings
from tests.support.pdf import make_pdf

FAKE_MODEL = "fake-model"
FAKE_DIM = 32


class CountingEmbeddings(NormalizedEmbeddings):
    """Fake embeddings that record every text embedded and can fail after N calls."""

    def __init__(self, fail_after_calls: int | None = None) -> None:
        super().__init__(DeterministicFakeEmbedding(size=FAKE_DIM), FAKE_MODEL, FAKE_DIM)
        self.texts: list[str] = []
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise RuntimeError("embedding backend exploded")
        self.texts += texts
        return super().embed_documents(texts)


@pytest.fixture
def fake_embeddings() -> CountingEmbeddings:
    return CountingEmbeddings()


def minimal_pdf(pages: list[str]) -> bytes:
    """A small valid PDF, one text page per item (:func:`tests.support.pdf.make_pdf`)."""
    return make_pdf(pages)


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return root
