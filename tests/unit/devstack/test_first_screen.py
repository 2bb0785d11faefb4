"""The demo's first-screen settings come from each tenant's corpus; the user's own documents are used in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.__main__ import main
from devstack.stack import DemoStack, TenantEndpoints, example_questions, welcome_line


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(f'"{q}","{a}"\n' for q, a in rows), encoding="utf-8")


def test_example_questions_are_short_questions_spread_over_the_csv(tmp_path):
    rows = [(f"Question number {i}?", "answer") for i in range(9)] + [("Not a question", "x"), ("Q" * 90 + "?", "x")]
    write_csv(tmp_path / "faq.csv", rows)
    assert example_questions(tmp_path) == ["Question number 0?", "Question number 3?", "Question number 6?"]
    (tmp_path / "notes.md").write_text("# notes")
    assert welcome_line(tmp_path) == "Ask about 2 documents: every answer cites the passages it comes from."


def test_no_csv_gives_no_examples(tmp_path):
    (tmp_path / "guide.pdf").write_bytes(b"%PDF-1.4")
    assert example_questions(tmp_path) == []
    assert welcome_line(tmp_path).startswith("Ask about guide.pdf:")


def test_first_screen_env_uses_the_tenants_own_documents(tmp_path, monkeypatch):
    for name in ("TENANT_WELCOME", "TENANT_EXAMPLE_QUESTIONS", "TENANT_DISPLAY_NAME"):
        monkeypatch.delenv(name, raising=False)
    docs = tmp_path / "mine"
    docs.mkdir()
    write_csv(docs / "faq.csv", [("What is it?", "a"), ("How much is it?", "b")])
    stack = DemoStack(workdir=tmp_path / "w", tenants=("mydocs",), documents={"mydocs": docs})
    stack.endpoints["mydocs"] = TenantEndpoints("mydocs", 1, 2, "mydocs")
    env = stack.first_screen_env("mydocs")
    assert json.loads(env["TENANT_EXAMPLE_QUESTIONS"]) == ["What is it?", "How much is it?"]
    assert env["TENANT_WELCOME"].startswith("Ask about faq.csv")
    assert stack.prepare_documents("mydocs") == docs.resolve()  # ingested where they are, not copied
    monkeypatch.setenv("TENANT_WELCOME", "Mine.")
    assert stack.first_screen_env("mydocs")["TENANT_WELCOME"] == "Mine."  # the user's own setting wins
    missing = DemoStack(workdir=tmp_path / "w", tenants=("mydocs",), documents={"mydocs": tmp_path / "nope"})
    with pytest.raises(RuntimeError, match="documents not found"):
        missing.prepare_documents("mydocs")


def test_cli_help_names_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--documents" in out and "--tenants" in out and "--base-port" in out
