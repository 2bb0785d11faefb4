"""Usage, feedback and conversations in DynamoDB Local (HASH TenantId + RANGE key): ranges, tenants, pages, export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.main import create_app
from rag.stores.feedback import DynamoDBFeedbackStore, FeedbackRecord
from rag.stores.sessions import ConversationNotFoundError, DynamoSessionStore, SessionManager
from rag.stores.usage import DynamoDBUsageStore, UsageRecord, iso_utc
from tests.integration.api.conftest import ThreadedServer
from tests.unit.api.fakes import SESSION, ScriptedChatModel, fake_embeddings, make_settings, publish_index

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_usage_records_query_by_time_and_tenant(ddb_tables, ddb_resource) -> None:
    store = DynamoDBUsageStore(ddb_resource.Table(ddb_tables()["usage"]), ttl_seconds=86_400)
    for i in range(30):
        at = iso_utc(T0 + timedelta(hours=6 * i))
        store.record(UsageRecord("tenanta", f"u{i % 3}@x.io", "s", f"a{i}", "m", 10 * i, i, 0.001 * i, at))
    store.record(UsageRecord("tenantb", "b@x.io", "s", "b0", "m", 1, 1, 0.0, iso_utc(T0)))
    day1 = store.query("tenanta", T0, T0 + timedelta(days=1))
    assert [r.answer_id for r in day1] == ["a0", "a1", "a2", "a3"]
    assert day1[2].cost_usd == 0.002 and day1[2].input_tokens == 20
    assert len(store.query("tenanta", T0, T0 + timedelta(days=30))) == 30
    assert [r.answer_id for r in store.query("tenantb", T0, T0 + timedelta(days=1))] == ["b0"]


def test_feedback_flow_against_dynamodb_and_export(ddb_tables, ddb_resource, tmp_path) -> None:
    names = ddb_tables()
    publish_index(tmp_path / "index")
    settings = make_settings(
        tmp_path / "index",
        feedback_table=names["feedback"],
        usage_table=names["usage"],
        chathistory_table=names["history"],
        aws_default_region="us-east-1",
    )
    app = create_app(
        settings=settings,
        embeddings=fake_embeddings(),
        chat_model=ScriptedChatModel(replies=["EMR runs Spark [1]."]),
        dynamodb_resource=ddb_resource,
    )
    server = ThreadedServer(app).start()
    try:
        answer = httpx.post(
            f"{server.url}/api/v1/llm/rag", json={"q": "What is EMR?", "user_session_id": SESSION}, timeout=30
        ).json()
        first = httpx.post(
            f"{server.url}/api/v1/feedback",
            json={"session_id": SESSION, "answer_id": answer["answer_id"], "rating": "down"},
            timeout=10,
        )
        assert first.status_code == 201, first.text
        sent = httpx.post(  # changed their mind and commented: the same record is updated
            f"{server.url}/api/v1/feedback",
            json={"session_id": SESSION, "answer_id": answer["answer_id"], "rating": "up", "comment": "spot on"},
            timeout=10,
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["feedback_id"] == first.json()["feedback_id"] == answer["answer_id"]
        export = httpx.get(f"{server.url}/api/v1/feedback/export", timeout=10)
        assert export.status_code == 200
        (line,) = export.text.splitlines()
        assert '"comment": "spot on"' in line and '"answer": "EMR runs Spark [1]."' in line
        messages = httpx.get(f"{server.url}/api/v1/sessions/{SESSION}/messages", timeout=10).json()["messages"]
        assert [m.get("feedback") for m in messages] == [None, "up"]  # read back (BatchGetItem) after a reload
    finally:
        server.stop()
    store = DynamoDBFeedbackStore(ddb_resource.Table(names["feedback"]))
    now = datetime.now(UTC)
    (record,) = store.query("tenanta", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert isinstance(record, FeedbackRecord)
    assert (record.rating, record.question, record.model_id) == ("up", "What is EMR?", "extractive")
    assert record.created_at < record.updated_at  # the first submission's time is kept
    assert store.get_many("tenanta", [record.feedback_id, "missing"]) == {record.feedback_id: record}
    assert record.sources and record.sources[0]["source"] == "faq.csv"
    assert store.query("tenantb", now - timedelta(hours=1), now + timedelta(minutes=1)) == []


def test_feedback_get_many_reads_more_than_one_batch(ddb_tables, ddb_resource) -> None:
    store = DynamoDBFeedbackStore(ddb_resource.Table(ddb_tables()["feedback"]))
    at = iso_utc(T0)
    for n in range(130):  # BatchGetItem takes at most 100 keys per request
        store.put(FeedbackRecord("tenanta", f"a{n}", at, SESSION, "u", f"a{n}", "up" if n % 2 else "down"))
    found = store.get_many("tenanta", [f"a{n}" for n in range(135)])
    assert len(found) == 130 and found["a7"].rating == "up" and found["a8"].rating == "down"
    assert store.get_many("tenantb", ["a1"]) == {}


def test_conversations_in_dynamodb_local(ddb_tables, ddb_resource) -> None:
    clock = {"t": 1_000_000.0}
    store = DynamoSessionStore(
        ddb_resource.Table(ddb_tables()["sessions"]), ttl_seconds=86_400, clock=lambda: clock["t"]
    )
    manager = SessionManager(store, idle_seconds=600, clock=lambda: clock["t"])
    alice, bob = "alice@example.com", "bob@example.com"
    ids = []
    for n in range(5):
        clock["t"] += 700  # each message after an idle period: a new conversation, the old ones stay listed
        ids.append(
            str(manager.session_for_message("tenanta", alice, ids[-1] if ids else None, question=f"question {n}"))
        )
    assert len(set(ids)) == 5
    bobs = str(manager.session_for_message("tenanta", bob, question="bob's"))
    page = manager.conversations("tenanta", alice, limit=2)
    assert [c.title for c in page] == ["question 4", "question 3"]  # newest activity first (the LSI)
    rest = manager.conversations("tenanta", alice, limit=10, before=page[-1].last_activity)
    assert [c.title for c in rest] == ["question 2", "question 1", "question 0"]
    clock["t"] += 10
    resumed = manager.open("tenanta", alice, ids[0])
    assert resumed.last_activity == clock["t"]
    assert manager.conversations("tenanta", alice)[0].session_id == ids[0]
    assert manager.rename("tenanta", alice, ids[0], "Renamed\u202e").title == "Renamed"
    with pytest.raises(ConversationNotFoundError):
        manager.open("tenanta", alice, bobs)  # someone else's: refused
    with pytest.raises(ConversationNotFoundError):
        manager.delete("tenanta", alice, bobs)
    manager.delete("tenanta", alice, ids[1])
    assert ids[1] not in {c.session_id for c in manager.conversations("tenanta", alice)}
    assert [c.session_id for c in manager.conversations("tenanta", bob)] == [bobs]
    clock["t"] += 86_400 * 2  # past the TTL: hidden before DynamoDB's TTL deletes them
    assert manager.conversations("tenanta", alice) == []
