"""Answers on real data: tenanta's SageMaker FAQ indexed by ``python -m ingest`` with local
embeddings (all-MiniLM-L6-v2), the extractive answerer, SQLite history; dev questions must find
their FAQ row among the sources.

Measured on 2026-11-25 through the API (30 questions of ``dev_tenanta.jsonl``): hit@4 0.93 hybrid /
0.93 dense, hit@1 0.67; an answer keyword in the extractive answer for 0.77 of them at k=4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from rag.answer.grounding import NO_ANSWER
from rag.answer.models import EXTRACTIVE_LABEL
from rag.settings import load_settings
from tests.conftest import REPO_ROOT
from tests.unit.api.fakes import parse_sse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def tenanta_local_index(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """tenanta's index built by the ingestion CLI, as an operator would (local embeddings)."""
    base = tmp_path_factory.mktemp("tenanta")
    source = base / "documents"
    source.mkdir()
    shutil.copy(data_dir / "Amazon_SageMaker_FAQs.csv", source)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(base),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "EMBEDDINGS_PROVIDER": "local",
    }
    index = base / "index"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "--tenant",
            "tenanta",
            "--source",
            str(source),
            "--index-uri",
            str(index),
            "--no-progress",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return index


@pytest.fixture(scope="module")
def local_client(tenanta_local_index: Path, tmp_path_factory: pytest.TempPathFactory):
    history = tmp_path_factory.mktemp("history") / "history.db"
    settings = load_settings(
        tenant_id="tenanta",
        index_uri=str(tenanta_local_index),
        embeddings_provider="local",
        llm_provider="extractive",
        retriever_mode="hybrid",
        history_url=f"sqlite:///{history}",
        index_poll_seconds=0,
    )
    with TestClient(create_app(settings=settings)) as client:
        yield client


def _session() -> str:
    return f"tenanta:dev@example.com:{uuid.uuid4()}"


def test_dev_questions_find_their_row_at_k4_hybrid(local_client, eval_dir):
    questions = [json.loads(line) for line in (eval_dir / "dev_tenanta.jsonl").read_text().splitlines() if line]
    hits = keyword_hits = refused = 0
    for item in questions:
        body = local_client.post(
            "/api/v1/llm/rag", json={"q": item["question"], "user_session_id": _session(), "max_matching_docs": 4}
        ).json()
        if not body["grounded"]:  # below the relevance floor: the no-answer reply, no sources (a miss here)
            assert body["answer"] == NO_ANSWER and body["sources"] == [], body
            refused += 1
            continue
        assert body["answer"].startswith(EXTRACTIVE_LABEL)
        assert len(body["sources"]) == 4
        rows = {s["row"] for s in body["sources"]}
        hits += bool(rows & set(item["relevant_rows"]))
        keyword_hits += any(k in body["answer"].lower() for k in item["answer_keywords"])
    # every question here is answerable: README "Retrieval and answer quality" (hybrid, tenanta) has
    # 0.100 falsely refused and recall@4 0.933; refused questions count as misses below
    assert refused / len(questions) <= 0.10, f"falsely refused {refused}/{len(questions)}"
    assert hits / len(questions) >= 0.80, f"hit@4 {hits}/{len(questions)}"
    assert keyword_hits / len(questions) >= 0.6, f"answer keywords {keyword_hits}/{len(questions)}"


def test_extractive_answer_streams_with_citations_and_follow_up_keeps_context(local_client):
    session = _session()
    events = parse_sse(
        local_client.post(
            "/api/v1/llm/rag/stream", json={"q": "Can I use R with SageMaker?", "user_session_id": session}
        ).text
    )
    assert [n for n, _ in events][-2:] == ["sources", "done"]
    answer = events[-1][1]["answer"]
    assert answer.startswith(EXTRACTIVE_LABEL) and "[1]" in answer
    assert events[-1][1]["usage"]["total_tokens"] > 0
    assert any("R" in s["snippet"] for s in events[-2][1]["sources"])
    follow = local_client.post(
        "/api/v1/llm/rag", json={"q": "is there a hosted IDE for it?", "user_session_id": session, "verbose": True}
    ).json()
    # the condensed question carries "R" and "SageMaker" into retrieval (RStudio row)
    assert any("RStudio" in d["page_content"] for d in follow["docs"])
    history = local_client.get(f"/api/v1/sessions/{session}/messages").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["sources"][0]["source"].endswith("Amazon_SageMaker_FAQs.csv")
