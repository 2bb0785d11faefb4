"""Ingestion from an S3 source prefix to an S3 index prefix, against a real moto server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from ingest.pipeline import run_ingestion
from ingest.sources import S3Source
from rag.index.embeddings import NormalizedEmbeddings
from rag.index.store import LATEST, S3BlobStore, list_versions, load_index_version, read_latest_version_id
from tests.conftest import REPO_ROOT

BUCKET = "tenanta-data"
MODEL = "fake-model"


class Counting(NormalizedEmbeddings):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(DeterministicFakeEmbedding(size=16), MODEL, 16)
        self.count = 0
        self.fail = fail

    def embed_documents(self, texts):
        if self.fail:
            raise RuntimeError("embedding failed midway")
        self.count += len(texts)
        return super().embed_documents(texts)


class RecordingStore(S3BlobStore):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.writes: list[str] = []

    def write(self, key: str, data: bytes) -> None:
        self.writes.append(key)
        super().write(key, data)


@pytest.fixture
def bucket(s3_client):
    s3_client.create_bucket(Bucket=BUCKET)
    put = lambda key, body: s3_client.put_object(Bucket=BUCKET, Key=key, Body=body)  # noqa: E731
    put("documents/faq.csv", b"What is A?,A is first.\nWhat is B?,B is second.\n")
    put("documents/guide.md", b"# Guide\n\nStep one, step two.\n")
    put("documents/sub/notes.txt", b"Notes about clusters.\n")
    put("documents/broken.pdf", b"not a pdf")
    put("documents/folder/", b"")
    put("other/ignored.txt", b"not under the prefix")
    return s3_client


def _run(client, emb, store=None):
    store = store or RecordingStore(client, BUCKET, "faiss_index/")
    summary = run_ingestion(tenant="tenanta", source=S3Source(f"s3://{BUCKET}/documents/", client), store=store,
                            embeddings=emb, embedding_model=MODEL, progress=False, concurrency=2, batch_size=2)  # fmt: skip
    return summary, store


def test_s3_to_s3_latest_written_last(bucket) -> None:
    summary, store = _run(bucket, Counting())
    assert summary.sources == 3
    assert summary.chunks == 4
    assert summary.embedded_chunks == 4
    assert [uri for uri, _ in summary.skipped] == [f"s3://{BUCKET}/documents/broken.pdf"]
    assert store.writes[-1] == LATEST
    assert store.writes.count(LATEST) == 1
    assert store.writes[-2].endswith("manifest.json")
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET, Prefix="faiss_index/")["Contents"]]
    assert "faiss_index/LATEST" in keys
    assert not any(k.endswith((".pkl", ".pickle")) for k in keys)
    loaded = load_index_version(S3BlobStore(bucket, BUCKET, "faiss_index"), tenant="tenanta", embedding_model=MODEL)
    assert loaded.version == summary.version
    sources = {d.metadata["source"] for d in loaded.documents}
    assert sources == {f"s3://{BUCKET}/documents/{k}" for k in ("faq.csv", "guide.md", "sub/notes.txt")}
    assert all(s.etag_or_sha256.startswith("etag:") for s in loaded.manifest.sources)
    assert [d.metadata["row"] for d in loaded.documents if d.metadata["source"].endswith(".csv")] == [0, 1]


def test_failure_midway_leaves_no_latest(bucket) -> None:
    with pytest.raises(RuntimeError, match="midway"):
        _run(bucket, Counting(fail=True))
    store = S3BlobStore(bucket, BUCKET, "faiss_index/")
    assert not store.exists(LATEST)


def test_incremental_unchanged_then_deleted_source(bucket) -> None:
    first, _ = _run(bucket, Counting())
    second_emb = Counting()
    second, store = _run(bucket, second_emb)
    assert second_emb.count == 0
    assert second.embedded_chunks == 0
    assert second.version == first.version
    assert LATEST not in store.writes

    bucket.delete_object(Bucket=BUCKET, Key="documents/guide.md")
    bucket.put_object(Bucket=BUCKET, Key="documents/sub/notes.txt", Body=b"Changed notes.\n")
    third_emb = Counting()
    third, _ = _run(bucket, third_emb)
    assert third_emb.count == 1
    assert third.removed_sources == [f"s3://{BUCKET}/documents/guide.md"]
    store = S3BlobStore(bucket, BUCKET, "faiss_index/")
    assert read_latest_version_id(store) == third.version
    loaded = load_index_version(store, tenant="tenanta", embedding_model=MODEL)
    assert not any(d.metadata["source"].endswith("guide.md") for d in loaded.documents)
    assert "Changed notes." in [d.page_content for d in loaded.documents]
    assert len(list_versions(store)) == 2


def test_cli_subprocess_against_moto(bucket, moto_endpoint, tmp_path) -> None:
    """``python -m ingest`` as a real process, S3 via AWS_ENDPOINT_URL, the real local model."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HF_HUB_OFFLINE": "1",
        "TENANT_ID": "tenanta",
        "CONTEXTUAL_DATA_BUCKET": BUCKET,
        "EMBEDDINGS_PROVIDER": "local",
    }
    cmd = [sys.executable, "-m", "ingest", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "chunks            4 (4 embedded, 0 reused)" in proc.stdout
    store = S3BlobStore(bucket, BUCKET, "faiss_index/")
    loaded = load_index_version(store, tenant="tenanta", embedding_model="sentence-transformers/all-MiniLM-L6-v2")
    assert loaded.manifest.dim == 384
    assert loaded.manifest.count == 4

    proc = subprocess.run(
        [*cmd, "--tenant", "../x"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "invalid tenant id" in proc.stderr

    proc = subprocess.run([*cmd, "--source", f"s3://{BUCKET}/other/nothing/"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert read_latest_version_id(store) == loaded.version
