"""Uploads, listings and deletes against moto's S3 server: SSE on every object, nothing written on
bad input, and chunk counts / skip reasons that match what an S3 ingestion recorded."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ingest.pipeline import run_ingestion
from ingest.sources import S3Source
from ingest.status import StatusReporter
from rag.documents.store import S3DocumentStore
from rag.index.store import S3BlobStore
from tests.support.pdf import make_pdf
from tests.unit.api.fakes import EMBEDDING_MODEL, fake_embeddings, make_settings

pytestmark = pytest.mark.integration

BUCKET = "tenanta-rag-bucket"
PDF = make_pdf(["Zorblax 9 guide", "The Zorblax 9 battery charges in 42 minutes."])


def keys(s3_client) -> list[tuple[str, str]]:
    return sorted((o["Key"], o["ETag"]) for o in s3_client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.fixture
def bucket(s3_client):
    s3_client.create_bucket(Bucket=BUCKET)
    return s3_client


def test_store_writes_with_sse_and_lists_and_deletes(bucket):
    store = S3DocumentStore(bucket, BUCKET, "documents/", sse="aws:kms", kms_key_id="alias/tenanta-docs")
    info = store.put("guide.pdf", PDF, "application/pdf")
    assert info.uri == f"s3://{BUCKET}/documents/guide.pdf" and info.size == len(PDF)
    head = bucket.head_object(Bucket=BUCKET, Key="documents/guide.pdf")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith("alias/tenanta-docs")
    assert head["ContentType"] == "application/pdf"
    aes = S3DocumentStore(bucket, BUCKET, "documents/", sse="AES256")
    aes.put("notes.md", b"# notes", "text/markdown; charset=utf-8")
    assert bucket.head_object(Bucket=BUCKET, Key="documents/notes.md")["ServerSideEncryption"] == "AES256"
    bucket.put_object(Bucket=BUCKET, Key="documents/.hidden", Body=b"x")
    bucket.put_object(Bucket=BUCKET, Key="documents/sub/", Body=b"")
    bucket.put_object(Bucket=BUCKET, Key="faiss_index/LATEST", Body=b"x")
    assert [d.name for d in store.list()] == ["guide.pdf", "notes.md"]
    assert store.delete("notes.md") is True and store.delete("notes.md") is False
    assert [d.name for d in store.list()] == ["guide.pdf"]


def test_api_upload_listing_and_bad_input_against_s3(bucket):
    store = S3DocumentStore(bucket, BUCKET, "documents/")
    index = S3BlobStore(bucket, BUCKET, "faiss_index/")
    # an operator put a Latin-1 CSV in the bucket; the admin uploads a PDF through the API
    bucket.put_object(Bucket=BUCKET, Key="documents/legacy.csv", Body=b"name,city\nJos\xe9,M\xfcnchen\n")
    settings = make_settings(
        f"s3://{BUCKET}/faiss_index/", auth_mode="dev", aws_default_region="us-east-1", contextual_data_bucket=BUCKET
    )
    app = create_app(settings=settings, embeddings=fake_embeddings(), s3_client=bucket, document_store=store)
    with TestClient(app) as api:
        assert api.put("/api/v1/documents/guide.pdf", content=PDF).status_code == 201
        head = bucket.head_object(Bucket=BUCKET, Key="documents/guide.pdf")
        assert head["ServerSideEncryption"] == "aws:kms"  # DOCUMENTS_SSE default, as the bucket's encryption
        before = keys(bucket)
        for name, data, code in (
            ("empty.md", b"", "empty_file"),
            ("..%2Fx.pdf", PDF, "invalid_name"),
            ("a%2Fb.md", b"# b", "invalid_name"),
            ("notes.pdf", b"plain text", "content_mismatch"),
            ("latin1.csv", b"a\n\xe9\n", "invalid_encoding"),
            ("setup.exe", b"MZ", "unsupported_type"),
        ):
            response = api.put(f"/api/v1/documents/{name}", content=data)
            assert response.status_code == 422 and response.json()["error"] == code, response.text
        assert keys(bucket) == before  # nothing written, nothing replaced
        assert not [k for k, _ in keys(bucket) if k.startswith(("faiss_index/", "x.pdf", "documents/a/"))]

        # the ingestion job reads the same prefix and records the same URIs
        reporter = StatusReporter(index, tenant="tenanta")
        reporter.started()
        summary = run_ingestion(tenant="tenanta", source=S3Source(f"s3://{BUCKET}/documents/", bucket), store=index,
                                embeddings=fake_embeddings(), embedding_model=EMBEDDING_MODEL, progress=False,
                                on_progress=reporter.progress)  # fmt: skip
        reporter.succeeded(summary)
        listing = api.get("/api/v1/documents").json()  # loads the new version at once (hot reload)
        assert listing["index_version"] == summary.version
        rows = {d["name"]: d for d in listing["documents"]}
        assert rows["guide.pdf"]["uri"] == f"s3://{BUCKET}/documents/guide.pdf" and rows["guide.pdf"]["chunks"] == 2
        assert rows["legacy.csv"]["chunks"] is None
        assert rows["legacy.csv"]["skipped_reason"] == "not valid UTF-8 (byte 13)"
        assert listing["last_ingestion"]["state"] == "succeeded"

        assert api.delete("/api/v1/documents/guide.pdf").status_code == 204
        assert "documents/guide.pdf" not in {k for k, _ in keys(bucket)}
        assert api.delete("/api/v1/documents/guide.pdf").json()["error"] == "document_not_found"
