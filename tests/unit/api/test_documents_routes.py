"""Document and ingestion endpoints: admin-only (real RS256 tokens), upload checks, listing, 409."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from api.main import create_app
from gateway.issuer import LocalIssuer, SigningKey
from rag.documents.contract import IngestionState, IngestionStatus
from rag.documents.status import write_status
from rag.documents.store import LocalDocumentStore
from rag.index.store import SourceRecord, open_store, write_index_version
from tests.support.pdf import make_pdf
from tests.unit.api.fakes import EMBEDDING_MODEL, TENANT, fake_embeddings, make_settings, started_clients

ADMIN_GROUP = "admins"


class LocalJwks:
    """The issuer's keys without HTTP (PyJWKClient's one method the verifier calls)."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self.issuer.jwks()["keys"]:
            if key["kid"] == kid:
                return jwt.PyJWK(key)
        raise jwt.PyJWKClientError("unknown kid")


class RecordingRunner:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.running: list[str] = []

    def start(self, run_id: str) -> str:
        self.started.append(run_id)
        self.running.append(run_id)
        return f"job-{run_id}"

    def active_runs(self) -> list[str]:
        return list(self.running)


@pytest.fixture
def issuer() -> LocalIssuer:
    return LocalIssuer()  # not started: tokens are minted in-process, keys handed over directly


@pytest.fixture
def env(tmp_path: Path, issuer: LocalIssuer) -> dict[str, Any]:
    index_root = tmp_path / "index"
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "faq.md").write_text("# FAQ\nThe warranty lasts 7 years.\n")
    (docs / "broken.csv").write_bytes(b"a,b\n\xff\xfe,c\n")
    emb = fake_embeddings()
    from langchain_core.documents import Document

    documents = [
        Document("The warranty lasts 7 years.", metadata={"id": "md-0", "source": str(docs / "faq.md")}),
        Document("Returns within 30 days.", metadata={"id": "md-1", "source": str(docs / "faq.md")}),
    ]
    version = write_index_version(
        open_store(str(index_root)),
        tenant=TENANT,
        embedding_model=EMBEDDING_MODEL,
        vectors=__import__("numpy").array(emb.embed_documents([d.page_content for d in documents])),
        documents=documents,
        sources=[SourceRecord(uri=str(docs / "faq.md"), etag_or_sha256="sha256:x", chunks=2)],
    )
    return {"index_root": index_root, "docs": docs, "version": version}


@pytest.fixture
def client(env: dict[str, Any], issuer: LocalIssuer):
    runner = RecordingRunner()
    settings = make_settings(
        env["index_root"],
        auth_mode="oidc",
        issuer_uri=issuer.issuer_url,
        cognito_client_id=issuer.client_id,
        admin_group=ADMIN_GROUP,
        documents_uri=str(env["docs"]),
        upload_max_file_bytes=4096,
    )
    with started_clients() as start:
        app = create_app(
            settings=settings,
            embeddings=fake_embeddings(),
            document_store=LocalDocumentStore(env["docs"]),
            ingestion_runner=runner,
        )
        test_client = start(app)
        app.state.jwks_client = LocalJwks(issuer)
        test_client.runner = runner
        yield test_client


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def admin_token(issuer: LocalIssuer, **overrides: Any) -> str:
    return issuer.mint(TENANT, "alice@tenanta.example.com", **{"cognito:groups": [ADMIN_GROUP], **overrides})


ENDPOINTS = [
    ("GET", "/api/v1/documents", None),
    ("PUT", "/api/v1/documents/new.md", b"# hi\nthere"),
    ("DELETE", "/api/v1/documents/faq.md", None),
    ("POST", "/api/v1/ingestions", None),
    ("GET", "/api/v1/ingestions/latest", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_refuses_non_admins(client, issuer, env, method, path, body):
    member = issuer.mint(TENANT, "carol@tenanta.example.com")  # valid token, no groups
    forged = {"X-Auth-Request-Groups": ADMIN_GROUP, "X-Cognito-Groups": ADMIN_GROUP}
    other_tenant = issuer.mint("tenantb", "bob@tenantb.example.com", **{"cognito:groups": [ADMIN_GROUP]})
    foreign_key = issuer.mint(TENANT, "eve@x.example.com", key=SigningKey(), **{"cognito:groups": [ADMIN_GROUP]})
    expired = admin_token(issuer, now=0)
    cases = [
        ({}, "admin_token_missing"),
        (forged, "admin_token_missing"),
        (auth(member), "not_admin"),
        (auth(member, **forged), "not_admin"),
        (auth(other_tenant), "admin_wrong_tenant"),
        (auth(foreign_key), "admin_token_invalid"),
        (auth(expired), "admin_token_expired"),
        (auth("not-a-jwt"), "admin_token_invalid"),
    ]
    for headers, code in cases:
        response = client.request(method, path, headers=headers, content=body)
        assert response.status_code == 403, (headers.keys(), response.text)
        assert response.json()["error"] == code
    assert sorted(p.name for p in env["docs"].iterdir()) == ["broken.csv", "faq.md"]  # nothing written/deleted
    assert client.runner.started == []


def test_listing_shows_chunks_skips_version_and_limits(client, issuer, env):
    store = open_store(str(env["index_root"]))
    write_status(
        store,
        IngestionStatus(
            run_id="20261202T010000Z-0a0b0c0d",
            tenant=TENANT,
            state=IngestionState.SUCCEEDED,
            updated_at="2026-12-02T01:00:05Z",
            version=env["version"],
            skipped=[{"source": str(env["docs"] / "broken.csv"), "reason": "not valid UTF-8 (byte 4)"}],
        ),
    )
    response = client.get("/api/v1/documents", headers=auth(admin_token(issuer)))
    assert response.status_code == 200, response.text
    body = response.json()
    by_name = {d["name"]: d for d in body["documents"]}
    assert by_name["faq.md"]["chunks"] == 2 and by_name["faq.md"]["skipped_reason"] is None
    assert by_name["broken.csv"]["chunks"] is None
    assert by_name["broken.csv"]["skipped_reason"] == "not valid UTF-8 (byte 4)"
    assert by_name["faq.md"]["size"] == (env["docs"] / "faq.md").stat().st_size
    assert body["index_version"] == env["version"] and body["index_chunks"] == 2
    assert body["last_ingestion"]["state"] == "succeeded"
    assert body["limits"]["max_file_bytes"] == 4096 and ".pdf" in body["limits"]["suffixes"]


def test_upload_pdf_and_replace_then_delete(client, issuer, env):
    token = admin_token(issuer)
    pdf = make_pdf(["Page one", "Page two"])
    response = client.put("/api/v1/documents/Guide.pdf", headers=auth(token), content=pdf)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Guide.pdf" and response.json()["size"] == len(pdf)
    assert (env["docs"] / "Guide.pdf").read_bytes() == pdf
    again = client.put("/api/v1/documents/Guide.pdf", headers=auth(token), content=pdf + b"\n")
    assert again.status_code == 201 and (env["docs"] / "Guide.pdf").stat().st_size == len(pdf) + 1
    gone = client.delete("/api/v1/documents/Guide.pdf", headers=auth(token))
    assert gone.status_code == 204 and not (env["docs"] / "Guide.pdf").exists()
    missing = client.delete("/api/v1/documents/Guide.pdf", headers=auth(token))
    assert missing.status_code == 404 and missing.json()["error"] == "document_not_found"


BAD_UPLOADS = [
    ("empty.md", b"", 422, "empty_file", "empty"),
    ("big.txt", b"x" * 4097, 413, "file_too_large", "4096 byte limit"),
    ("..%2Fx.pdf", make_pdf(["x"]), 422, "invalid_name", "folder part"),
    ("a%2Fb.md", b"# b", 422, "invalid_name", "folder part"),
    ("a%5Cb.md", b"# b", 422, "invalid_name", "folder part"),
    ("bad%07name.md", b"# b", 422, "invalid_name", "control characters"),
    (".hidden.md", b"# b", 422, "invalid_name", "starts with a dot"),
    ("notes.pdf", b"just some text, not a PDF", 422, "content_mismatch", "not a PDF"),
    ("tool.exe", b"MZ\x90\x00", 422, "unsupported_type", "not supported"),
    ("latin1.csv", b"name,city\nJos\xe9,M\xfcnchen\n", 422, "invalid_encoding", "not valid UTF-8"),
    ("page.html", b"just text", 422, "content_mismatch", "HTML"),
    ("doc.txt", make_pdf(["x"]), 422, "content_mismatch", "PDF"),
]


@pytest.mark.parametrize(("name", "data", "status", "code", "words"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_uploads_are_refused_and_write_nothing(client, issuer, env, name, data, status, code, words):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in env["docs"].rglob("*"))
    response = client.put(f"/api/v1/documents/{name}", headers=auth(admin_token(issuer)), content=data)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert words in response.json()["message"]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in env["docs"].rglob("*")) == before
    assert not (env["docs"].parent / "x.pdf").exists()


def test_chunked_upload_over_the_limit_is_413(client, issuer, env):
    def body():
        for _ in range(5):
            yield b"y" * 1000

    response = client.put("/api/v1/documents/stream.txt", headers=auth(admin_token(issuer)), content=body())
    assert response.status_code == 413 and response.json()["error"] == "file_too_large"
    assert not (env["docs"] / "stream.txt").exists()


def test_ingestion_queued_then_409_while_running(client, issuer, env):
    token = admin_token(issuer)
    assert client.get("/api/v1/ingestions/latest", headers=auth(token)).json()["error"] == "no_ingestion"
    first = client.post("/api/v1/ingestions", headers=auth(token))
    assert first.status_code == 202, first.text
    run_id = first.json()["run_id"]
    assert first.json()["state"] == "queued" and client.runner.started == [run_id]
    latest = client.get("/api/v1/ingestions/latest", headers=auth(token))
    assert latest.json()["state"] == "queued" and latest.json()["run_id"] == run_id
    second = client.post("/api/v1/ingestions", headers=auth(token))
    assert second.status_code == 409 and second.json()["error"] == "ingestion_running"
    assert run_id in second.json()["message"]
    assert client.runner.started == [run_id]
    # the job reports running, then finishes: a new run may start
    store = open_store(str(env["index_root"]))
    write_status(
        store,
        IngestionStatus(
            run_id=run_id, tenant=TENANT, state="running", updated_at="2099-01-01T00:00:00Z",
            progress={"phase": "embedding", "done": 3, "total": 10},
        ),
    )  # fmt: skip
    running = client.get("/api/v1/ingestions/latest", headers=auth(token)).json()
    assert running["state"] == "running" and running["progress"] == {"phase": "embedding", "done": 3, "total": 10}
    client.runner.running.clear()
    write_status(
        store,
        IngestionStatus(
            run_id=run_id, tenant=TENANT, state="succeeded", updated_at="2026-12-02T01:00:00Z", version=env["version"],
            counts={"sources": 1, "documents": 1, "chunks": 2, "embedded_chunks": 0, "reused_chunks": 2,
                    "removed_sources": 0},
        ),
    )  # fmt: skip
    done = client.get("/api/v1/ingestions/latest", headers=auth(token)).json()
    assert done["state"] == "succeeded" and done["counts"]["chunks"] == 2
    assert client.post("/api/v1/ingestions", headers=auth(token)).status_code == 202


def test_a_running_status_whose_job_vanished_reads_failed(client, issuer, env):
    write_status(
        open_store(str(env["index_root"])),
        IngestionStatus(run_id="20261202T010000Z-0a0b0c0d", tenant=TENANT, state="running",
                        updated_at="2020-01-01T00:00:00Z"),
    )  # fmt: skip
    body = client.get("/api/v1/ingestions/latest", headers=auth(admin_token(issuer))).json()
    assert body["state"] == "failed" and "without reporting" in body["errors"][-1]
    assert client.post("/api/v1/ingestions", headers=auth(admin_token(issuer))).status_code == 202


def test_openapi_documents_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/api/v1/documents/{name}"]) == {"put", "delete"}
    assert "application/octet-stream" in paths["/api/v1/documents/{name}"]["put"]["requestBody"]["content"]
    assert {"403", "409"} <= set(paths["/api/v1/ingestions"]["post"]["responses"])
    assert "IngestionStatus" in json.dumps(paths["/api/v1/ingestions/latest"])


def test_dev_mode_admin_follows_dev_user_groups(env, tmp_path):
    for groups, expected in (("admins", 200), ("readers", 403)):
        settings = make_settings(
            env["index_root"], auth_mode="dev", dev_user_groups=groups, documents_uri=str(env["docs"])
        )
        with started_clients() as start:
            app = create_app(settings=settings, embeddings=fake_embeddings(), ingestion_runner=RecordingRunner())
            response = start(app).get("/api/v1/documents")
        assert response.status_code == expected, response.text
        if expected == 403:
            assert response.json()["error"] == "not_admin"


def test_no_document_store_is_503(env):
    settings = make_settings(env["index_root"], auth_mode="dev")
    with started_clients() as start:
        response = start(create_app(settings=settings, embeddings=fake_embeddings())).get("/api/v1/documents")
    assert response.status_code == 503 and response.json()["error"] == "documents_not_configured"


def test_a_failing_store_is_503_not_a_model_error(env, issuer):
    from botocore.exceptions import ClientError

    class FailingStore(LocalDocumentStore):
        def put(self, name, data, content_type):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")

    settings = make_settings(env["index_root"], auth_mode="dev", documents_uri=str(env["docs"]))
    with started_clients() as start:
        app = create_app(settings=settings, embeddings=fake_embeddings(), document_store=FailingStore(env["docs"]),
                         ingestion_runner=RecordingRunner())  # fmt: skip
        response = start(app).put("/api/v1/documents/x.md", content=b"# x")
    assert response.status_code == 503 and response.json()["error"] == "documents_unavailable"
    assert "cannot be reached" in response.json()["message"] and response.headers["Retry-After"] == "2"
