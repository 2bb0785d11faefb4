"""Bedrock Rerank as the optional second retrieval stage, through botocore's Stubber."""

from __future__ import annotations

import boto3
import numpy as np
from botocore.stub import ANY, Stubber
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from rag.answer.retrieval import TenantIndex, make_retriever
from rag.index.embeddings import NormalizedEmbeddings
from rag.index.store import LocalBlobStore, load_index_version, write_index_version
from rag.settings import load_settings

RERANK_ARN = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"


def _index(tmp_path, embeddings) -> TenantIndex:
    texts = [f"passage number {i} about topic {i % 3}" for i in range(12)]
    docs = [
        Document(page_content=t, metadata={"id": f"c{i}", "source": "s.csv", "row": i}) for i, t in enumerate(texts)
    ]
    vectors = np.asarray(embeddings.embed_documents(texts))
    store = LocalBlobStore(tmp_path)
    write_index_version(store, tenant="tenanta", embedding_model="fake", vectors=vectors, documents=docs, sources=[])
    return TenantIndex(load_index_version(store, tenant="tenanta", embedding_model="fake"))


def test_rerank_reorders_candidates_and_reports_relevance(tmp_path):
    embeddings = NormalizedEmbeddings(DeterministicFakeEmbedding(size=16), "fake", 16)
    settings = load_settings(tenant_id="tenanta", aws_default_region="us-west-2", rerank_model_arn=RERANK_ARN,
                             retriever_mode="dense")  # fmt: skip
    client = boto3.client("bedrock-agent-runtime", region_name="us-west-2", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(client)
    # The real Rerank response shape: results with the index into the sources sent, best first.
    stub.add_response(
        "rerank",
        {"results": [{"index": 5, "relevanceScore": 0.91}, {"index": 0, "relevanceScore": 0.42}]},
        expected_params={"queries": ANY, "sources": ANY, "rerankingConfiguration": ANY},
    )
    retriever = make_retriever(settings, _index(tmp_path, embeddings), embeddings, bedrock_agent_client=client, k=2)
    with stub:
        pool = retriever.model_copy(update={"reranker": None, "k": 6}).invoke("topic 1")
        docs = retriever.invoke("topic 1")
    stub.assert_no_pending_responses()
    assert [d.metadata["id"] for d in docs] == [pool[5].metadata["id"], pool[0].metadata["id"]]
    assert [d.metadata["score"] for d in docs] == [0.91, 0.42]
    assert [d.metadata["rank"] for d in docs] == [1, 2]


def test_without_rerank_setting_results_come_from_the_index_alone(tmp_path):
    embeddings = NormalizedEmbeddings(DeterministicFakeEmbedding(size=16), "fake", 16)
    settings = load_settings(tenant_id="tenanta", retriever_mode="dense")
    retriever = make_retriever(settings, _index(tmp_path, embeddings), embeddings, k=3)
    docs = retriever.invoke("topic 2")  # sockets are blocked: any Bedrock call would fail the test
    assert retriever.reranker is None
    scores = [d.metadata["score"] for d in docs]
    assert len(docs) == 3 and scores == sorted(scores, reverse=True)
