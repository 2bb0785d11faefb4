"""The float16 serving copy of a flat index (rag.answer.retrieval.half_precision_flat, FLAT_SEARCH_PRECISION)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from langchain_core.documents import Document

from api.state import release_free_heap
from rag.answer.readers import FaissIndexReader
from rag.answer.retrieval import TenantIndex, half_precision_flat
from rag.index.store import LocalBlobStore, SourceRecord, load_index_version, write_index_version
from rag.settings import SettingsError, load_settings

DIM = 256


def _unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _flat(vectors: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    return index


def test_the_float16_copy_ranks_like_the_exact_scan_with_scores_within_1e_3() -> None:
    vectors, queries = _unit(2000, 1), _unit(50, 2)
    exact = _flat(vectors)
    half = half_precision_flat(exact)
    assert isinstance(half, faiss.IndexScalarQuantizer) and half.ntotal == 2000 and half.d == DIM
    exact_scores, exact_ids = exact.search(queries, 10)
    half_scores, half_ids = half.search(queries, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, half_ids, strict=True)])
    assert overlap >= 0.99
    assert np.abs(np.sort(exact_scores, axis=1) - np.sort(half_scores, axis=1)).max() < 1e-3
    # the vectors themselves: the same rows in the same order, rounded to half precision
    np.testing.assert_allclose(half.reconstruct_n(0, 2000), vectors, atol=1e-3)


def test_only_an_exact_flat_index_is_converted() -> None:
    hnsw = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(_unit(100, 3))
    assert half_precision_flat(hnsw) is hnsw
    empty = half_precision_flat(faiss.IndexFlatIP(DIM))
    assert isinstance(empty, faiss.IndexScalarQuantizer) and empty.ntotal == 0


def _written(tmp_path) -> tuple[LocalBlobStore, np.ndarray]:
    store = LocalBlobStore(tmp_path)
    vectors = _unit(300, 4)
    documents = [Document(f"chunk {i}", metadata={"id": f"c{i}", "source": "s3://b/a.txt"}) for i in range(300)]
    sources = [SourceRecord(uri="s3://b/a.txt", etag_or_sha256="sha256:abc", chunks=300)]
    write_index_version(
        store, tenant="tenanta", embedding_model="fake", vectors=vectors, documents=documents, sources=sources
    )
    return store, vectors


@pytest.mark.parametrize(
    ("precision", "kind"), [("float16", faiss.IndexScalarQuantizer), ("float32", faiss.IndexFlatIP)]
)
def test_the_reader_serves_the_precision_asked_and_leaves_the_stored_vectors_alone(tmp_path, precision, kind) -> None:
    store, vectors = _written(tmp_path)
    reader = FaissIndexReader(store, tenant="tenanta", embedding_model="fake", flat_precision=precision)
    served = reader.load(reader.latest_version_id())
    assert isinstance(served, TenantIndex) and type(served.version.index) is kind
    top = served.dense_search(vectors[7], 3)
    assert top[0][0] == 7 and top[0][1] == pytest.approx(1.0, abs=1e-3)
    # what incremental ingestion reads back is the file's float32, exactly
    stored = load_index_version(store, tenant="tenanta", embedding_model="fake")
    assert type(stored.index) is faiss.IndexFlatIP
    np.testing.assert_allclose(stored.vectors(), vectors, atol=1e-6)  # float32 (half floats would be ~1e-3 off)


def test_flat_search_precision_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    assert load_settings().flat_search_precision == "float16"
    monkeypatch.setenv("FLAT_SEARCH_PRECISION", "float8")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith("FLAT_SEARCH_PRECISION: Input should be 'float16' or 'float32'")


def test_free_heap_is_given_back_where_glibc_is_the_c_library() -> None:
    import platform

    assert release_free_heap() is (platform.libc_ver()[0] == "glibc")
