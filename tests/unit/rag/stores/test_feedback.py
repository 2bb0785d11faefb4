"""Feedback on answers: answer ids, storage with the question/answer/sources/model, export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rag.stores.feedback import FeedbackRecord, InMemoryFeedbackStore, SQLiteFeedbackStore
from rag.stores.feedback_export import main as export_main
from tests.unit.api.fakes import OTHER_TENANT_SESSION, SESSION, ScriptedChatModel, parse_sse, rag_body
from tests.unit.rag.stores.conftest import metric_value


def test_answer_id_in_response_done_event_and_history(ops_client) -> None:
    api = ops_client(ScriptedChatModel())
    first = api.post("/api/v1/llm/rag", json=rag_body()).json()
    events = parse_sse(api.post("/api/v1/llm/rag/stream", json=rag_body("What is EMR?")).text)
    done = events[-1][1]
    assert [name for name, _ in events][-2:] == ["sources", "done"]
    assert set(done) == {"session_id", "answer", "usage", "model_id", "answer_id", "grounded"}  # rag.contract.DoneEvent
    assert done["grounded"] is True
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
    assert response.json() == {"feedback_id": answer["answer_id"], "answer_id": answer["answer_id"]}
    (record,) = stores.feedback.records
    assert (record.rating, record.comment, record.user, record.turn_index) == (
        "down",
        "too short",
        "alice@example.com",
        0,
    )
    assert record.question == "What is SageMaker Studio?" and record.answer == "Studio is a web IDE [1]."
    assert record.sources and record.sources[0]["source"] == "faq.csv"
    assert record.model_id == "extractive" and record.created_at == record.updated_at
    export = api.get("/api/v1/feedback/export")
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    (line,) = [json.loads(line) for line in export.text.splitlines()]
    assert {"question", "answer", "sources", "model_id", "answer_id", "comment", "created_at", "updated_at"} <= set(
        line
    )
    assert (line["rating"], line["comment"]) == ("down", "too short")
    assert "tenanta" in export.headers["content-disposition"]
    assert metric_value(api, "ragapi_feedback_total", tenant="tenanta", rating="down") == down_before + 1


def test_one_record_per_answer_rating_again_updates_it_and_reads_back_with_the_messages(ops_client, stores) -> None:
    api = ops_client(ScriptedChatModel(replies=["First [1].", "Second [1]."]))
    first = api.post("/api/v1/llm/rag", json=rag_body("What is SageMaker?")).json()
    second = api.post("/api/v1/llm/rag", json=rag_body("What is EMR?")).json()
    assert api.post("/api/v1/feedback", json={"session_id": SESSION, "answer_id": first["answer_id"], "rating": "up"})
    changed = api.post(  # by position: the same answer, so the same record
        "/api/v1/feedback", json={"session_id": SESSION, "turn_index": 0, "rating": "down", "comment": "outdated"}
    )
    assert changed.status_code == 201 and changed.json()["feedback_id"] == first["answer_id"]
    (record,) = stores.feedback.records
    assert (record.rating, record.comment) == ("down", "outdated")
    assert record.created_at <= record.updated_at
    assert [json.loads(x)["rating"] for x in api.get("/api/v1/feedback/export").text.splitlines()] == ["down"]
    messages = api.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"]
    answers = [m for m in messages if m["role"] == "assistant"]
    assert [(m["answer_id"], m.get("feedback")) for m in answers] == [
        (first["answer_id"], "down"),
        (second["answer_id"], None),  # not rated: no field
    ]
    assert all("feedback" not in m for m in messages if m["role"] == "user")


def test_messages_are_served_without_ratings_when_the_feedback_store_fails(ops_client, stores, monkeypatch) -> None:
    from rag.stores.feedback import FeedbackUnavailableError

    api = ops_client(ScriptedChatModel())
    answer = api.post("/api/v1/llm/rag", json=rag_body()).json()
    api.post("/api/v1/feedback", json={"session_id": SESSION, "answer_id": answer["answer_id"], "rating": "up"})

    def down(*args, **kwargs):
        raise FeedbackUnavailableError("feedback (SQLite) failed: disk I/O error")

    monkeypatch.setattr(stores.feedback, "get_many", down)
    response = api.get(f"/api/v1/sessions/{SESSION}/messages")
    assert response.status_code == 200
    assert [m.get("feedback") for m in response.json()["messages"]] == [None, None]
    assert response.json()["messages"][1]["answer_id"] == answer["answer_id"]


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


@pytest.fixture(params=["memory", "sqlite"])
def feedback_store(request, tmp_path):
    return InMemoryFeedbackStore() if request.param == "memory" else SQLiteFeedbackStore(tmp_path / "f.db")


def _rated(key: str, rating: str, at: str, *, tenant: str = "tenanta", comment: str = "") -> FeedbackRecord:
    return FeedbackRecord(tenant, key, at, SESSION, "alice@example.com", key, rating, comment, updated_at=at)


def test_store_upserts_by_answer_keeps_the_first_time_and_reads_back_by_key(feedback_store) -> None:
    t1, t2 = "2026-11-01T10:00:00.000+00:00", "2026-11-01T11:00:00.000+00:00"
    feedback_store.put(_rated("a1", "up", t1, comment="good"))
    feedback_store.put(_rated("a2", "up", t1))
    feedback_store.put(_rated("a1", "down", t2, comment="on second thought"))
    feedback_store.put(_rated("a1", "down", t1, tenant="tenantb"))  # the same answer id in another tenant
    found = feedback_store.get_many("tenanta", ["a1", "a2", "a3", "a1"])
    assert set(found) == {"a1", "a2"}
    a1 = found["a1"]
    assert (a1.rating, a1.comment, a1.created_at, a1.updated_at) == ("down", "on second thought", t1, t2)
    assert feedback_store.get_many("tenantb", ["a2"]) == {}
    assert feedback_store.get_many("tenanta", []) == {}
    day = datetime(2026, 11, 1, tzinfo=UTC)
    assert [r.feedback_id for r in feedback_store.query("tenanta", day, day + timedelta(days=1))] == ["a1", "a2"]
    assert [r.tenant for r in feedback_store.query("tenantb", day, day + timedelta(days=1))] == ["tenantb"]


def test_sqlite_records_of_the_previous_layout_stay_readable(tmp_path) -> None:
    store = SQLiteFeedbackStore(tmp_path / "f.db")
    old = {"tenant": "tenanta", "feedback_id": "2026-11-01T10:00:00.000+00:00#abc", "created_at": "2026-11-01T10:00:00.000+00:00",
           "session_id": SESSION, "user": "alice@example.com", "answer_id": "a9", "rating": "up", "comment": "",
           "question": "q", "answer": "a", "sources": [], "model_id": "m", "turn_index": 0}  # fmt: skip
    store._connections.execute(
        "INSERT INTO feedback VALUES (?, ?, ?, ?)", ("tenanta", old["feedback_id"], old["created_at"], json.dumps(old))
    )
    day = datetime(2026, 11, 1, tzinfo=UTC)
    (record,) = store.query("tenanta", day, day + timedelta(days=1))
    assert (record.answer_id, record.updated_at) == ("a9", old["created_at"])
