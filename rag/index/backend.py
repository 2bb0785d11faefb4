"""The index backend interface: FAISS files (the default) or PostgreSQL/pgvector (``VECTOR_STORE``).

Three roles, each with a FAISS and a pgvector implementation:

- :class:`SearchIndex`: what the retriever searches (:class:`rag.answer.retrieval.TenantIndex` over
  a FAISS file, :class:`rag.index.pgvector.PgTenantIndex` over the tenant's schema). One
  :meth:`SearchIndex.search` call returns dense and keyword candidates of one version, which
  :class:`rag.answer.retrieval.TenantRetriever` fuses (the same RRF for both backends).
- :class:`IndexReader`: what the API's index holder polls and loads (``LATEST`` / the ``current``
  pointer) and asks for readiness (:mod:`rag.answer.readers`: it builds the searchable indexes).
- :class:`IndexWriter`: what ingestion reads the published version from and publishes a new one to.

:func:`open_index_writer` and :func:`rag.answer.readers.open_index_reader` pick the implementation
from the settings.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from langchain_core.documents import Document

from rag.index.store import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    BlobStore,
    IndexError_,
    IndexIntegrityError,
    IndexManifest,
    IndexNotFoundError,
    IndexVersion,
    SourceRecord,
    list_versions,
    load_index_version,
    read_latest_version_id,
    write_index_version,
)

if TYPE_CHECKING:
    from rag.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class VectorStoreUnavailableError(RuntimeError):
    """The vector database cannot be reached, refused the connection or did not answer in time.

    The API maps it to 503 ``vector_store_unavailable`` with ``Retry-After`` (:mod:`api.errors`),
    and readiness reports false while it lasts.
    """


@dataclass
class Candidates:
    """What one :meth:`SearchIndex.search` found, all from one index version.

    Attributes:
        dense: ``(position, cosine similarity)`` best first.
        keyword: ``(position, keyword score)`` best first (BM25 for FAISS, ``ts_rank_cd`` for pgvector).
        documents: ``documents[position]`` is the chunk (``metadata["id"]`` is the chunk id) for every
            position in ``dense`` or ``keyword``.
        cosine: the query's cosine similarity with any of those positions (for citations of
            keyword-only hits).
        version: the index version searched.
    """

    dense: list[tuple[int, float]]
    keyword: list[tuple[int, float]]
    documents: Sequence[Document] | dict[int, Document]
    cosine: Callable[[int], float]
    version: str


def unit_length(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 as float32 (unchanged when it is all zeros), e.g. a centroid."""
    total = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(total))
    return (total / norm if norm > 0 else total).astype(np.float32)


class SearchIndex(abc.ABC):
    """A searchable index version of one tenant.

    Attributes:
        version: the loaded version: ``.version`` (id) and ``.manifest`` (:class:`IndexManifest`).
    """

    version: Any

    @property
    def tenant(self) -> str:
        """The tenant id from the manifest."""
        return self.version.manifest.tenant

    @abc.abstractmethod
    def search(self, query: str, vector: list[float] | np.ndarray, *, dense_k: int, keyword_k: int) -> Candidates:
        """Dense and keyword candidates for one query, from one version.

        Args:
            query: the (condensed) question, for the keyword side.
            vector: its embedding, ``dim`` floats of unit length.
            dense_k: nearest chunks by inner product to return.
            keyword_k: best keyword matches to return (0: no keyword search).

        Raises:
            VectorStoreUnavailableError: the database is down or slow (pgvector only).
        """

    def vocabulary(self) -> frozenset[str] | None:
        """Every content word (:func:`rag.text.content_words`) of this version's chunks, or None if unknown.

        The grounding check (:mod:`rag.answer.grounding`) penalises a question's words that occur
        nowhere in the index; None switches that penalty off. Backends build it once per version.
        """
        return None

    def centroid(self) -> np.ndarray | None:
        """The unit-length mean of the version's chunk vectors (``dim`` floats), or None when the
        backend does not provide it; the grounding check then compares the cosine alone
        (:func:`rag.answer.grounding.relevance`)."""
        return None


class IndexReader(Protocol):
    """What the API's :class:`api.state.IndexHolder` needs from a backend."""

    uri: str

    def latest_version_id(self) -> str:
        """The published version id. Raises ``IndexNotFoundError`` when nothing is published."""

    def load(self, version: str) -> SearchIndex:
        """Load and verify ``version``. Raises ``IndexIntegrityError`` / ``IndexNotFoundError``."""

    def check(self) -> None:
        """Raise :class:`VectorStoreUnavailableError` when the backend cannot serve now."""


class IndexWriter(Protocol):
    """What :func:`ingest.pipeline.run_ingestion` needs from a backend."""

    uri: str

    def previous(self, tenant: str, embedding_model: str) -> IndexVersion | None:
        """The published version (manifest and documents in position order), None when there is
        none or it cannot be reused (other model, corrupt)."""

    def publish(
        self,
        *,
        tenant: str,
        embedding_model: str,
        previous: IndexVersion | None,
        kept_positions: list[int],
        new_vectors: np.ndarray,
        documents: list[Document],
        sources: list[SourceRecord],
        chunking: dict[str, int],
        index_type: str,
        hnsw_m: int,
        hnsw_ef_construction: int,
    ) -> str:
        """Write a complete version (``documents`` = the reused chunks at ``kept_positions`` of
        ``previous`` followed by the new ones, whose vectors are ``new_vectors``), then switch
        readers to it atomically. Returns the version id."""

    def prune(self, keep: int) -> None:
        """Delete all but the ``keep`` newest versions, never the published one; failures only log."""


def published_or_none(load: Callable[[], T]) -> T | None:
    """What ``load`` reads of the published version, or None when incremental ingestion cannot reuse it.

    The one rule of both backends' :meth:`IndexWriter.previous`.

    Args:
        load: reads the published version (raising the :mod:`rag.index.store` errors).

    Returns:
        ``load()``; None when nothing is published (``IndexNotFoundError``) or the version is corrupt,
        for another tenant or another embedding model (``IndexIntegrityError``, logged as a warning):
        every source is then embedded again.
    """
    try:
        return load()
    except IndexNotFoundError:
        return None
    except IndexIntegrityError as exc:
        log.warning("published index is not reusable (%s): every source is embedded again", exc)
        return None


# --------------------------------------------------------------------------------------------
# FAISS files (rag.index.store)


class FaissIndexWriter:
    """:class:`IndexWriter` over a FAISS index root: one folder per version, ``LATEST`` last.

    Args:
        store: the index root.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.uri = store.uri

    def previous(self, tenant: str, embedding_model: str) -> IndexVersion | None:
        """See :class:`IndexWriter`."""
        return published_or_none(lambda: load_index_version(self.store, tenant=tenant, embedding_model=embedding_model))

    def publish(
        self,
        *,
        tenant: str,
        embedding_model: str,
        previous: IndexVersion | None,
        kept_positions: list[int],
        new_vectors: np.ndarray,
        documents: list[Document],
        sources: list[SourceRecord],
        chunking: dict[str, int],
        index_type: str,
        hnsw_m: int = HNSW_M,
        hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
    ) -> str:
        """See :class:`IndexWriter`: the reused vectors are read from the previous FAISS index."""
        parts = []
        if kept_positions:
            if previous is None:
                raise ValueError("kept_positions without a previous version")
            parts.append(previous.vectors()[kept_positions])
        if len(new_vectors):
            parts.append(new_vectors)
        vectors = np.vstack(parts).astype(np.float32)
        return write_index_version(
            self.store,
            tenant=tenant,
            embedding_model=embedding_model,
            vectors=vectors,
            documents=documents,
            sources=sources,
            chunking=chunking,
            index_type=index_type,
            hnsw_m=hnsw_m,
            hnsw_ef_construction=hnsw_ef_construction,
        )

    def prune(self, keep: int) -> None:
        """See :class:`IndexWriter`."""
        try:
            published = read_latest_version_id(self.store)
            old = [v for v in list_versions(self.store)[:-keep] if v != published] if keep > 0 else []
            for version in old:
                self.store.delete(self.store.list(f"v/{version}/"))
        except (IndexError_, OSError) as exc:
            log.warning("could not prune old index versions: %s", exc)


def as_index_writer(target: BlobStore | IndexWriter) -> IndexWriter:
    """``target`` itself when it is an :class:`IndexWriter`, else a :class:`FaissIndexWriter` over it."""
    if hasattr(target, "publish") and hasattr(target, "previous"):
        return target  # type: ignore[return-value]
    return FaissIndexWriter(target)  # type: ignore[arg-type]


def open_index_writer(settings: Settings, *, s3_client: Any = None, index_uri: str | None = None) -> IndexWriter:
    """The ingestion side of the backend ``VECTOR_STORE`` names.

    Args:
        settings: ``VECTOR_STORE``, ``INDEX_URI`` (faiss) or the ``PG*`` settings (pgvector).
        s3_client: for an ``s3://`` index root.
        index_uri: overrides ``INDEX_URI`` (faiss only).

    Raises:
        SettingsError: neither ``INDEX_URI`` nor ``CONTEXTUAL_DATA_BUCKET`` (faiss).
    """
    if settings.vector_store == "pgvector":
        from rag.index.pgvector import PgVectorIndex

        return PgVectorIndex.from_settings(settings, purpose="ingest")
    from rag.index.store import open_store

    return FaissIndexWriter(open_store(index_uri or settings.resolved_index_uri, s3_client=s3_client))


__all__ = [
    "Candidates",
    "FaissIndexWriter",
    "IndexManifest",
    "IndexReader",
    "IndexWriter",
    "SearchIndex",
    "VectorStoreUnavailableError",
    "as_index_writer",
    "open_index_writer",
]
