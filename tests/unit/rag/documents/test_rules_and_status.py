"""Upload rules (names, types from content), the status object, the job's status reporter."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.pipeline import IngestSummary
from ingest.status import PROGRESS_INTERVAL_SECONDS, StatusReporter
from rag.documents.contract import IngestionState, is_run_id, new_run_id
from rag.documents.rules import UPLOAD_TYPES, DocumentRejected, check_document, normalise_name
from rag.documents.status import STATUS_KEY, StatusUnreadableError, read_status
from rag.index.store import LocalBlobStore
from tests.support.pdf import make_pdf


def test_every_upload_type_has_a_loader():
    assert set(UPLOAD_TYPES) <= set(SUPPORTED_SUFFIXES)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Guide.PDF", "Guide.PDF"), ("  notes.md  ", "notes.md"), ("Cafe\u0301.txt", "Caf\u00e9.txt")],
)
def test_names_are_normalised(raw, normal):
    assert normalise_name(raw) == normal


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("../x.pdf", "invalid_name"), ("a/b.md", "invalid_name"), ("a\\b.md", "invalid_name"),
        ("..", "invalid_name"), (".env.md", "invalid_name"), ("x\x00.md", "invalid_name"),
        ("x\u202e.md", "invalid_name"), ("", "invalid_name"), ("a" * 198 + ".md", "invalid_name"),
        ("noext", "unsupported_type"), ("x.docx", "unsupported_type"), (".pdf", "invalid_name"),
    ],
)  # fmt: skip
def test_bad_names_are_refused(raw, code):
    with pytest.raises(DocumentRejected) as caught:
        normalise_name(raw)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("a.pdf", make_pdf(["x"]), "pdf"),
        ("a.html", b"\xef\xbb\xbf  <!DOCTYPE html><title>x</title>", "html"),
        ("a.htm", b"<p>hello</p>", "html"),
        ("a.html", b"<!-- a comment --><div>x</div>", "html"),
        ("a.csv", b"q,a\nwhy?,because\n", "csv"),
        ("a.md", "# Überschrift\n".encode(), "text"),
    ],
)
def test_accepted_content(name, data, kind):
    assert check_document(name, data, max_bytes=10_000).kind == kind


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("a.html", b"hello <b>world</b>", "content_mismatch"),
        ("a.html", b"<htmlx>", "content_mismatch"),
        ("a.txt", b"abc\x00def", "content_mismatch"),
        ("a.md", make_pdf(["x"]), "content_mismatch"),
        ("a.csv", b'a,"b\nc', "content_mismatch"),
        ("a.txt", b"   \n\t ", "empty_file"),
        ("a.txt", b"x" * 10_001, "file_too_large"),
    ],
)
def test_refused_content(name, data, code):
    with pytest.raises(DocumentRejected) as caught:
        check_document(name, data, max_bytes=10_000)
    assert caught.value.code == code
    assert caught.value.message.startswith(f"{name}: ")


def test_run_ids():
    run_id = new_run_id()
    assert is_run_id(run_id) and not is_run_id("../x") and not is_run_id(run_id.lower())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reporter_writes_running_progress_then_succeeded(tmp_path: Path):
    store = LocalBlobStore(tmp_path)
    clock = Clock()
    run_id = new_run_id()
    reporter = StatusReporter(store, tenant="tenanta", run_id=run_id, trigger="web", clock=clock)
    reporter.started()
    first = read_status(store)
    assert first.state is IngestionState.RUNNING and first.run_id == run_id and first.trigger == "web"
    reporter.progress("loading", 0, 3)  # a new phase: written at once
    assert read_status(store).progress.phase == "loading"
    reporter.progress("loading", 1, 3)  # throttled
    assert read_status(store).progress.done == 0
    clock.now += PROGRESS_INTERVAL_SECONDS + 0.1
    reporter.progress("loading", 2, 3)
    assert read_status(store).progress.done == 2
    summary = IngestSummary(tenant="tenanta", source_uri="/d", index_uri=str(tmp_path), version="v1", sources=2,
                            documents=2, chunks=5, embedded_chunks=3, reused_chunks=2,
                            skipped=[("/d/x.csv", "not valid UTF-8 (byte 3)")])  # fmt: skip
    reporter.succeeded(summary)
    done = read_status(store)
    assert done.state is IngestionState.SUCCEEDED and done.progress is None and done.finished_at is not None
    assert done.counts.chunks == 5 and done.version == "v1"
    assert [(s.source, s.reason) for s in done.skipped] == [("/d/x.csv", "not valid UTF-8 (byte 3)")]


def test_reporter_failure_and_unwritable_store(tmp_path: Path):
    store = LocalBlobStore(tmp_path)
    reporter = StatusReporter(store, tenant="tenanta")
    reporter.failed("no valid document under /d\nsummary lines...")
    failed = read_status(store)
    assert failed.state is IngestionState.FAILED and failed.errors == ["no valid document under /d"]
    assert failed.trigger == "job" and is_run_id(failed.run_id)

    class Broken(LocalBlobStore):
        def write(self, key: str, data: bytes) -> None:
            raise OSError("disk full")

    StatusReporter(Broken(tmp_path / "b"), tenant="tenanta").started()  # logged, never raised


def test_unreadable_status_is_an_error(tmp_path: Path):
    store = LocalBlobStore(tmp_path)
    assert read_status(store) is None
    store.write(STATUS_KEY, b'{"format": 1, "state": "exploded"}')
    with pytest.raises(StatusUnreadableError):
        read_status(store)
