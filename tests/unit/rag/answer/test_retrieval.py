"""Retrieval (rag.answer.retrieval): RRF math, dense vs hybrid on a tiny corpus, score metadata."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from rag.answer.retrieval import RRF_C, TenantIndex, TenantRetriever, bm25_tokens, reciprocal_rank_fusion
from rag.index.store import LocalBlobStore, load_index_version, write_index_version
from tests.unit.rag.conftest import FAKE_MODEL, make_docs


def test_rrf_single_list() -> None:
    fused = reciprocal_rank_fusion([[7, 3, 5]])
    assert [i for i, _ in fused] == [7, 3, 5]
    assert [s for _, s in fused] == pytest.approx([1 / 61, 1 / 62, 1 / 63])


def test_rrf_two_lists_math() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]]))
    assert fused[1] == pytest.approx(1 / (RRF_C + 1) + 1 / (RRF_C + 2))
    assert fused[3] == pytest.approx(1 / (RRF_C + 3) + 1 / (RRF_C + 1))
    assert fused[2] == pytest.approx(1 / (RRF_C + 2))
    assert fused[4] == pytest.approx(1 / (RRF_C + 3))
    order = [i for i, _ in reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])]
    assert order == [1, 3, 2, 4]


def test_rrf_item_in_both_lists_beats_top_of_one() -> None:
    # 9 is 2nd in both lists; 1 is first in one list only
    order = [i for i, _ in reciprocal_rank_fusion([[1, 9], [2, 9]])]
    assert order[0] == 9


def test_rrf_ties_keep_first_seen_order_and_custom_c() -> None:
    fused = reciprocal_rank_fusion([[5, 6], [6, 5]], c=0)
    assert [i for i, _ in fused] == [5, 6]
    assert fused[0][1] == pytest.approx(1.5)
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


def test_rrf_weights() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2], [2, 1]], [1.0, 0.5]))
    assert fused[1] == pytest.approx(1 / 61 + 0.5 / 62)
    assert fused[2] == pytest.approx(1 / 62 + 0.5 / 61)
    assert [i for i, _ in reciprocal_rank_fusion([[1, 2], [2, 1]], [1.0, 0.5])] == [1, 2]
    assert [i for i, _ in reciprocal_rank_fusion([[1, 2], [2, 1]], [0.5, 1.0])] == [2, 1]


def test_bm25_tokens() -> None:
    assert bm25_tokens("How do I reset MY Password?") == ["reset", "password"]
    assert bm25_tokens("the a of") == []


class _KeywordBlind(Embeddings):
    """Every text maps to one of two directions by its first word, so the dense side cannot tell
    documents sharing a first word apart; BM25 can."""

    def _vec(self, text: str) -> list[float]:
        return [1.0, 0.0] if text.lower().startswith("how") else [0.0, 1.0]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


@pytest.fixture
def blind_index(tmp_path):
    texts = [
        "How do I reset my password in the console?",
        "How do I enable spot instances for training?",
        "How do I terminate a cluster?",
        "What is the price of storage?",
        "What regions are supported?",
    ]
    emb = _KeywordBlind()
    store = LocalBlobStore(tmp_path)
    write_index_version(
        store,
        tenant="tenanta",
        embedding_model=FAKE_MODEL,
        vectors=np.asarray(emb.embed_documents(texts)),
        documents=make_docs(texts),
        sources=[],
    )
    return TenantIndex(load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)), emb


def test_dense_vs_hybrid(blind_index) -> None:
    index, emb = blind_index
    query = "How can I terminate my cluster"
    dense = TenantRetriever(index=index, embeddings=emb, mode="dense", k=3).invoke(query)
    hybrid_retriever = TenantRetriever(index=index, embeddings=emb, mode="hybrid", k=3)
    hybrid = hybrid_retriever.invoke(query)
    # dense: three equal cosines of 1.0; faiss order among ties, no keyword signal
    assert {d.metadata["row"] for d in dense} == {0, 1, 2}
    assert all(d.metadata["score"] == pytest.approx(1.0) for d in dense)
    # hybrid: BM25 puts the terminate/cluster row first
    assert hybrid[0].metadata["row"] == 2
    assert [d.metadata["rank"] for d in hybrid] == [1, 2, 3]
    dense_rank_of_row2 = [
        d.metadata["row"] for d in TenantRetriever(index=index, embeddings=emb, mode="dense", k=5).invoke(query)
    ].index(2) + 1
    # row 2 is BM25's only hit (rank 1) and somewhere in the dense list
    weight = getattr(hybrid_retriever, "keyword_weight", 1.0)
    expected = weight / (RRF_C + 1) + 1 / (RRF_C + dense_rank_of_row2)
    assert hybrid[0].metadata["fusion_score"] == pytest.approx(expected, abs=1e-6)
    assert hybrid[0].metadata["fusion_score"] > hybrid[1].metadata["fusion_score"]
    # the score users see is the cosine similarity, in both modes
    assert hybrid[0].metadata["dense_score"] == pytest.approx(1.0)
    assert all(d.metadata["score"] == d.metadata["dense_score"] for d in hybrid)


def test_hybrid_finds_keyword_only_match_with_dense_score(blind_index) -> None:
    index, emb = blind_index
    # query embeds like the "How" rows, but its keywords hit a "What" row
    retriever = TenantRetriever(index=index, embeddings=emb, mode="hybrid", k=5, candidates=2)
    docs = retriever.invoke("how about storage price")
    rows = [d.metadata["row"] for d in docs]
    assert 3 in rows
    storage = docs[rows.index(3)]
    assert storage.metadata["dense_score"] == pytest.approx(0.0, abs=1e-6)  # computed cosine, not missing


def test_scores_and_metadata_are_copies(written_index, fake_embeddings) -> None:
    store, _, docs, _ = written_index
    index = TenantIndex(load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL))
    found = TenantRetriever(index=index, embeddings=fake_embeddings, mode="dense", k=2).invoke(docs[0].page_content)
    assert found[0].metadata["source"] == "/docs/faq.csv"
    assert {"score", "dense_score", "rank", "row", "title", "id"} <= set(found[0].metadata)
    assert "score" not in index.documents[0].metadata  # the index's documents are not mutated
    assert index.tenant == "tenanta"


def test_k_larger_than_corpus_and_empty_query(written_index, fake_embeddings) -> None:
    store, _, docs, _ = written_index
    index = TenantIndex(load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL))
    found = TenantRetriever(index=index, embeddings=fake_embeddings, mode="hybrid", k=50).invoke("price")
    assert len(found) == len(docs)
    assert len({d.metadata["id"] for d in found}) == len(docs)
    assert index.keyword_search("the of a", 5) == []
    assert index.dense_search(fake_embeddings.embed_query("x"), 0) == []


def test_centroid_and_corpus_score(written_index, fake_embeddings) -> None:
    store, _, docs, vectors = written_index
    index = TenantIndex(load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL))
    centroid = index.centroid()
    expected = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))
    assert centroid is not None and np.allclose(centroid, expected, atol=1e-6)
    assert index.centroid() is centroid  # computed once
    query = docs[0].page_content
    found = TenantRetriever(index=index, embeddings=fake_embeddings, mode="dense", k=3).invoke(query)
    vector = np.asarray(fake_embeddings.embed_query(query), dtype=np.float32)
    # one value per query, the same on every chunk it retrieved
    scores = {d.metadata["corpus_score"] for d in found}
    assert len(found) == 3 and len(scores) == 1
    assert scores.pop() == pytest.approx(float(vector @ expected), abs=1e-5)
