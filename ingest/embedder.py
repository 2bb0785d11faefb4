"""Embedding chunks in batches with bounded concurrency and retry with backoff on throttling.

Bedrock's embedding models take one text per ``InvokeModel`` call, so throughput comes from
concurrent calls; Bedrock answers ``ThrottlingException`` when the account's requests-per-minute
quota is exceeded (https://docs.aws.amazon.com/bedrock/latest/userguide/quotas.html). botocore's
standard retry mode already retries a few times inside each call; :func:`embed_in_batches` adds an
outer, longer exponential backoff (tenacity) per batch so a long ingestion survives a quota window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from langchain_core.embeddings import Embeddings
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

#: Error codes that mean "slow down or try again", never "your request is wrong".
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelTimeoutException",
    }
)


def is_retryable(error: BaseException) -> bool:
    """True for Bedrock throttling/unavailability and network timeouts."""
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") in RETRYABLE_CODES
    return isinstance(error, BotoConnectionError | ReadTimeoutError)


def embed_in_batches(
    embeddings: Embeddings,
    texts: list[str],
    *,
    batch_size: int = 32,
    concurrency: int = 4,
    max_attempts: int = 6,
    max_backoff_seconds: float = 30.0,
    on_batch_done: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed ``texts`` in order, ``batch_size`` per task, at most ``concurrency`` tasks in flight.

    Args:
        embeddings: any LangChain ``Embeddings`` (returns unit vectors when it is a
            :class:`rag.index.embeddings.NormalizedEmbeddings`).
        texts: the chunk texts.
        batch_size: texts per task.
        concurrency: worker threads (Bedrock: 4-16; the local model gains nothing above 1).
        max_attempts: tries per batch on retryable errors (exponential backoff with jitter,
            capped at ``max_backoff_seconds``).
        on_batch_done: called with the number of texts of each finished batch (progress bars).

    Returns:
        float32 array of shape ``(len(texts), dim)``.

    Raises:
        botocore.exceptions.ClientError: a non-retryable error, or retries exhausted. No partial
            result is returned.
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)

    @retry(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(max_attempts),
        wait=wait_random_exponential(multiplier=0.5, max=max_backoff_seconds),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def embed_batch(batch: list[str]) -> list[list[float]]:
        return embeddings.embed_documents(batch)

    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]

    def run(batch: list[str]) -> list[list[float]]:
        vectors = embed_batch(batch)
        if len(vectors) != len(batch):
            raise RuntimeError(f"embedding model returned {len(vectors)} vectors for {len(batch)} texts")
        if on_batch_done:
            on_batch_done(len(batch))
        return vectors

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="embed")
    try:
        futures = [pool.submit(run, batch) for batch in batches]
        results = [future.result() for future in futures]  # input order; the first error propagates
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on error, queued batches are dropped
    return np.asarray([v for batch in results for v in batch], dtype=np.float32)
