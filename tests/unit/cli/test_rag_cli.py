"""``rag`` against a local index: load, status, ask, reset; --help and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from rag.documents.status import STATUS_KEY, read_status
from rag.index.store import LATEST, LocalBlobStore, list_versions
from tests.support.pdf import make_pdf
from tests.unit.ingest.conftest import CountingEmbeddings, write_tree


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setattr("rag.index.embeddings.make_embeddings", lambda settings, **_: CountingEmbeddings())
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    monkeypatch.setenv("LLM_PROVIDER", "extractive")
    monkeypatch.setenv("RETRIEVER_MODE", "hybrid")
    docs = write_tree(
        tmp_path / "docs",
        {
            "faq.csv": "What is the warranty?,The warranty lasts seven years.\nHow do I return it?,Within 30 days.\n",
            "guide.pdf": make_pdf(["Introduction to the gadget", "The battery charges in forty minutes."]),
            "latin1.csv": b"name,city\nJos\xe9,M\xfcnchen\n",
        },
    )
    return {"docs": docs, "index": tmp_path / "index"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_usage_errors(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("ask", "load", "status", "reset"))
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err
    code, _, err = run(capsys, "status", "--tenant", "../etc")
    assert code == 2 and "invalid tenant id" in err


def test_load_status_ask_reset(env, capsys):
    index = str(env["index"])
    code, out, _ = run(capsys, "load", "--tenant", "tenanta", "--source", str(env["docs"]), "--index-uri", index)
    assert code == 0, out
    assert "latin1.csv: not valid UTF-8" in out

    code, out, _ = run(capsys, "status", "--tenant", "tenanta", "--index-uri", index, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["sources"] == 2 and report["chunks"] == 4 and report["versions_stored"] == 1
    last = report["last_ingestion"]
    assert last["state"] == "succeeded" and last["trigger"] == "cli" and last["version"] == report["version"]
    assert [s["reason"] for s in last["skipped"]] == ["not valid UTF-8 (byte 13)"]

    code, out, _ = run(capsys, "status", "--tenant", "tenanta", "--index-uri", index)
    assert code == 0 and "last ingestion   succeeded (cli" in out and "skipped" in out

    code, out, _ = run(
        capsys, "ask", "--tenant", "tenanta", "--index-uri", index, "--json", "How long does the battery charge?"
    )
    answer = json.loads(out)
    assert code == 0
    assert answer["index_version"] == report["version"]
    assert any(s["source"].endswith("guide.pdf") and s.get("page") == 1 for s in answer["sources"])

    code, out, _ = run(capsys, "ask", "--tenant", "tenanta", "--index-uri", index, "What is the warranty?")
    assert code == 0 and "Sources:" in out and "faq.csv, row 0" in out

    code, _, err = run(capsys, "reset", "--tenant", "tenanta", "--index-uri", index)
    assert code == 2 and "without --yes" in err
    store = LocalBlobStore(env["index"])
    assert store.exists(LATEST) and list_versions(store)

    code, out, _ = run(capsys, "reset", "--tenant", "tenanta", "--index-uri", index, "--yes")
    assert code == 0 and "deleted 1 index versions" in out
    assert not store.exists(LATEST) and list_versions(store) == [] and not store.exists(STATUS_KEY)

    code, out, _ = run(capsys, "status", "--tenant", "tenanta", "--index-uri", index)
    assert code == 1 and "LATEST is missing" in out
    code, _, err = run(capsys, "ask", "--tenant", "tenanta", "--index-uri", index, "anything?")
    assert code == 1 and "no usable index" in err


def test_load_of_nothing_valid_fails_and_records_why(env, capsys, tmp_path):
    bad = write_tree(tmp_path / "bad", {"latin1.csv": b"a,b\n\xff,c\n", "notes.xyz": "x"})
    code, _, err = run(capsys, "load", "--tenant", "tenanta", "--source", str(bad), "--index-uri", str(env["index"]))
    assert code == 1 and "nothing ingested" in err
    status = read_status(LocalBlobStore(env["index"]))
    assert status.state == "failed" and "no valid document" in status.errors[0]
    assert {s.reason for s in status.skipped} == {"not valid UTF-8 (byte 4)", "unsupported file type"}
