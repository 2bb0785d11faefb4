"""Titan embeddings through a real bedrock-runtime client with botocore's Stubber (real shapes)."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from ingest.embedder import embed_in_batches
from rag.index.embeddings import make_embeddings
from rag.settings import load_settings

MODEL = "amazon.titan-embed-text-v2:0"


def _titan_body(vector: list[float], tokens: int = 5) -> StreamingBody:
    raw = json.dumps(
        {"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": tokens}
    ).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def _response(vector: list[float]) -> dict:
    return {"body": _titan_body(vector), "contentType": "application/json"}


def _expected(text: str, dims: int | None) -> dict:
    body = {"inputText": text, **({"dimensions": dims} if dims else {})}
    return {"body": json.dumps(body), "modelId": MODEL, "accept": "application/json", "contentType": "application/json"}


@pytest.fixture
def client():
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.mark.parametrize("dims", [None, 256])
def test_titan_v2_request_and_response_shapes(monkeypatch, client, dims) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("EMBEDDING_MODEL_ID", MODEL)
    if dims:
        monkeypatch.setenv("EMBEDDING_DIMENSIONS", str(dims))
    size = dims or 1024
    emb = make_embeddings(load_settings(), bedrock_client=client)
    assert emb.dim == size
    texts = ["What is SageMaker?", "How do I stop a cluster?", "Q"]
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=size).tolist() for _ in texts]
    with Stubber(client) as stub:
        for text, vector in zip(texts, vectors, strict=True):
            stub.add_response("invoke_model", _response(vector), expected_params=_expected(text, dims))
        out = embed_in_batches(emb, texts, batch_size=2, concurrency=1)
        stub.assert_no_pending_responses()
    assert out.shape == (3, size)
    expected = np.asarray(vectors) / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_throttling_is_retried_then_succeeds(monkeypatch, client) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    emb = make_embeddings(load_settings(), bedrock_client=client)
    with Stubber(client) as stub:
        stub.add_response("invoke_model", _response([1.0] + [0.0] * 1023), expected_params=_expected("a", None))
        stub.add_client_error(
            "invoke_model", service_error_code="ThrottlingException", service_message="Too many requests",
            http_status_code=429, expected_params=_expected("b", None),
        )  # fmt: skip
        # the retry re-embeds the whole batch ("a", "b")
        stub.add_response("invoke_model", _response([0.0, 2.0] + [0.0] * 1022), expected_params=_expected("a", None))
        stub.add_response(
            "invoke_model", _response([0.0, 0.0, 3.0] + [0.0] * 1021), expected_params=_expected("b", None)
        )
        out = embed_in_batches(emb, ["a", "b"], batch_size=2, concurrency=1, max_backoff_seconds=0.01)
        stub.assert_no_pending_responses()
    assert out.shape == (2, 1024)
    assert out[0, 1] == pytest.approx(1.0)
    assert out[1, 2] == pytest.approx(1.0)


def test_access_denied_is_not_retried(monkeypatch, client) -> None:
    from botocore.exceptions import ClientError

    monkeypatch.setenv("TENANT_ID", "tenanta")
    emb = make_embeddings(load_settings(), bedrock_client=client)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="AccessDeniedException", http_status_code=403)
        with pytest.raises(ClientError, match="AccessDeniedException"):
            embed_in_batches(emb, ["a"], concurrency=1, max_backoff_seconds=0.01)
        stub.assert_no_pending_responses()


def test_query_embedding(monkeypatch, client) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    emb = make_embeddings(load_settings(), bedrock_client=client)
    with Stubber(client) as stub:
        stub.add_response("invoke_model", _response([3.0, 4.0] + [0.0] * 1022), expected_params=_expected("hi", None))
        vector = emb.embed_query("hi")
    assert vector[:2] == pytest.approx([0.6, 0.8])
