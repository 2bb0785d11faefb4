"""The serving side of the index backends (``VECTOR_STORE``): what the API's index holder polls
and loads. Lives above :mod:`rag.index` because a loaded FAISS version becomes a
:class:`rag.answer.retrieval.TenantIndex` (BM25 included).
"""

from __future__ import annotations

from typing import Any

from rag.answer.retrieval import TenantIndex, half_precision_flat
from rag.index.backend import IndexReader, SearchIndex
from rag.index.store import BlobStore, load_index_version, read_latest_version_id
from rag.settings import FlatSearchPrecision, Settings


class FaissIndexReader:
    """:class:`IndexReader` over a FAISS index root (:mod:`rag.index.store`).

    Args:
        store: the index root.
        tenant: the tenant served; the manifest must say the same.
        embedding_model: the query embedding model id; the manifest must say the same.
        ef_search: HNSW candidate list per query.
        prebuild_bm25: build the BM25 side while loading.
        flat_precision: ``"float16"`` serves a flat index from a half-precision copy
            (:func:`rag.answer.retrieval.half_precision_flat`), ``"float32"`` from the file's vectors.
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        tenant: str,
        embedding_model: str,
        ef_search: int = 128,
        prebuild_bm25: bool = False,
        flat_precision: FlatSearchPrecision = "float32",
    ) -> None:
        self.store = store
        self.flat_precision = flat_precision
        self.uri = store.uri
        self.tenant = tenant
        self.embedding_model = embedding_model
        self.ef_search = ef_search
        self.prebuild_bm25 = prebuild_bm25

    def latest_version_id(self) -> str:
        """See :class:`IndexReader`."""
        return read_latest_version_id(self.store)

    def load(self, version: str) -> SearchIndex:
        """See :class:`IndexReader`."""
        found = load_index_version(self.store, version, tenant=self.tenant, embedding_model=self.embedding_model)
        if self.flat_precision == "float16":
            found.index = half_precision_flat(found.index)  # the float32 copy is freed here
        loaded = TenantIndex(found, ef_search=self.ef_search)
        if self.prebuild_bm25:
            loaded.bm25()
        loaded.vocabulary()  # the grounding check's word list, built here rather than on the first question
        loaded.centroid()  # and its corpus centroid
        return loaded

    def check(self) -> None:
        """See :class:`IndexReader`: a loaded FAISS index lives in memory, nothing to check."""


def open_index_reader(
    settings: Settings, *, embedding_model: str, s3_client: Any = None, prebuild_bm25: bool = False
) -> IndexReader:
    """The serving side of the backend ``VECTOR_STORE`` names.

    Args:
        settings: ``VECTOR_STORE``, ``INDEX_URI``, ``HNSW_EF_SEARCH``, ``FLAT_SEARCH_PRECISION`` or the
            ``PG*`` settings.
        embedding_model: the query embedding model id (the index must have been built with it).
        s3_client: for an ``s3://`` index root.
        prebuild_bm25: build FAISS's BM25 side while loading (hybrid retrieval).
    """
    if settings.vector_store == "pgvector":
        from rag.index.pgvector import PgVectorIndex

        backend = PgVectorIndex.from_settings(settings, purpose="serve")
        return backend.reader(embedding_model=embedding_model, ef_search=settings.hnsw_ef_search)
    from rag.index.store import open_store

    return FaissIndexReader(
        open_store(settings.resolved_index_uri, s3_client=s3_client),
        tenant=settings.tenant_id,
        embedding_model=embedding_model,
        ef_search=settings.hnsw_ef_search,
        prebuild_bm25=prebuild_bm25,
        flat_precision=settings.flat_search_precision,
    )
