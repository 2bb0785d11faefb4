"""Feedback on answers: answer ids, storage with the question/answer/sources/model, export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from rag.stores.feedback import FeedbackRecord, SQLiteFeedbackStore
from rag.stores.feedback_export import main as export_main
from tests.unit.api.fakes import OTHER_TENANT_SESSION, SESSION, ScriptedChatModel, parse_sse, rag_body
from tests.unit.ops.conftest import metric_value


def test_answer_id_in_response_done_event_and_history(ops_client) -> None:
    api = ops_client(ScriptedChatModel())
    first = api.post("/api/v1/llm/rag", json=rag_body()).json()
    events = parse_sse(api.post("/api/v1/llm/rag/stream", json=rag_body("What is EMR?")).text)
    done = events[-1][1]
    assert [name for name, _ in events][-2:] == ["sources", "done"]
    assert set(done) == {"session_id", "answer", "grounded", "usage", "model_id", "answer_id"}
    assert first["answer_id"] and done["answer_id"] and first["answer_id"] != done["answer_id"]
    messages = api.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"]
    assert [m.get("answer_id") for m in messages if m["role"] == "assistant"] == [first["answer_id"], done["answer_id"]]
    assert all("answer_id" not in m for m in messages if m["role"] == "user")


def test_feedback_is_stored_with_the_turn_and_exported(ops_client, stores) -> None:
    api = ops_client(ScriptedChatModel(replies=["Studio is a web IDE [1]."]))
    down_before = metric_value(api, "ragapi_feedback_total", tenant="tenanta", rating="down")
    answer = api.post("/api/v1/llm/rag", json=rag_body("What is SageMaker Studio?")).json()
    response = api.post(
        "/api/v1/feedback",
        json={"session_id": SESSION, "answer_id": answer["answer_id"], "rating": "down", "comment": "too short"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["answer_id"] == answer["answer_id"]
    by_index = api.post("/api/v1/feedback", json={"session_id": SESSION, "turn_index": 0, "rating": "up"})
    assert by_index.status_code == 201 and by_index.json()["answer_id"] == answer["answer_id"]
    first, second = stores.feedback.records
    assert (first.rating, first.comment, first.user, first.turn_index) == ("down", "too short", "alice@example.com", 0)
    assert first.question == "What is SageMaker Studio?" and first.answer == "Studio is a web IDE [1]."
    assert first.sources and first.sources[0]["source"] == "faq.csv"
    assert first.model_id == "extractive" and second.rating == "up"
    export = api.get("/api/v1/feedback/export")
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["rating"] for line in lines] == ["down", "up"]
    assert {"question", "answer", "sources", "model_id", "answer_id", "comment", "created_at"} <= set(lines[0])
    assert "tenanta" in export.headers["content-disposition"]
    assert metric_value(api, "ragapi_feedback_total", tenant="tenanta", rating="down") == down_before + 1


def test_feedback_refusals(ops_client) -> None:
    api = ops_client(ScriptedChatModel())
    answer = api.post("/api/v1/llm/rag", json=rag_body()).json()
    ok = {"session_id": SESSION, "answer_id": answer["answer_id"], "rating": "up"}
    other = api.post("/api/v1/feedback", json={**ok, "session_id": OTHER_TENANT_SESSION})
    assert other.status_code == 403 and other.json()["error"] == "forbidden"
    missing = api.post("/api/v1/feedback", json={**ok, "answer_id": "0" * 32})
    assert missing.status_code == 404 and missing.json()["error"] == "answer_not_found"
    assert api.post("/api/v1/feedback", json={**ok, "comment": "x" * 2001}).status_code == 422
    assert api.post("/api/v1/feedback", json={**ok, "rating": "meh"}).status_code == 422
    unidentified = api.post("/api/v1/feedback", json={"session_id": SESSION, "rating": "up"})
    assert unidentified.status_code == 422 and "answer_id or turn_index" in unidentified.json()["message"]
    assert api.post("/api/v1/feedback", json={**ok, "comment": "x" * 2000}).status_code == 201
    assert api.get("/api/v1/feedback/export", params={"from": "2026-01-01", "to": "2026-12-31"}).status_code == 422


def test_export_cli_writes_jsonl(tmp_path, monkeypatch, capsys) -> None:
    db = tmp_path / "feedback.db"
    store = SQLiteFeedbackStore(db)
    now = datetime.now(UTC)
    for n, (tenant, at) in enumerate(
        [("tenanta", now - timedelta(days=1)), ("tenantb", now), ("tenanta", now - timedelta(days=40))]
    ):
        created = at.isoformat(timespec="milliseconds")
        store.put(FeedbackRecord(tenant, f"{created}#{n}", created, SESSION, "alice@example.com", f"a{n}", "up"))
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("FEEDBACK_URL", f"sqlite:///{db}")
    out = tmp_path / "export.jsonl"
    assert export_main(["--out", str(out)]) == 0  # default: the last 30 days, this tenant only
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["answer_id"] == "a0" and json.loads(line)["tenant"] == "tenanta"
    assert "1 feedback records exported" in capsys.readouterr().err
    assert export_main(["--out", str(out), "--from", (now - timedelta(days=60)).date().isoformat()]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert export_main(["--from", "not-a-date"]) == 2
