"""HNSW index versions (FAISS_INDEX_TYPE=hnsw): written, verified, searched like flat ones."""

from __future__ import annotations

import hashlib
import json

import faiss
import numpy as np
import pytest
from langchain_core.documents import Document

from rag.answer.retrieval import TenantIndex
from rag.index.store import (
    HNSW_AUTO_MIN_CHUNKS,
    INDEX_FILE,
    MANIFEST_FILE,
    IndexIntegrityError,
    LocalBlobStore,
    build_faiss_index,
    load_index_version,
    resolve_index_type,
    write_index_version,
)

DIM = 64
_KEEP_ALIVE: list[faiss.Index] = []


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres (closer to text embeddings than uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM))
    x = (centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM))).astype(np.float32)
    faiss.normalize_L2(x)
    return x


def _publish(store: LocalBlobStore, vectors: np.ndarray, index_type: str) -> str:
    docs = [Document(f"chunk {i}", metadata={"id": f"c{i}"}) for i in range(len(vectors))]
    return write_index_version(
        store, tenant="tenanta", embedding_model="m", vectors=vectors, documents=docs, sources=[], index_type=index_type
    )


def test_hnsw_round_trip_records_the_type_and_keeps_the_vectors(tmp_path) -> None:
    store = LocalBlobStore(tmp_path)
    vectors = _clustered(300)
    version = _publish(store, vectors, "hnsw")
    manifest = json.loads((tmp_path / "v" / version / MANIFEST_FILE).read_bytes())
    assert manifest["index_type"] == "hnsw"
    loaded = load_index_version(store, tenant="tenanta", embedding_model="m")
    assert type(loaded.index) is faiss.IndexHNSWFlat and loaded.manifest.index_type == "hnsw"
    np.testing.assert_allclose(loaded.vectors(), vectors, atol=1e-6)  # incremental ingestion reuses them


def test_flat_manifests_stay_as_they_were(tmp_path) -> None:
    store = LocalBlobStore(tmp_path)
    version = _publish(store, _clustered(10), "flat")
    assert "index_type" not in json.loads((tmp_path / "v" / version / MANIFEST_FILE).read_bytes())


def test_hnsw_search_finds_what_the_exact_scan_finds_on_clustered_data(tmp_path) -> None:
    vectors = _clustered(2000)
    flat_store, hnsw_store = LocalBlobStore(tmp_path / "flat"), LocalBlobStore(tmp_path / "hnsw")
    _publish(flat_store, vectors, "flat")
    _publish(hnsw_store, vectors, "hnsw")
    flat = TenantIndex(load_index_version(flat_store, tenant="tenanta", embedding_model="m"))
    hnsw = TenantIndex(load_index_version(hnsw_store, tenant="tenanta", embedding_model="m"), ef_search=128)
    queries = _clustered(50, seed=1)
    hits = [
        len({p for p, _ in flat.dense_search(q, 10)} & {p for p, _ in hnsw.dense_search(q, 10)}) / 10 for q in queries
    ]
    assert np.mean(hits) >= 0.95
    # scores are the same cosines
    p, score = hnsw.dense_search(queries[0], 1)[0]
    assert score == pytest.approx(float(vectors[p] @ queries[0]), abs=1e-5)


def test_ef_search_is_raised_to_k(tmp_path) -> None:
    store = LocalBlobStore(tmp_path)
    _publish(store, _clustered(500), "hnsw")
    index = TenantIndex(load_index_version(store, tenant="tenanta", embedding_model="m"), ef_search=8)
    assert len(index.dense_search(_clustered(1, seed=3)[0], 40)) == 40  # efSearch 8 alone would cap it


def _rewrite_index(tmp_path, version: str, index: faiss.Index, manifest_update: dict | None = None) -> None:
    base = tmp_path / "v" / version
    data = faiss.serialize_index(index).tobytes()
    (base / INDEX_FILE).write_bytes(data)
    manifest = json.loads((base / MANIFEST_FILE).read_bytes())
    manifest["files"][INDEX_FILE] = hashlib.sha256(data).hexdigest()
    manifest.update(manifest_update or {})
    (base / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("make", "manifest_update"),
    [
        (lambda v: build_faiss_index(v, "hnsw"), {}),  # manifest says flat, file is HNSW
        (lambda v: build_faiss_index(v, "flat"), {"index_type": "hnsw"}),  # and the other way round
        (lambda v: _l2_hnsw(v), {"index_type": "hnsw"}),  # HNSW, but Euclidean distance
        (lambda v: _hnsw_over_l2_storage(v), {"index_type": "hnsw"}),  # inner product outside, L2 inside
    ],
)
def test_index_file_must_match_the_manifest_type_and_metric(tmp_path, make, manifest_update) -> None:
    store = LocalBlobStore(tmp_path)
    vectors = _clustered(30)
    version = _publish(store, vectors, "flat")
    _rewrite_index(tmp_path, version, make(vectors), manifest_update)
    with pytest.raises(IndexIntegrityError, match="does not match its manifest"):
        load_index_version(store, tenant="tenanta", embedding_model="m")


def _l2_hnsw(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexHNSWFlat(DIM, 16)
    index.add(vectors)
    return index


def _hnsw_over_l2_storage(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    storage = faiss.IndexFlatL2(DIM)
    _KEEP_ALIVE.append(storage)  # the index does not own it
    index.storage = storage  # scores would be squared distances, not cosines
    index.add(vectors)
    assert type(faiss.deserialize_index(faiss.serialize_index(index))) is faiss.IndexHNSWFlat
    return index


def test_unknown_index_type_refused(tmp_path) -> None:
    store = LocalBlobStore(tmp_path)
    version = _publish(store, _clustered(5), "flat")
    base = tmp_path / "v" / version
    manifest = json.loads((base / MANIFEST_FILE).read_bytes())
    manifest["index_type"] = "ivfpq"
    (base / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexIntegrityError, match="index_type"):
        load_index_version(store, tenant="tenanta", embedding_model="m")
    with pytest.raises(ValueError, match="unknown index type"):
        build_faiss_index(_clustered(3), "ivfpq")


def test_auto_picks_hnsw_only_for_large_indexes() -> None:
    assert resolve_index_type("auto", HNSW_AUTO_MIN_CHUNKS - 1) == "flat"
    assert resolve_index_type("auto", HNSW_AUTO_MIN_CHUNKS) == "hnsw"
    assert resolve_index_type("flat", 10**6) == "flat" and resolve_index_type("hnsw", 3) == "hnsw"
    with pytest.raises(ValueError, match="unknown index type"):
        resolve_index_type("ivf", 10)
