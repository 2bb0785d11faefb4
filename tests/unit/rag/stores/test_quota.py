"""Quotas and rate limits: fixed windows, Retry-After, no over-admission, the API's 429."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.stores.quota import (
    InMemoryCounterStore,
    QuotaExceededError,
    QuotaLimits,
    QuotaService,
    SQLiteCounterStore,
)
from tests.unit.api.fakes import SESSION, ScriptedChatModel, parse_sse, rag_body
from tests.unit.rag.stores.conftest import metric_value

#: 2030-01-01T12:00:15Z: 45 s left in the minute (in the future, so no counter is cleaned up early).
NOW = 1_893_499_215.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def counters(request, tmp_path):
    return InMemoryCounterStore() if request.param == "memory" else SQLiteCounterStore(tmp_path / "quota.db")


def test_user_rpm_window_and_retry_after(counters) -> None:
    clock = Clock()
    quota = QuotaService(counters, QuotaLimits(user_rpm=2), clock)
    quota.admit("tenanta", "alice@example.com")
    quota.admit("tenanta", "alice@example.com")
    with pytest.raises(QuotaExceededError) as info:
        quota.admit("tenanta", "alice@example.com")
    assert (info.value.scope, info.value.kind, info.value.limit) == ("user", "rpm", 2)
    assert info.value.retry_after == 46  # seconds until the minute ends (rounded up)
    assert "2 questions per minute" in info.value.message
    quota.admit("tenanta", "bob@example.com")  # another user has their own window
    clock.now += 46  # the next minute
    quota.admit("tenanta", "alice@example.com")


def test_tenant_rpm_gives_the_users_slot_back(counters) -> None:
    quota = QuotaService(counters, QuotaLimits(tenant_rpm=1, user_rpm=5), Clock())
    quota.admit("tenanta", "alice@example.com")
    for _ in range(3):
        with pytest.raises(QuotaExceededError) as info:
            quota.admit("tenanta", "bob@example.com")
        assert info.value.scope == "tenant"
    # bob's refused requests did not use up his own limit
    minute = QuotaService._windows(NOW)[0]
    assert counters.get(f"tenanta#user#bob@example.com#rpm#{minute}") == 0
    assert counters.get(f"tenanta#tenant#rpm#{minute}") == 1


def test_tokens_per_day_checked_before_and_added_after(counters) -> None:
    clock = Clock()
    quota = QuotaService(counters, QuotaLimits(user_tokens_per_day=1000, tenant_tokens_per_day=5000), clock)
    quota.admit("tenanta", "alice@example.com")
    quota.add_tokens("tenanta", "alice@example.com", 999)
    quota.admit("tenanta", "alice@example.com")  # below the limit: admitted (the answer may overshoot)
    quota.add_tokens("tenanta", "alice@example.com", 10)
    with pytest.raises(QuotaExceededError) as info:
        quota.admit("tenanta", "alice@example.com")
    assert (info.value.scope, info.value.kind) == ("user", "tokens_per_day")
    assert info.value.retry_after == 86_400 - int(NOW) % 86_400 + 1  # until UTC midnight
    quota.admit("tenanta", "bob@example.com")
    quota.add_tokens("tenanta", "bob@example.com", 4000)
    with pytest.raises(QuotaExceededError) as info:
        quota.admit("tenanta", "carol@example.com")
    assert info.value.scope == "tenant"
    clock.now += 86_400  # the next day starts from zero
    quota.admit("tenanta", "alice@example.com")


class CallRecorder:
    """A counter store that records every call it gets (and forwards it)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def recorded(*args):
            self.calls.append((name, *args))
            return method(*args)

        return recorded


def test_unlimited_admits_everything_and_touches_no_counter(counters) -> None:
    recorder = CallRecorder(counters)
    quota = QuotaService(recorder, QuotaLimits(), Clock())
    assert not quota.limits.enabled
    admitted = 0
    for _ in range(100):
        quota.admit("tenanta", "alice@example.com")  # would raise QuotaExceededError if anything were limited
        admitted += 1
    quota.add_tokens("tenanta", "alice@example.com", 10**9)
    assert admitted == 100
    assert recorder.calls == []  # no read, no write: unlimited costs no store round trip
    minute, _, day, _ = QuotaService._windows(NOW)
    assert counters.get(f"tenanta#user#alice@example.com#rpm#{minute}") == 0
    assert counters.get(f"tenanta#user#alice@example.com#tpd#{day}") == 0


def test_a_limit_on_one_scope_counts_only_that_scope(counters) -> None:
    recorder = CallRecorder(counters)
    quota = QuotaService(recorder, QuotaLimits(user_rpm=5), Clock())
    quota.admit("tenanta", "alice@example.com")
    quota.add_tokens("tenanta", "alice@example.com", 500)  # no token limit: not counted
    minute = QuotaService._windows(NOW)[0]
    assert [c[:2] for c in recorder.calls] == [("increment_if_below", f"tenanta#user#alice@example.com#rpm#{minute}")]


def test_concurrent_requests_are_never_over_admitted(counters) -> None:
    quota = QuotaService(counters, QuotaLimits(tenant_rpm=10), Clock())
    barrier = threading.Barrier(20)

    def attempt(i: int) -> bool:
        if i < 20:
            barrier.wait()
        try:
            quota.admit("tenanta", f"user{i}@example.com")
        except QuotaExceededError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=20) as pool:
        admitted = sum(pool.map(attempt, range(100)))
    assert admitted == 10


def test_api_answers_429_with_retry_after_and_a_clear_message(ops_client) -> None:
    api = ops_client(ScriptedChatModel(), clock=Clock(), quota_user_rpm=2)
    labels = {"tenant": "tenanta", "scope": "user", "kind": "rpm"}
    before = metric_value(api, "ragapi_quota_rejections_total", **labels)
    assert api.post("/api/v1/llm/rag", json=rag_body()).status_code == 200
    assert api.post("/api/v1/llm/rag/stream", json=rag_body()).status_code == 200
    for path in ("/api/v1/llm/rag", "/api/v1/llm/rag/stream"):
        response = api.post(path, json=rag_body())
        assert response.status_code == 429
        assert response.headers["retry-after"] == "46"
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["error"] == "quota_exceeded"
        assert (
            body["message"]
            == "Usage limit reached: the limit of 2 questions per minute for you. Try again in 46 seconds."
        )
    assert metric_value(api, "ragapi_quota_rejections_total", **labels) == before + 2


def test_api_token_quota_refuses_after_the_day_is_used_up(ops_client, stores) -> None:
    api = ops_client(ScriptedChatModel(), clock=Clock(), quota_user_tokens_per_day=10)
    events = parse_sse(api.post("/api/v1/llm/rag/stream", json=rag_body()).text)
    assert events[-1][0] == "done"
    assert stores.counters.get(f"tenanta#user#alice@example.com#tpd#{QuotaService._windows(NOW)[2]}") == 13
    response = api.post("/api/v1/llm/rag", json=rag_body())
    assert response.status_code == 429 and "daily limit of 10 model tokens" in response.json()["message"]
    assert int(response.headers["retry-after"]) > 3600


def test_other_tenant_is_403_before_quota(ops_client, stores) -> None:
    api = ops_client(ScriptedChatModel(), clock=Clock(), quota_user_rpm=1)
    other = rag_body(user_session_id=SESSION.replace("tenanta", "tenantb", 1))
    assert api.post("/api/v1/llm/rag", json=other).status_code == 403
    assert api.post("/api/v1/llm/rag", json=rag_body()).status_code == 200  # the 403 used no quota
