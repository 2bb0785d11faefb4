"""Fixtures for rag unit tests: a fast deterministic embedding model and small indexes."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from rag.index.embeddings import NormalizedEmbeddings
from rag.index.store import LocalBlobStore, SourceRecord, write_index_version

FAKE_MODEL = "fake-model"
FAKE_DIM = 32


@pytest.fixture
def fake_embeddings() -> NormalizedEmbeddings:
    return NormalizedEmbeddings(DeterministicFakeEmbedding(size=FAKE_DIM), FAKE_MODEL, FAKE_DIM)


def make_docs(texts: list[str], source: str = "/docs/faq.csv") -> list[Document]:
    return [
        Document(page_content=t, metadata={"source": source, "row": i, "title": t[:20], "id": f"c-{i:04d}"})
        for i, t in enumerate(texts)
    ]


@pytest.fixture
def small_corpus() -> list[str]:
    return [
        "How do I reset my password? Go to settings and choose security.",
        "What regions are supported? All commercial regions are supported.",
        "How much does it cost? You pay per hour of instance usage.",
        "Can I use spot instances? Yes, managed spot training saves up to 90 percent.",
        "Is there a free tier? The free tier includes 250 hours of notebooks.",
        "How do I delete a cluster? Call TerminateJobFlows or use the console.",
    ]


@pytest.fixture
def written_index(tmp_path, fake_embeddings, small_corpus):
    """(store, version, docs, vectors) of a published index over ``small_corpus``."""
    store = LocalBlobStore(tmp_path / "index")
    docs = make_docs(small_corpus)
    vectors = np.asarray(fake_embeddings.embed_documents(small_corpus), dtype=np.float32)
    version = write_index_version(
        store,
        tenant="tenanta",
        embedding_model=FAKE_MODEL,
        vectors=vectors,
        documents=docs,
        sources=[SourceRecord(uri="/docs/faq.csv", etag_or_sha256="sha256:abc", chunks=len(docs))],
    )
    return store, version, docs, vectors


@pytest.fixture(scope="session")
def local_embeddings():
    """The real local MiniLM model (loads in ~4 s: session-scoped, used by very few unit tests)."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    from rag.index.embeddings import make_embeddings
    from rag.settings import Settings

    return make_embeddings(Settings(tenant_id="tenanta", embeddings_provider="local"))
