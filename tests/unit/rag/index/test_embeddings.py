"""Embeddings factory and normalisation (rag.index.embeddings)."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from rag.index.embeddings import KNOWN_DIMENSIONS, NormalizedEmbeddings, l2_normalize, make_embeddings
from rag.settings import LOCAL_EMBEDDING_MODEL_ID, load_settings


class _Scaled(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[3.0, 4.0, 0.0] for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return [0.0, 0.0, 0.0]


def test_l2_normalize() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert l2_normalize(np.array([1.0, 0.0])).shape == (1, 2)


def test_normalized_embeddings_wrapper() -> None:
    emb = NormalizedEmbeddings(_Scaled(), "scaled", 3)
    np.testing.assert_allclose(emb.embed_documents(["a", "b"]), [[0.6, 0.8, 0.0]] * 2, rtol=1e-6)
    assert emb.embed_documents([]) == []
    assert emb.embed_query("zero") == [0.0, 0.0, 0.0]  # a zero vector stays zero, no NaN
    assert emb.model_id == "scaled"
    assert emb.dim == 3


def test_fake_embeddings_are_unit_length_and_deterministic() -> None:
    emb = NormalizedEmbeddings(DeterministicFakeEmbedding(size=16), "fake", 16)
    first = np.asarray(emb.embed_documents(["hello", "world"]))
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first, emb.embed_documents(["hello", "world"]))


@pytest.mark.parametrize(
    ("model", "dims", "expected_dim", "sent_dims"),
    [
        ("amazon.titan-embed-text-v2:0", None, 1024, None),
        ("amazon.titan-embed-text-v2:0", "256", 256, 256),
        ("amazon.titan-embed-text-v1", None, 1536, None),
    ],
)
def test_make_bedrock_embeddings(monkeypatch: pytest.MonkeyPatch, model, dims, expected_dim, sent_dims) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("EMBEDDING_MODEL_ID", model)
    if dims:
        monkeypatch.setenv("EMBEDDING_DIMENSIONS", dims)
    import boto3

    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    emb = make_embeddings(load_settings(), bedrock_client=client)
    assert emb.model_id == model
    assert emb.dim == expected_dim
    assert emb.inner.client is client
    assert emb.inner.dimensions == sent_dims


def test_make_bedrock_embeddings_without_region_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.settings import SettingsError

    monkeypatch.setenv("TENANT_ID", "tenanta")
    with pytest.raises(SettingsError, match="AWS_DEFAULT_REGION"):
        make_embeddings(load_settings())


def test_local_model_embeds_offline(monkeypatch: pytest.MonkeyPatch, local_embeddings) -> None:
    """The real all-MiniLM-L6-v2 from the PyPI package, with the network blocked."""
    emb = local_embeddings
    assert emb.model_id == LOCAL_EMBEDDING_MODEL_ID
    assert emb.dim == KNOWN_DIMENSIONS[LOCAL_EMBEDDING_MODEL_ID] == 384
    vectors = np.asarray(
        emb.embed_documents(["How do I reset my password?", "Password reset steps", "Spot instance pricing"])
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    query = np.asarray(emb.embed_query("How do I reset my password?"))
    assert query @ vectors[0] == pytest.approx(1.0, abs=1e-4)
