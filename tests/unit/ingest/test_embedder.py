"""Batched, concurrent embedding with retry (ingest.embedder)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from langchain_core.embeddings import Embeddings

from ingest.embedder import embed_in_batches, is_retryable


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "InvokeModel"
    )


class _Indexed(Embeddings):
    """Vector = [int(text), 1]; sleeps a bit, slower for early batches, to shuffle completion order."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.02 if int(texts[0]) < 10 else 0.001)
        with self.lock:
            self.active -= 1
        return [[float(t), 1.0] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return [float(text), 1.0]


def test_order_preserved_with_concurrency() -> None:
    emb = _Indexed()
    texts = [str(i) for i in range(50)]
    done: list[int] = []
    vectors = embed_in_batches(emb, texts, batch_size=3, concurrency=8, on_batch_done=done.append)
    assert vectors.dtype == np.float32
    assert vectors.shape == (50, 2)
    assert vectors[:, 0].tolist() == list(range(50))
    assert sum(done) == 50
    assert len(done) == 17
    assert emb.max_active > 1


def test_concurrency_is_bounded() -> None:
    emb = _Indexed()
    embed_in_batches(emb, [str(i) for i in range(40)], batch_size=1, concurrency=3)
    assert emb.max_active <= 3


def test_empty_input() -> None:
    assert embed_in_batches(_Indexed(), []).shape[0] == 0


class _Flaky(Embeddings):
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [[1.0, 0.0] for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return [1.0, 0.0]


def test_retry_on_throttling_then_success() -> None:
    emb = _Flaky([_client_error("ThrottlingException", 429), _client_error("ServiceUnavailableException", 503)])
    vectors = embed_in_batches(emb, ["a", "b"], batch_size=2, concurrency=1, max_backoff_seconds=0.01)
    assert vectors.shape == (2, 2)
    assert emb.calls == 3


def test_non_retryable_error_raised_without_retry() -> None:
    emb = _Flaky([_client_error("ValidationException")])
    with pytest.raises(ClientError, match="ValidationException"):
        embed_in_batches(emb, ["a"], concurrency=1, max_backoff_seconds=0.01)
    assert emb.calls == 1


def test_retries_exhausted_reraises_original_error() -> None:
    emb = _Flaky([_client_error("ThrottlingException", 429)] * 10)
    with pytest.raises(ClientError, match="ThrottlingException"):
        embed_in_batches(emb, ["a"], concurrency=1, max_attempts=3, max_backoff_seconds=0.01)
    assert emb.calls == 3


def test_other_exceptions_not_retried() -> None:
    emb = _Flaky([RuntimeError("boom")])
    with pytest.raises(RuntimeError, match="boom"):
        embed_in_batches(emb, ["a"], max_backoff_seconds=0.01)
    assert emb.calls == 1


def test_wrong_vector_count_is_an_error() -> None:
    class Short(Embeddings):
        def embed_documents(self, texts):
            return [[1.0]]

        def embed_query(self, text):
            return [1.0]

    with pytest.raises(RuntimeError, match="1 vectors for 2 texts"):
        embed_in_batches(Short(), ["a", "b"], batch_size=2)


def test_is_retryable() -> None:
    assert is_retryable(_client_error("ThrottlingException"))
    assert is_retryable(_client_error("ModelNotReadyException"))
    assert not is_retryable(_client_error("AccessDeniedException"))
    assert not is_retryable(_client_error("ValidationException"))
    assert is_retryable(ReadTimeoutError(endpoint_url="https://bedrock"))
    assert not is_retryable(ValueError("x"))
