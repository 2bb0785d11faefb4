"""Usage and feedback in DynamoDB Local (HASH TenantId + RANGE key): time ranges, tenants, pagination, export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from api.main import create_app
from rag.stores.feedback import DynamoDBFeedbackStore, FeedbackRecord
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
        sent = httpx.post(
            f"{server.url}/api/v1/feedback",
            json={"session_id": SESSION, "answer_id": answer["answer_id"], "rating": "up", "comment": "spot on"},
            timeout=10,
        )
        assert sent.status_code == 201, sent.text
        export = httpx.get(f"{server.url}/api/v1/feedback/export", timeout=10)
        assert export.status_code == 200
        (line,) = export.text.splitlines()
        assert '"comment": "spot on"' in line and '"answer": "EMR runs Spark [1]."' in line
    finally:
        server.stop()
    store = DynamoDBFeedbackStore(ddb_resource.Table(names["feedback"]))
    now = datetime.now(UTC)
    (record,) = store.query("tenanta", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert isinstance(record, FeedbackRecord)
    assert (record.rating, record.question, record.model_id) == ("up", "What is EMR?", "extractive")
    assert record.sources and record.sources[0]["source"] == "faq.csv"
    assert store.query("tenantb", now - timedelta(hours=1), now + timedelta(minutes=1)) == []
