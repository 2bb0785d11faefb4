"""Retrieval over one tenant's index: dense (FAISS inner product) or hybrid (BM25 + dense, RRF).

Hybrid fusion is reciprocal rank fusion (Cormack et al., 2009: ``score = sum 1 / (c + rank)``,
``c = 60``), the same rule LangChain's ``EnsembleRetriever`` applies; it is done here so that each
returned chunk carries its scores (``metadata["score"]``: cosine similarity, ``metadata["fusion_score"]``:
the RRF score that ordered it, and ``metadata["rank"]``) for the citations the API returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import faiss
import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from rag.index.backend import Candidates, SearchIndex, unit_length
from rag.index.store import IndexVersion
from rag.settings import Settings
from rag.text import content_words

if TYPE_CHECKING:  # bm25s (and scipy under it, ~15 MiB) is imported on the first hybrid search
    import bm25s

RRF_C = 60
#: OpenMP threads per FAISS search: requests already search in parallel, one per chain thread.
SEARCH_THREADS = 1


def half_precision_flat(index: faiss.Index) -> faiss.Index:
    """A float16 copy of an exact inner-product index for serving; any other index is returned as is.

    A flat scan reads every vector for every query (memory-bound: 40 MB per query at 10k x 1024
    float32), so holding the vectors as IEEE half floats (FAISS ``IndexScalarQuantizer`` with
    ``QT_fp16``, https://github.com/facebookresearch/faiss/wiki/Vector-codec-benchmarks) halves both
    the memory and the bytes read: 0.77 instead of 1.38 ms per search at 10k x 1024 on this project's
    benchmark machine, recall@10 1.0 against the exact scan, cosine scores within 1e-3 of float32
    (unit vectors; half floats carry 11 significant bits). The scan stays exhaustive: no training,
    no approximation beyond rounding. Only the serving copy is rounded: the index file, and the
    vectors that incremental ingestion carries into the next version, stay float32.

    Args:
        index: a loaded index; only ``faiss.IndexFlatIP`` is converted.

    Returns:
        ``faiss.IndexScalarQuantizer`` (``QT_fp16``, inner product) with the same vectors in the same
        order, or ``index`` itself.
    """
    if type(index) is not faiss.IndexFlatIP:
        return index
    half = faiss.IndexScalarQuantizer(index.d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    if index.ntotal:
        # the flat index's own float32 array, viewed (no copy), encoded in one add: batches of copies
        # left about 30 MiB of freed-but-resident heap behind at 10k x 1024 (measured with smaps)
        vectors = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
        half.add(vectors)
    return half


def one_search_thread() -> None:
    """Make FAISS searches of the *calling* thread single-threaded (``faiss.omp_set_num_threads(1)``).

    OpenMP's thread count (the ``nthreads-var`` ICV) belongs to each thread: setting it on the event
    loop's thread leaves every thread started later at the default (one per core). Call it in each
    thread that searches, e.g. as a ``ThreadPoolExecutor`` ``initializer``. Without it a 10k-chunk
    flat search in a chain thread ran on a team of two spinning OpenMP threads on this 2-vCPU machine:
    API CPU per answer 17.5 ms against 11.3 ms (``benchmarks/api_bench.py``, zero-latency fake, 1 stream).
    OpenMP: https://www.openmp.org/spec-html/5.0/openmpsu35.html (ICVs of a thread's data environment);
    FAISS: https://github.com/facebookresearch/faiss/wiki/Threads-and-asynchronous-calls.
    """
    faiss.omp_set_num_threads(SEARCH_THREADS)


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stop words, as the BM25 side indexes and queries them."""
    return content_words(text)


@dataclass
class TenantIndex(SearchIndex):
    """A loaded FAISS index version plus what searching it needs, built once per version (in lifespan).

    Attributes:
        version: the loaded :class:`rag.index.store.IndexVersion`.
        ef_search: HNSW candidate list per query (``HNSW_EF_SEARCH``; raised to ``k`` when smaller;
            ignored by flat indexes).
        bm25: a BM25 model over the same chunks (``bm25s``: a precomputed sparse term-document
            matrix, about 0.2 ms per query at 100k chunks; built lazily on first hybrid search).
    """

    version: IndexVersion
    ef_search: int = 128
    _bm25: bm25s.BM25 | None = field(default=None, repr=False)
    _vocabulary: frozenset[str] | None = field(default=None, repr=False)
    _centroid: np.ndarray | None = field(default=None, repr=False)

    @property
    def tenant(self) -> str:
        """The tenant id from the manifest."""
        return self.version.manifest.tenant

    @property
    def documents(self) -> list[Document]:
        """Chunks in vector order."""
        return self.version.documents

    def bm25(self) -> bm25s.BM25:
        """The BM25 model (Robertson's Okapi BM25, k1=1.5, b=0.75; built on first use, about 3 s
        per 100k chunks). See https://github.com/xhluca/bm25s."""
        if self._bm25 is None:
            import bm25s  # here: a dense-only worker never holds scipy (docs/api.md "Workers and memory")

            corpus = [bm25_tokens(d.page_content) or ["<empty>"] for d in self.documents]
            model = bm25s.BM25(method="robertson", k1=1.5, b=0.75)
            model.index(corpus or [["<empty>"]], show_progress=False)
            self._bm25 = model
        return self._bm25

    def vocabulary(self) -> frozenset[str]:
        """Every content word of the chunks (built on first use; the grounding check's unknown words)."""
        if self._vocabulary is None:
            from rag.answer.grounding import index_vocabulary

            self._vocabulary = index_vocabulary(self.documents)
        return self._vocabulary

    def centroid(self) -> np.ndarray | None:
        """The unit-length mean of the chunk vectors (built on first use, read back from FAISS in
        batches of 4,096; the grounding check's corpus similarity, see
        :func:`rag.answer.grounding.relevance`). None for an empty index."""
        if self._centroid is None:
            index = self.version.index
            if index.ntotal == 0:
                return None
            total = np.zeros(index.d, dtype=np.float64)
            for start in range(0, index.ntotal, 4096):
                total += index.reconstruct_n(start, min(4096, index.ntotal - start)).sum(axis=0)
            self._centroid = unit_length(total)
        return self._centroid

    def dense_search(self, query_vector: list[float] | np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top ``k`` chunk positions by inner product (cosine: vectors are unit length).

        Exact for a flat index (over float16 vectors when it was loaded with :func:`half_precision_flat`);
        for HNSW the best of ``max(ef_search, k)`` graph candidates.
        """
        if not self.documents or k <= 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        k = min(k, len(self.documents))
        index = self.version.index
        if isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
            scores, positions = index.search(query, k, params=params)
        else:
            scores, positions = index.search(query, k)
        return [(int(p), float(s)) for p, s in zip(positions[0], scores[0], strict=True) if p >= 0]

    def search(self, query: str, vector: list[float] | np.ndarray, *, dense_k: int, keyword_k: int) -> Candidates:
        """See :meth:`rag.index.backend.SearchIndex.search` (FAISS for dense, BM25 for keywords)."""
        dense = self.dense_search(vector, dense_k)
        keyword = self.keyword_search(query, keyword_k) if keyword_k > 0 else []
        scores = dict(dense)
        query_vector = np.asarray(vector, dtype=np.float32)

        def cosine(position: int) -> float:
            found = scores.get(position)
            if found is not None:
                return found
            return float(np.dot(self.version.index.reconstruct(position), query_vector))

        return Candidates(dense=dense, keyword=keyword, documents=self.documents, cosine=cosine,
                          version=self.version.version)  # fmt: skip

    def keyword_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top ``k`` chunk positions by BM25 score (only those with a positive score)."""
        tokens = bm25_tokens(query)
        if not self.documents or not tokens or k <= 0:
            return []
        scores = np.asarray(self.bm25().get_scores(tokens))
        top = np.argsort(-scores)[:k]
        return [(int(p), float(scores[p])) for p in top if scores[p] > 0]


def reciprocal_rank_fusion(
    rankings: list[list[int]], weights: list[float] | None = None, c: int = RRF_C
) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids: ``score(id) = sum over lists of weight / (c + rank)``, rank from 1.

    Args:
        rankings: ranked id lists, best first.
        weights: one weight per list (default 1.0 each), as in LangChain's ``EnsembleRetriever``.
        c: the RRF constant (60 in the original paper).

    Returns:
        ``(id, score)`` pairs, best first; ties keep first-seen order.
    """
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (c + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


class TenantRetriever(BaseRetriever):
    """LangChain retriever over one tenant's index (:class:`TenantIndex` for FAISS,
    :class:`rag.index.pgvector.PgTenantIndex` for PostgreSQL).

    Args:
        index: the tenant's loaded index.
        embeddings: the query embedding model (same model id as the index manifest).
        mode: ``"dense"`` or ``"hybrid"`` (setting ``RETRIEVER_MODE``).
        k: chunks returned per query (the API's ``max_matching_docs``).
        candidates: how many candidates each side contributes before fusion (hybrid only).
        reranker: optional second stage (e.g. ``langchain_aws.BedrockRerank``); it receives
            ``k * rerank_pool`` fused candidates and keeps the ``k`` best.
        keyword_weight: weight of the BM25 ranking against 1.0 for the dense one (hybrid only;
            0.5 measured best on the dev sets, see README "Retrieval quality").

    Each returned ``Document`` is a copy whose metadata adds ``score`` and ``dense_score`` (cosine
    similarity), ``fusion_score`` (the score that ordered the results: cosine for dense, RRF for
    hybrid; Bedrock's relevance score with a reranker), ``rank`` (1-based) and, when the index has
    a :meth:`~rag.index.backend.SearchIndex.centroid`, ``corpus_score`` (the query's cosine with it).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: SearchIndex
    embeddings: Embeddings
    mode: Literal["dense", "hybrid"] = "hybrid"
    k: int = Field(default=4, ge=1, le=100)
    candidates: int = Field(default=30, ge=1, le=1000)
    keyword_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    reranker: BaseDocumentCompressor | None = None
    rerank_pool: int = Field(default=3, ge=1, le=10, description="candidates sent to the reranker, times k")

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        vector = self.embeddings.embed_query(query)
        if self.reranker is None:
            return self.search_by_vector(query, vector)
        pool = self.model_copy(update={"k": min(100, self.k * self.rerank_pool)}).search_by_vector(query, vector)
        reranked = list(self.reranker.compress_documents(pool, query))[: self.k]
        for rank, doc in enumerate(reranked, start=1):
            doc.metadata["rank"] = rank
            if "relevance_score" in doc.metadata:
                doc.metadata["score"] = doc.metadata["fusion_score"] = round(float(doc.metadata["relevance_score"]), 6)
        return reranked

    def search_by_vector(self, query: str, vector: list[float] | np.ndarray) -> list[Document]:
        """Search with an already computed query embedding (``dim`` floats)."""
        pool = max(self.k, self.candidates)
        hybrid = self.mode == "hybrid"
        # One call, one index version: dense and keyword candidates can never come from two versions.
        found = self.index.search(query, vector, dense_k=pool if hybrid else self.k, keyword_k=pool if hybrid else 0)
        dense = found.dense
        if self.mode == "dense":
            ranked = dense[: self.k]
        else:
            keyword = found.keyword
            ranked = reciprocal_rank_fusion(
                [[p for p, _ in dense], [p for p, _ in keyword]], [1.0, self.keyword_weight]
            )[: self.k]
        centroid = self.index.centroid()
        corpus = None if centroid is None else round(float(np.dot(np.asarray(vector, dtype=np.float32), centroid)), 6)
        results = []
        for rank, (position, score) in enumerate(ranked, start=1):
            doc = found.documents[position]
            dense_score = found.cosine(position)  # for keyword-only hits too: the citation's score
            metadata = {
                **doc.metadata,
                # The citation score users see: cosine similarity (-1..1) of query and chunk, also in
                # hybrid mode, where the order comes from the fused rank (``fusion_score``).
                "score": round(dense_score, 6),
                "dense_score": round(dense_score, 6),
                "fusion_score": round(score, 6),
                "rank": rank,
            }
            if corpus is not None:  # the query's cosine with the index centroid (same for every chunk)
                metadata["corpus_score"] = corpus
            results.append(Document(page_content=doc.page_content, metadata=metadata, id=doc.id))
        return results


def make_retriever(
    settings: Settings,
    index: SearchIndex,
    embeddings: Embeddings,
    *,
    bedrock_agent_client: object = None,
    k: int = 4,
) -> TenantRetriever:
    """The retriever the settings ask for: ``RETRIEVER_MODE`` plus, when ``RERANK_MODEL_ARN`` is set,
    Bedrock's Rerank API as a second stage
    (https://docs.aws.amazon.com/bedrock/latest/userguide/rerank.html).

    Args:
        settings: ``RETRIEVER_MODE``, ``RERANK_MODEL_ARN``, region.
        index: the tenant's loaded index.
        embeddings: the query embedding model.
        bedrock_agent_client: a ``bedrock-agent-runtime`` client (tests pass a stubbed one).
        k: chunks per query (the API overrides it per request with ``model_copy``).
    """
    reranker = None
    if settings.rerank_model_arn:
        from langchain_aws import BedrockRerank

        from rag.aws import make_client

        client = bedrock_agent_client or make_client("bedrock-agent-runtime", settings)
        reranker = BedrockRerank(model_arn=settings.rerank_model_arn, client=client, top_n=k)
    return TenantRetriever(index=index, embeddings=embeddings, mode=settings.retriever_mode, k=k, reranker=reranker)
