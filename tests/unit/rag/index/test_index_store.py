"""The index format (rag.index.store): round trip, integrity checks, no pickle."""

from __future__ import annotations

import json
import pickletools
from datetime import UTC, datetime

import numpy as np
import pytest
from langchain_core.documents import Document

from rag.answer.retrieval import TenantIndex, TenantRetriever
from rag.index.store import (
    DOCSTORE_FILE,
    INDEX_FILE,
    LATEST,
    MANIFEST_FILE,
    VERSION_RE,
    IndexIntegrityError,
    IndexManifest,
    IndexNotFoundError,
    LocalBlobStore,
    S3BlobStore,
    list_versions,
    load_index_version,
    new_version_id,
    open_store,
    parse_s3_uri,
    read_latest_version_id,
    write_index_version,
)
from tests.unit.rag.conftest import FAKE_DIM, FAKE_MODEL, make_docs


def test_round_trip(written_index, fake_embeddings) -> None:
    store, version, docs, vectors = written_index
    assert read_latest_version_id(store) == version
    loaded = load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)
    assert loaded.version == version
    assert loaded.manifest.tenant == "tenanta"
    assert loaded.manifest.embedding_model == FAKE_MODEL
    assert loaded.manifest.dim == FAKE_DIM
    assert loaded.manifest.count == len(docs)
    assert [s.uri for s in loaded.manifest.sources] == ["/docs/faq.csv"]
    assert [d.page_content for d in loaded.documents] == [d.page_content for d in docs]
    assert [d.metadata for d in loaded.documents] == [d.metadata for d in docs]
    assert [d.id for d in loaded.documents] == [d.metadata["id"] for d in docs]
    np.testing.assert_allclose(loaded.vectors(), vectors, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(loaded.vectors(), axis=1), 1.0, atol=1e-5)

    # same search results before and after the round trip
    query = fake_embeddings.embed_query(docs[3].page_content)
    direct = np.argsort(-(vectors @ np.asarray(query)))[:3].tolist()
    retriever = TenantRetriever(index=TenantIndex(loaded), embeddings=fake_embeddings, mode="dense", k=3)
    found = retriever.invoke(docs[3].page_content)
    assert [d.metadata["row"] for d in found] == direct
    assert found[0].metadata["row"] == 3
    assert found[0].metadata["dense_score"] == pytest.approx(1.0, abs=1e-5)


def test_explicit_version_and_layout(written_index) -> None:
    store, version, _, _ = written_index
    assert VERSION_RE.fullmatch(version)
    assert sorted(store.list("")) == sorted(
        [LATEST, f"v/{version}/{INDEX_FILE}", f"v/{version}/{DOCSTORE_FILE}", f"v/{version}/{MANIFEST_FILE}"]
    )
    assert load_index_version(store, version, tenant="tenanta", embedding_model=FAKE_MODEL).version == version
    manifest = json.loads(store.read(f"v/{version}/{MANIFEST_FILE}"))
    assert set(manifest) == {"format", "tenant", "embedding_model", "dim", "count", "created_at", "sources", "files"}
    assert manifest["format"] == 1
    assert manifest["sources"] == [{"uri": "/docs/faq.csv", "etag_or_sha256": "sha256:abc", "chunks": 6}]
    lines = store.read(f"v/{version}/{DOCSTORE_FILE}").decode().splitlines()
    assert [set(json.loads(line)) for line in lines] == [{"id", "text", "metadata"}] * 6
    assert "id" not in json.loads(lines[0])["metadata"]


def test_no_pickle_in_written_files(written_index) -> None:
    store, _, _, _ = written_index
    for key in store.list(""):
        data = store.read(key)
        assert not data.startswith(b"\x80"), f"{key} looks like a pickle"
        with pytest.raises(Exception):  # noqa: B017 - any parse error means "not a pickle stream"
            list(pickletools.genops(data))
        assert not any(p.suffix in (".pkl", ".pickle") for p in store.root.rglob("*"))


@pytest.mark.parametrize("name", [INDEX_FILE, DOCSTORE_FILE])
def test_tampered_file_refused(written_index, name: str) -> None:
    store, version, _, _ = written_index
    path = store.root / "v" / version / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match="sha256"):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_tampered_docstore_with_recomputed_sum_still_checked(written_index) -> None:
    """Someone who rewrites the manifest too: the docstore must still parse and match the count."""
    import hashlib

    store, version, _, _ = written_index
    base = store.root / "v" / version
    docstore = b'{"id": "x", "text": "t", "metadata": {}}\n'
    (base / DOCSTORE_FILE).write_bytes(docstore)
    manifest = json.loads((base / MANIFEST_FILE).read_bytes())
    manifest["files"][DOCSTORE_FILE] = hashlib.sha256(docstore).hexdigest()
    (base / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexIntegrityError, match="entries"):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_wrong_embedding_model_refused(written_index) -> None:
    store, _, _, _ = written_index
    with pytest.raises(IndexIntegrityError, match="built with 'fake-model'"):
        load_index_version(store, tenant="tenanta", embedding_model="amazon.titan-embed-text-v2:0")


def test_wrong_tenant_refused(written_index) -> None:
    store, _, _, _ = written_index
    with pytest.raises(IndexIntegrityError, match="belongs to tenant 'tenanta'"):
        load_index_version(store, tenant="tenantb", embedding_model=FAKE_MODEL)


def test_invalid_tenant_refused_before_reading(written_index) -> None:
    from rag.tenant import InvalidTenantIdError

    store, _, _, _ = written_index
    with pytest.raises(InvalidTenantIdError):
        load_index_version(store, tenant="../tenanta", embedding_model=FAKE_MODEL)


@pytest.mark.parametrize("garbage", [b"", b"../../etc/passwd", b"garbage", b"\xff\xfe\x00", b"20261125T120000Z"])
def test_latest_with_garbage_refused(written_index, garbage: bytes) -> None:
    store, _, _, _ = written_index
    store.write(LATEST, garbage)
    with pytest.raises(IndexIntegrityError, match="LATEST"):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_latest_with_trailing_newline_accepted(written_index) -> None:
    store, version, _, _ = written_index
    store.write(LATEST, (version + "\n").encode())
    assert load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL).version == version


def test_nothing_published(tmp_path) -> None:
    with pytest.raises(IndexNotFoundError, match="LATEST"):
        load_index_version(LocalBlobStore(tmp_path / "empty"), tenant="tenanta", embedding_model=FAKE_MODEL)


def test_version_without_manifest_is_incomplete(written_index) -> None:
    store, version, _, _ = written_index
    (store.root / "v" / version / MANIFEST_FILE).unlink()
    with pytest.raises(IndexNotFoundError, match="incomplete"):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_latest_pointing_to_missing_version(written_index) -> None:
    store, _, _, _ = written_index
    store.write(LATEST, new_version_id().encode())
    with pytest.raises(IndexNotFoundError):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_missing_index_file_refused(written_index) -> None:
    store, version, _, _ = written_index
    (store.root / "v" / version / INDEX_FILE).unlink()
    with pytest.raises(IndexIntegrityError, match="incomplete"):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


@pytest.mark.parametrize(
    "manifest",
    [b"not json", b"[]", b'{"format": 2}', b'{"format": 1}', b'{"format": 1, "tenant": "x"}'],
)
def test_malformed_manifest_refused(written_index, manifest: bytes) -> None:
    store, version, _, _ = written_index
    store.write(f"v/{version}/{MANIFEST_FILE}", manifest)
    with pytest.raises(IndexIntegrityError):
        load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_manifest_json_round_trip(written_index) -> None:
    store, version, _, _ = written_index
    raw = store.read(f"v/{version}/{MANIFEST_FILE}")
    assert IndexManifest.from_json(raw).to_json() == raw


def test_write_rejects_inconsistent_input(tmp_path, fake_embeddings) -> None:
    store = LocalBlobStore(tmp_path)
    docs = make_docs(["a", "b"])
    vectors = np.asarray(fake_embeddings.embed_documents(["a", "b"]))
    with pytest.raises(ValueError, match="vectors but"):
        write_index_version(
            store, tenant="tenanta", embedding_model=FAKE_MODEL, vectors=vectors[:1], documents=docs, sources=[]
        )
    dup = [Document(page_content=d.page_content, metadata={**d.metadata, "id": "same"}) for d in docs]
    with pytest.raises(ValueError, match="unique"):
        write_index_version(
            store, tenant="tenanta", embedding_model=FAKE_MODEL, vectors=vectors, documents=dup, sources=[]
        )
    with pytest.raises(ValueError):
        write_index_version(
            store, tenant="../x", embedding_model=FAKE_MODEL, vectors=vectors, documents=docs, sources=[]
        )
    assert store.list("") == []


def test_unpublished_version_does_not_move_latest(written_index, fake_embeddings) -> None:
    store, version, docs, vectors = written_index
    other = write_index_version(
        store, tenant="tenanta", embedding_model=FAKE_MODEL, vectors=vectors, documents=docs, sources=[], publish=False
    )
    assert other != version
    assert read_latest_version_id(store) == version
    assert list_versions(store) == sorted([version, other])


def test_new_version_ids_sort_by_time() -> None:
    early = new_version_id(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_version_id(datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC))
    assert early < late
    assert late.startswith("20261125T120000000000Z-")
    assert VERSION_RE.fullmatch(late)


def test_version_ids_made_in_one_second_sort_in_creation_order() -> None:
    """BUG (reported): the id has 1-second resolution plus a random suffix, so versions written
    within one second sort randomly; ``list_versions`` ("oldest first") and pruning then disagree
    with the real order (pruning can delete a newer version and keep an older one)."""
    import time

    ids = []
    for _ in range(20):
        ids.append(new_version_id())
        time.sleep(0.002)
    assert ids == sorted(ids)


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a//b", "a/./b", ""])
def test_unsafe_keys_refused(tmp_path, key: str) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ValueError, match="unsafe"):
        store.write(key, b"x")


def test_parse_s3_uri_and_open_store(tmp_path) -> None:
    assert parse_s3_uri("s3://bucket-a/faiss_index/") == ("bucket-a", "faiss_index/")
    assert parse_s3_uri("s3://bucket-a") == ("bucket-a", "")
    for bad in ["http://x/y", "s3://", "s3://B/x"]:
        with pytest.raises(ValueError):
            parse_s3_uri(bad)
    with pytest.raises(ValueError, match="S3 client"):
        open_store("s3://bucket-a/x/")
    with pytest.raises(ValueError, match="unsupported"):
        open_store("gs://bucket/x")
    assert isinstance(open_store(str(tmp_path)), LocalBlobStore)
    store = open_store("s3://bucket-a/faiss_index", s3_client=object())
    assert isinstance(store, S3BlobStore)
    assert store.uri == "s3://bucket-a/faiss_index/"
