"""Quota counters in DynamoDB Local: atomic conditional updates under concurrency, and the API's 429."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api.main import create_app
from rag.settings import load_settings
from rag.stores.quota import DynamoDBCounterStore, QuotaExceededError, QuotaLimits, QuotaService, make_quota_store
from tests.integration.api.conftest import ThreadedServer
from tests.unit.api.fakes import SESSION, ScriptedChatModel, fake_embeddings, make_settings, publish_index

#: 2030-01-01T12:00:15Z (fixed, so all requests fall into one minute window).
NOW = 1_893_499_215.0


def run_concurrently(n: int, fn) -> list[bool]:
    barrier = threading.Barrier(n)

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            fn(i)
        except QuotaExceededError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(attempt, range(n)))


def test_100_concurrent_requests_against_a_limit_of_10_admit_exactly_10(ddb_tables, ddb_resource) -> None:
    names = ddb_tables()
    store = DynamoDBCounterStore(ddb_resource.Table(names["quota"]))
    quota = QuotaService(store, QuotaLimits(user_rpm=10), clock=lambda: NOW)
    results = run_concurrently(100, lambda i: quota.admit("tenanta", "alice@example.com"))
    assert sum(results) == 10
    minute = QuotaService._windows(NOW)[0]
    item = ddb_resource.Table(names["quota"]).get_item(Key={"QuotaKey": f"tenanta#user#alice@example.com#rpm#{minute}"})
    assert int(item["Item"]["count"]) == 10
    assert int(item["Item"]["expires_at"]) > NOW  # TTL attribute set


def test_tenant_limit_across_users_gives_user_slots_back(ddb_tables, ddb_resource) -> None:
    names = ddb_tables()
    store = DynamoDBCounterStore(ddb_resource.Table(names["quota"]))
    quota = QuotaService(store, QuotaLimits(tenant_rpm=10, user_rpm=3), clock=lambda: NOW)
    results = run_concurrently(100, lambda i: quota.admit("tenanta", f"user{i % 20}@example.com"))
    assert sum(results) == 10
    minute = QuotaService._windows(NOW)[0]
    users = sum(store.get(f"tenanta#user#user{i}@example.com#rpm#{minute}") for i in range(20))
    assert users == 10  # refused requests returned their per-user slot
    assert store.get(f"tenanta#tenant#rpm#{minute}") == 10


def test_token_counters_add_and_refuse(ddb_tables, ddb_resource) -> None:
    names = ddb_tables()
    settings = load_settings(tenant_id="tenanta", quota_table=names["quota"], aws_default_region="us-east-1")
    store = make_quota_store(settings, dynamodb_resource=ddb_resource)
    quota = QuotaService(store, QuotaLimits(tenant_tokens_per_day=1000), clock=lambda: NOW)
    quota.admit("tenanta", "a@example.com")
    run_concurrently(20, lambda i: quota.add_tokens("tenanta", "a@example.com", 50))
    with pytest.raises(QuotaExceededError) as info:
        quota.admit("tenanta", "b@example.com")
    assert info.value.kind == "tokens_per_day" and info.value.scope == "tenant"


def test_api_429_with_retry_after_from_dynamodb_counters(ddb_tables, ddb_resource, tmp_path, monkeypatch) -> None:
    names = ddb_tables()
    publish_index(tmp_path / "index")
    settings = make_settings(
        tmp_path / "index",
        quota_table=names["quota"],
        usage_table=names["usage"],
        feedback_table=names["feedback"],
        chathistory_table=names["history"],
        aws_default_region="us-east-1",
        quota_user_rpm=3,
    )
    app = create_app(
        settings=settings,
        embeddings=fake_embeddings(),
        chat_model=ScriptedChatModel(),
        dynamodb_resource=ddb_resource,
        clock=lambda: NOW,
    )
    server = ThreadedServer(app).start()
    try:

        def ask(_: int) -> httpx.Response:
            return httpx.post(
                f"{server.url}/api/v1/llm/rag", json={"q": "What is EMR?", "user_session_id": SESSION}, timeout=30
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(ask, range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 3 + [429] * 5
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "46"
        assert refused.json() == {
            "error": "quota_exceeded",
            "message": "Usage limit reached: the limit of 3 questions per minute for you. Try again in 46 seconds.",
        }
        usage = httpx.get(f"{server.url}/api/v1/usage", timeout=10).json()
        assert usage["totals"]["requests"] == 3  # only admitted answers are recorded (in USAGE_TABLE)
        assert [u["user"] for u in usage["by_user"]] == ["alice@example.com"]
    finally:
        server.stop()
