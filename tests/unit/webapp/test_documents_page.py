"""The Documents page under AppTest: only admins see it; list, delete with confirmation, re-index;
and the page's logic (upload planning, status texts) without Streamlit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from rag.documents.contract import DocumentItem, DocumentList, IngestionStatus, UploadLimits
from tests.unit.webapp.conftest import bearer
from webapp import documents
from webapp.documents_client import DocumentsApiError, DocumentsClient

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
LIMITS = UploadLimits(max_file_bytes=1000, max_upload_bytes=1500, suffixes=[".md", ".pdf"])


@dataclass
class FakeDocuments:
    items: list[DocumentItem] = field(
        default_factory=lambda: [
            DocumentItem(name="guide.pdf", size=2048, last_modified=NOW, uri="/d/guide.pdf", chunks=4),
            DocumentItem(
                name="bad.csv", size=10, last_modified=NOW, uri="/d/bad.csv", skipped_reason="not valid UTF-8 (byte 3)"
            ),
        ]
    )
    last: IngestionStatus | None = field(
        default_factory=lambda: IngestionStatus(
            run_id="20261202T010000Z-0a0b0c0d",
            tenant="tenanta",
            state="succeeded",
            updated_at=NOW,
            finished_at=NOW,
            version="v1",
            counts={
                "sources": 2,
                "documents": 2,
                "chunks": 4,
                "embedded_chunks": 1,
                "reused_chunks": 3,
                "removed_sources": 0,
            },
        )
    )
    deleted: list[str] = field(default_factory=list)
    started: int = 0
    busy: bool = False
    uploads: list[tuple[str, bytes]] = field(default_factory=list)

    def list(self) -> DocumentList:
        return DocumentList(documents=self.items, index_version="20261202T010000Z-v", index_chunks=4,
                            last_ingestion=self.last, limits=LIMITS)  # fmt: skip

    def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.items = [i for i in self.items if i.name != name]

    def start_ingestion(self) -> IngestionStatus:
        if self.busy:
            raise DocumentsApiError(
                "An ingestion is already queued or running (x).", status=409, code="ingestion_running"
            )
        self.started += 1
        return IngestionStatus(run_id="20261202T020000Z-0a0b0c0e", tenant="tenanta", state="queued", updated_at=NOW)

    def latest_ingestion(self) -> IngestionStatus | None:
        return self.last

    def upload(self, name: str, data: bytes) -> DocumentItem:
        if name.endswith(".exe"):
            raise DocumentsApiError(f"{name}: the type .exe is not supported.", status=422, code="unsupported_type")
        self.uploads.append((name, data))
        return DocumentItem(name=name, size=len(data), last_modified=NOW, uri=f"/d/{name}")


@pytest.fixture
def fake_docs(monkeypatch) -> FakeDocuments:
    fake = FakeDocuments()
    monkeypatch.setattr(documents, "client_for", lambda settings, admin: fake)
    return fake


def admin_headers(issuer) -> dict[str, str]:
    return bearer(issuer.token(**{"cognito:groups": ["admins"]}))


def all_text(at) -> str:
    parts = []
    for kind in ("title", "markdown", "caption", "error", "warning", "info", "success"):
        parts.extend(str(el.value) for el in getattr(at, kind))
    return "\n".join(parts)


def test_member_without_the_group_has_no_documents_page(app, set_headers, issuer, fake_docs):
    set_headers(bearer(issuer.token(**{"cognito:groups": ["readers"]})))
    at = app.run()
    assert not at.exception
    assert len(at.sidebar.radio) == 0 and "Documents" not in all_text(at)
    assert len(at.chat_input) == 1


def test_forged_group_header_gives_no_page(app, set_headers, issuer, fake_docs):
    set_headers({**bearer(issuer.token()), "X-Auth-Request-Groups": "admins", "X-Cognito-Groups": "admins"})
    at = app.run()
    assert not at.exception and len(at.sidebar.radio) == 0


def test_admin_sees_list_status_and_version(app, set_headers, issuer, fake_docs):
    set_headers(admin_headers(issuer))
    at = app.run()
    assert at.sidebar.radio[0].options == ["Chat", "Documents"]
    at = at.sidebar.radio[0].set_value("Documents").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Documents"]
    text = all_text(at)
    assert "20261202T010000Z-v" in text and "(4 chunks)" in text
    assert "succeeded" in text and "4 chunks (1 newly embedded, 3 reused)" in text
    table = at.table[0].value
    assert list(table["Name"]) == ["guide.pdf", "bad.csv"]
    assert list(table["Chunks in index"]) == ["4", "–"]
    assert list(table["Skipped"]) == ["", "not valid UTF-8 (byte 3)"]
    assert len(at.chat_input) == 0


def test_delete_asks_for_confirmation(app, set_headers, issuer, fake_docs):
    set_headers(admin_headers(issuer))
    at = app.run().sidebar.radio[0].set_value("Documents").run()
    at.selectbox(key="docs_delete_choice").set_value("bad.csv")
    at = at.button(key="docs_delete").click().run()
    assert fake_docs.deleted == [] and "Delete bad.csv?" in all_text(at)
    at = at.button(key="docs_confirm_no").click().run()
    assert fake_docs.deleted == [] and "Delete bad.csv?" not in all_text(at)
    at.selectbox(key="docs_delete_choice").set_value("bad.csv")
    at = at.button(key="docs_delete").click().run()
    at = at.button(key="docs_confirm_yes").click().run()
    assert not at.exception
    assert fake_docs.deleted == ["bad.csv"] and "bad.csv deleted" in all_text(at)


def test_reindex_queues_and_reports_a_running_one(app, set_headers, issuer, fake_docs):
    set_headers(admin_headers(issuer))
    at = app.run().sidebar.radio[0].set_value("Documents").run()
    at = at.button(key="docs_reindex").click().run()
    assert fake_docs.started == 1 and "Re-indexing queued" in all_text(at)
    fake_docs.busy = True
    at = at.button(key="docs_reindex").click().run()
    assert fake_docs.started == 1 and "already queued or running" in all_text(at)


def test_upload_refuses_a_total_over_the_limit_and_sends_nothing():
    fake = FakeDocuments()
    outcomes = documents.upload_files(fake, [("a.md", b"x" * 900), ("b.md", b"y" * 900)], LIMITS)
    assert [o.ok for o in outcomes] == [False, False]
    assert "over the 1.5 KB limit of one upload" in outcomes[0].message and fake.uploads == []


def test_upload_reports_each_file():
    fake = FakeDocuments()
    outcomes = documents.upload_files(fake, [("a.md", b"# a"), ("tool.exe", b"MZ")], LIMITS)
    assert [(o.name, o.ok) for o in outcomes] == [("a.md", True), ("tool.exe", False)]
    assert "not supported" in outcomes[1].message and fake.uploads == [("a.md", b"# a")]


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (None, "info", "No ingestion has run yet"),
        ({"state": "queued"}, "info", "queued"),
        (
            {"state": "running", "progress": {"phase": "embedding", "done": 3, "total": 9}},
            "running",
            "embedding 3 of 9",
        ),
        ({"state": "failed", "errors": ["no valid document"]}, "error", "failed at"),
    ],
)
def test_describe_ingestion(status, kind, words):
    parsed = None
    if status is not None:
        parsed = IngestionStatus(run_id="20261202T010000Z-0a0b0c0d", tenant="tenanta", updated_at=NOW, **status)
    got_kind, text = documents.describe_ingestion(parsed)
    assert got_kind == kind and words in text


def test_client_forwards_the_token_and_maps_errors():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), request.headers.get("authorization")))
        if request.method == "PUT":
            return httpx.Response(422, json={"error": "invalid_name", "message": "a/b.md: has a folder part"})
        return httpx.Response(404, json={"error": "no_ingestion", "message": "none"})

    client = DocumentsClient("http://api.test", "tok-123", transport=httpx.MockTransport(handler))
    with pytest.raises(DocumentsApiError) as caught:
        client.upload("a/b.md", b"x")
    assert caught.value.code == "invalid_name" and caught.value.status == 422
    assert client.latest_ingestion() is None
    assert seen == [
        ("PUT", "/api/v1/documents/a%2Fb.md", "Bearer tok-123"),
        ("GET", "/api/v1/ingestions/latest", "Bearer tok-123"),
    ]
