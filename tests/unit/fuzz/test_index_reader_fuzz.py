"""The index reader on random or damaged files: only ``IndexNotFoundError``/``IndexIntegrityError``.

A reader that raises anything else (or crashes) turns one broken upload into a failed ingestion
job (incremental re-ingestion reads the previous version) instead of a clear, logged refusal. The
damaged files carry *matching* sha256 sums in the manifest where noted, so the parser behind the
checksum check is reached too (a writer that produced garbage, not a flipped bit in transit).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document

from rag.index.store import (
    DOCSTORE_FILE,
    INDEX_FILE,
    LATEST,
    MANIFEST_FILE,
    IndexIntegrityError,
    IndexManifest,
    IndexNotFoundError,
    load_index_version,
    open_store,
    write_index_version,
)

TENANT = "tenanta"
MODEL = "fake-embedding-4"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ALLOWED = (IndexNotFoundError, IndexIntegrityError)
#: A FAISS header whose vector-size field claims ~141 GB: ``faiss.deserialize_index`` raises
#: ``MemoryError`` (std::bad_alloc), found by mutating a valid 4-vector index (regression test:
#: this, ``1e400`` numbers and deep nesting escaped as non-index errors before the fix).
FAISS_BAD_ALLOC = bytes.fromhex(
    "4978464904000000040000000000000000001000000000000000100000000000010000000010000000210000000000803f"
    "000000000000000000000000000000000000803f000000000000000000000000000000000000803f00000000000000000000"
    "0000000000000000803f"
)


@pytest.fixture
def published(tmp_path):
    """A valid 4-vector index; returns (store, version)."""
    store = open_store(str(tmp_path / "index"))
    docs = [Document(f"text {i}", metadata={"id": f"d{i}", "source": "s.txt"}) for i in range(4)]
    version = write_index_version(
        store, tenant=TENANT, embedding_model=MODEL, vectors=np.eye(4, dtype=np.float32), documents=docs, sources=[]
    )
    return store, version


def _rewrite(store, version: str, name: str, data: bytes, *, fix_checksum: bool) -> None:
    base = f"v/{version}/"
    store.write(base + name, data)
    if fix_checksum and name != MANIFEST_FILE:
        manifest = json.loads(store.read(base + MANIFEST_FILE))
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
        store.write(base + MANIFEST_FILE, json.dumps(manifest).encode())


def _load(store) -> None:
    try:
        load_index_version(store, tenant=TENANT, embedding_model=MODEL)
    except ALLOWED:
        return
    # loading garbage successfully is only acceptable when it is a consistent, valid index
    # (hypothesis cannot produce one from random bytes in practice)


@FUZZ
@given(data=st.binary(max_size=300), fix_checksum=st.booleans())
@example(data=b"", fix_checksum=True)
@example(data=b"IxFI", fix_checksum=True)
def test_random_index_faiss(published, data: bytes, fix_checksum: bool) -> None:
    store, version = published
    _rewrite(store, version, INDEX_FILE, data, fix_checksum=fix_checksum)
    _load(store)


def test_faiss_header_claiming_huge_size_is_an_integrity_error(published) -> None:
    store, version = published
    _rewrite(store, version, INDEX_FILE, FAISS_BAD_ALLOC, fix_checksum=True)
    with pytest.raises(IndexIntegrityError):
        load_index_version(store, tenant=TENANT, embedding_model=MODEL)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_LINES = st.lists(
    st.one_of(
        st.binary(max_size=60),
        _JSONISH.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"id": _JSONISH, "text": _JSONISH, "metadata": _JSONISH}).map(
            lambda v: json.dumps(v).encode()
        ),
    ),
    max_size=6,
).map(lambda lines: b"\n".join(lines))


@FUZZ
@given(data=_LINES | st.binary(max_size=300), fix_checksum=st.booleans())
@example(data=b"\xff\xfe", fix_checksum=True)
@example(data=b'{"id": "d0", "text": "t", "metadata": {"a": [1]}}', fix_checksum=True)
def test_random_docstore(published, data: bytes, fix_checksum: bool) -> None:
    store, version = published
    _rewrite(store, version, DOCSTORE_FILE, data, fix_checksum=fix_checksum)
    _load(store)


_MANIFESTS = st.fixed_dictionaries(
    {
        "format": st.sampled_from([1, 1, 2, "1", None]),
        "tenant": st.sampled_from([TENANT, "tenantb", "", 7]),
        "embedding_model": st.sampled_from([MODEL, "other"]),
        "dim": _JSONISH,
        "count": _JSONISH,
        "created_at": _JSONISH,
        "sources": _JSONISH,
        "files": _JSONISH,
    }
).map(lambda v: json.dumps(v).encode())


@FUZZ
@given(data=_MANIFESTS | st.binary(max_size=300))
@example(data=b"null")
@example(data=b"[]")
@example(data=b'{"format": 1}')
def test_random_manifest(published, data: bytes) -> None:
    store, version = published
    _rewrite(store, version, MANIFEST_FILE, data, fix_checksum=False)
    _load(store)


@FUZZ
@given(data=st.binary(max_size=80) | st.text(max_size=60).map(str.encode))
@example(data=b"../../etc/passwd")
@example(data=b"20261125T120000Z-1a2b3c4d")  # well-formed id of a version that does not exist
def test_random_latest(published, data: bytes) -> None:
    store, _ = published
    store.write(LATEST, data)
    _load(store)


_BASE = {
    "format": 1,
    "tenant": TENANT,
    "embedding_model": MODEL,
    "dim": 4,
    "count": 4,
    "created_at": "x",
    "sources": [],
    "files": {INDEX_FILE: "0" * 64, DOCSTORE_FILE: "0" * 64},
}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(json.dumps(_BASE).replace('"dim": 4', '"dim": 1e400').encode(), id="dim-overflows-to-inf"),
        pytest.param(
            json.dumps({**_BASE, "sources": [{"uri": "u", "etag_or_sha256": "e", "chunks": 1e400}]})
            .replace("Infinity", "1e400")
            .encode(),
            id="chunks-overflows-to-inf",
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
    ],
)
def test_manifest_numeric_overflow_and_deep_nesting_are_integrity_errors(data: bytes) -> None:
    with pytest.raises(IndexIntegrityError):
        IndexManifest.from_json(data)


def test_docstore_deeply_nested_line_is_an_integrity_error(published) -> None:
    store, version = published
    _rewrite(store, version, DOCSTORE_FILE, b"[" * 100_000 + b"]" * 100_000, fix_checksum=True)
    with pytest.raises(IndexIntegrityError):
        load_index_version(store, tenant=TENANT, embedding_model=MODEL)
