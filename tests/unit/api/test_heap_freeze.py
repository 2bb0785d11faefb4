"""api.state.freeze_long_lived_objects: the index is frozen after a load, and a replaced index is freed."""

from __future__ import annotations

import asyncio
import gc
import weakref

import numpy as np
from langchain_core.documents import Document

from api.state import IndexHolder
from rag.index.store import LocalBlobStore, write_index_version


def _publish(store: LocalBlobStore, n: int) -> None:
    docs = [Document(f"chunk {i}", metadata={"id": f"c{i}"}) for i in range(n)]
    vectors = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
    write_index_version(store, tenant="tenanta", embedding_model="fake", vectors=vectors, documents=docs, sources=[])


def test_freeze_after_load_and_the_replaced_index_is_freed(tmp_path):
    store = LocalBlobStore(tmp_path)
    holder = IndexHolder(store, tenant="tenanta", embedding_model="fake", prebuild_bm25=True, freeze_heap=True)
    try:
        _publish(store, 5)
        assert asyncio.run(holder.refresh())
        assert gc.get_freeze_count() > 0
        first = weakref.ref(holder.current)
        _publish(store, 7)
        assert asyncio.run(holder.refresh())
        assert holder.current is not None and len(holder.current.documents) == 7
        assert first() is None  # not kept alive by the permanent generation
    finally:
        gc.unfreeze()


def test_the_live_retriever_lets_the_old_index_go_before_the_freeze(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rag.answer.chain import LiveRetriever

    store = LocalBlobStore(tmp_path)
    holder = IndexHolder(store, tenant="tenanta", embedding_model="fake", prebuild_bm25=False, freeze_heap=True)
    retriever = LiveRetriever(index_provider=holder.get, embeddings=DeterministicFakeEmbedding(size=8), mode="dense")
    holder.on_loaded = retriever.prime
    try:
        _publish(store, 5)
        asyncio.run(holder.refresh())
        assert retriever.invoke("chunk 1")  # the base retriever for version 1 is cached
        first = weakref.ref(holder.current)
        _publish(store, 6)
        asyncio.run(holder.refresh())
        assert first() is None  # primed for version 2 before the freeze: version 1 was collected
        assert len(retriever.invoke("chunk 1")) == 4
    finally:
        gc.unfreeze()


def test_no_freeze_unless_asked(tmp_path):
    gc.unfreeze()
    store = LocalBlobStore(tmp_path)
    _publish(store, 3)
    holder = IndexHolder(store, tenant="tenanta", embedding_model="fake", prebuild_bm25=False)
    assert asyncio.run(holder.refresh())
    assert gc.get_freeze_count() == 0
