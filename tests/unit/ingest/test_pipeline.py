"""The ingestion pipeline (ingest.pipeline.run_ingestion) with fake embeddings and local stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.pipeline import NothingIngestedError, run_ingestion
from ingest.sources import LocalSource, open_source
from rag.index.store import LATEST, LocalBlobStore, list_versions, load_index_version, read_latest_version_id
from tests.unit.ingest.conftest import FAKE_MODEL, CountingEmbeddings, write_tree

FAQ = "What is A?,A is a thing.\nHow do I use B?,Call b().\nWhat about C?,C is fine.\n"


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "docs",
        {
            "faq.csv": FAQ,
            "guide.md": "# Guide\n\nInstall it, then run it.\n",
            "notes/extra.txt": "Extra notes about clusters.\n",
            "image.png": b"\x89PNG",
            "broken.csv": b"\xff\xfe\x00bad",
            ".hidden/secret.txt": "do not ingest",
        },
    )


def _run(docs_dir: Path, store: LocalBlobStore, emb: CountingEmbeddings, **kwargs):
    return run_ingestion(
        tenant="tenanta",
        source=LocalSource(docs_dir),
        store=store,
        embeddings=emb,
        embedding_model=FAKE_MODEL,
        progress=False,
        **kwargs,
    )


def _load(store: LocalBlobStore):
    return load_index_version(store, tenant="tenanta", embedding_model=FAKE_MODEL)


def test_first_run_publishes(tmp_path: Path, docs_dir: Path, fake_embeddings: CountingEmbeddings) -> None:
    store = LocalBlobStore(tmp_path / "index")
    summary = _run(docs_dir, store, fake_embeddings, concurrency=2, batch_size=2)
    assert summary.sources == 3
    assert summary.documents == 5
    assert summary.chunks == 5
    assert summary.embedded_chunks == 5
    assert summary.reused_chunks == 0
    assert summary.version == read_latest_version_id(store)
    skipped = dict(summary.skipped)
    assert set(skipped) == {str(docs_dir / "image.png"), str(docs_dir / "broken.csv")}
    assert skipped[str(docs_dir / "image.png")] == "unsupported file type"
    assert "UTF-8" in skipped[str(docs_dir / "broken.csv")]
    rendered = summary.render()
    assert "skipped files     2" in rendered
    assert "broken.csv" in rendered
    loaded = _load(store)
    assert loaded.manifest.count == 5
    assert {s.uri for s in loaded.manifest.sources} == {
        str(docs_dir / "faq.csv"), str(docs_dir / "guide.md"), str(docs_dir / "notes/extra.txt"),
    }  # fmt: skip
    assert all(s.etag_or_sha256.startswith("sha256:") for s in loaded.manifest.sources)
    rows = [d.metadata.get("row") for d in loaded.documents if d.metadata["source"].endswith("faq.csv")]
    assert rows == [0, 1, 2]
    assert not any("secret" in d.page_content for d in loaded.documents)


def test_dry_run_writes_nothing(tmp_path: Path, docs_dir: Path, fake_embeddings: CountingEmbeddings) -> None:
    store = LocalBlobStore(tmp_path / "index")
    summary = _run(docs_dir, store, fake_embeddings, dry_run=True)
    assert summary.dry_run
    assert summary.chunks == 5
    assert summary.version is None
    assert fake_embeddings.calls == 0
    assert not (tmp_path / "index").exists()
    assert "dry run" in summary.render()


def test_all_broken_source_raises_and_latest_unchanged(tmp_path: Path, docs_dir: Path, fake_embeddings) -> None:
    store = LocalBlobStore(tmp_path / "index")
    version = _run(docs_dir, store, fake_embeddings).version
    broken = write_tree(tmp_path / "broken", {"a.csv": b"", "b.pdf": b"nope", "c.txt": b"\xff\xff", "d.bin": b"x"})
    with pytest.raises(NothingIngestedError, match="no valid document") as info:
        run_ingestion(tenant="tenanta", source=LocalSource(broken), store=store, embeddings=fake_embeddings,
                      embedding_model=FAKE_MODEL, progress=False)  # fmt: skip
    assert "skipped files     4" in str(info.value)
    assert read_latest_version_id(store) == version
    assert list_versions(store) == [version]


def test_empty_directory_raises(tmp_path: Path, fake_embeddings) -> None:
    store = LocalBlobStore(tmp_path / "index")
    with pytest.raises(NothingIngestedError):
        _run(write_tree(tmp_path / "empty", {}), store, fake_embeddings)
    assert not store.exists(LATEST)


def test_failure_midway_keeps_old_version(tmp_path: Path, docs_dir: Path, fake_embeddings) -> None:
    store = LocalBlobStore(tmp_path / "index")
    old = _run(docs_dir, store, fake_embeddings).version
    (docs_dir / "guide.md").write_text("# Guide v2\n\nChanged text.\n")
    (docs_dir / "new.txt").write_text("Brand new file.\n")
    failing = CountingEmbeddings(fail_after_calls=1)
    with pytest.raises(RuntimeError, match="exploded"):
        _run(docs_dir, store, failing, batch_size=1, concurrency=1)
    assert read_latest_version_id(store) == old
    loaded = _load(store)
    assert loaded.version == old
    assert "Install it" in " ".join(d.page_content for d in loaded.documents)
    assert list_versions(store) == [old]  # nothing half-written either: the failure was before the upload


def test_failure_on_first_run_publishes_nothing(tmp_path: Path, docs_dir: Path) -> None:
    store = LocalBlobStore(tmp_path / "index")
    with pytest.raises(RuntimeError):
        _run(docs_dir, store, CountingEmbeddings(fail_after_calls=0))
    assert not store.exists(LATEST)


def test_incremental_runs(tmp_path: Path, docs_dir: Path, fake_embeddings: CountingEmbeddings) -> None:
    store = LocalBlobStore(tmp_path / "index")
    first = _run(docs_dir, store, fake_embeddings)
    first_vectors = {d.metadata["id"]: v for d, v in zip(_load(store).documents, _load(store).vectors(), strict=True)}

    # 1. unchanged: nothing embedded, version unchanged
    again = CountingEmbeddings()
    summary = _run(docs_dir, store, again)
    assert summary.embedded_chunks == 0
    assert summary.reused_chunks == 5
    assert summary.unchanged
    assert summary.version == first.version
    assert again.calls == 0
    assert read_latest_version_id(store) == first.version

    # 2. one file changed: only its chunks embedded
    (docs_dir / "guide.md").write_text("# Guide\n\nInstall it, then run it twice.\n")
    changed = CountingEmbeddings()
    summary = _run(docs_dir, store, changed)
    assert summary.embedded_chunks == 1
    assert summary.reused_chunks == 4
    assert changed.texts == ["# Guide\n\nInstall it, then run it twice."]
    assert summary.version != first.version
    loaded = _load(store)
    assert loaded.version == summary.version
    assert loaded.manifest.count == 5
    for doc, vector in zip(loaded.documents, loaded.vectors(), strict=True):  # reused vectors are the same
        if not doc.metadata["source"].endswith("guide.md"):
            assert (first_vectors[doc.metadata["id"]] == vector).all()
    ids = [d.metadata["id"] for d in loaded.documents]
    assert len(set(ids)) == len(ids)

    # 3. a file removed: its chunks gone
    (docs_dir / "faq.csv").unlink()
    removed = CountingEmbeddings()
    summary = _run(docs_dir, store, removed)
    assert summary.embedded_chunks == 0
    assert summary.removed_sources == [str(docs_dir / "faq.csv")]
    loaded = _load(store)
    assert loaded.manifest.count == 2
    assert not any(d.metadata["source"].endswith("faq.csv") for d in loaded.documents)
    assert str(docs_dir / "faq.csv") not in {s.uri for s in loaded.manifest.sources}
    assert "removed sources   1" in summary.render()


def test_previous_index_with_other_model_is_rebuilt(tmp_path: Path, docs_dir: Path) -> None:
    store = LocalBlobStore(tmp_path / "index")
    _run(docs_dir, store, CountingEmbeddings())
    other = CountingEmbeddings()
    summary = run_ingestion(tenant="tenanta", source=LocalSource(docs_dir), store=store, embeddings=other,
                            embedding_model="other-model", progress=False)  # fmt: skip
    assert summary.embedded_chunks == 5
    assert load_index_version(store, tenant="tenanta", embedding_model="other-model").manifest.count == 5


def test_old_versions_pruned(tmp_path: Path, docs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools
    from datetime import UTC, datetime, timedelta

    import rag.index.store

    clock = itertools.count()
    real = rag.index.store.new_version_id
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # one version per simulated minute (ids made within one second do not sort: see test_index_store)
    monkeypatch.setattr(rag.index.store, "new_version_id", lambda: real(start + timedelta(minutes=next(clock))))
    store = LocalBlobStore(tmp_path / "index")
    versions = []
    for i in range(4):
        (docs_dir / "guide.md").write_text(f"# Guide\n\nrevision {i}\n")
        versions.append(_run(docs_dir, store, CountingEmbeddings(), keep_versions=2).version)
    assert list_versions(store) == sorted(versions)[-2:]
    assert read_latest_version_id(store) == versions[-1]


def test_invalid_tenant_refused_before_reading(tmp_path: Path, docs_dir: Path, fake_embeddings) -> None:
    from rag.tenant import InvalidTenantIdError

    with pytest.raises(InvalidTenantIdError):
        run_ingestion(tenant="../x", source=LocalSource(docs_dir), store=LocalBlobStore(tmp_path / "i"),
                      embeddings=fake_embeddings, embedding_model=FAKE_MODEL, progress=False)  # fmt: skip
    assert not (tmp_path / "i").exists()


def test_local_source(tmp_path: Path, docs_dir: Path) -> None:
    source = open_source(str(docs_dir))
    uris = [f.uri for f in source.list()]
    assert uris == sorted(uris)
    assert not any(".hidden" in u for u in uris)
    with pytest.raises(FileNotFoundError):
        LocalSource(tmp_path / "missing")
    with pytest.raises(ValueError, match="S3 client"):
        open_source("s3://bucket/documents/")
    with pytest.raises(ValueError, match="unsupported"):
        open_source("ftp://x/y")
    shutil.rmtree(docs_dir)


def test_a_new_index_type_rebuilds_the_index_without_embedding_again(
    tmp_path: Path, docs_dir: Path, fake_embeddings: CountingEmbeddings
) -> None:
    store = LocalBlobStore(tmp_path / "index")
    first = _run(docs_dir, store, fake_embeddings)
    assert _load(store).manifest.index_type == "flat"  # auto: small

    again = CountingEmbeddings()
    summary = _run(docs_dir, store, again, index_type="hnsw", hnsw_m=16)
    loaded = _load(store)
    assert not summary.unchanged and summary.version != first.version and again.calls == 0
    assert loaded.manifest.index_type == "hnsw" and loaded.manifest.index_params == {"m": 16, "ef_construction": 80}

    other_params = _run(docs_dir, store, again, index_type="hnsw", hnsw_m=24)  # parameters count too
    assert not other_params.unchanged and _load(store).manifest.index_params["m"] == 24
    assert _run(docs_dir, store, again, index_type="hnsw", hnsw_m=24).unchanged
    assert again.calls == 0


def test_unknown_index_type_fails_before_embedding(tmp_path: Path, docs_dir: Path) -> None:
    emb = CountingEmbeddings()
    with pytest.raises(ValueError, match="unknown index type"):
        _run(docs_dir, LocalBlobStore(tmp_path / "index"), emb, index_type="ivf")
    assert emb.calls == 0
