"""Session history routes, health, readiness, metrics and index hot reload (local directory store)."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from api import probe
from tests.unit.api.fakes import FAQ, OTHER_TENANT_SESSION, SESSION, ScriptedChatModel, publish_index, rag_body


def test_history_get_and_delete(make_client):
    client = make_client(ScriptedChatModel(replies=["First answer.", "cond", "Second answer."]))
    client.post("/api/v1/llm/rag", json=rag_body("What is Amazon EMR?"))
    client.post("/api/v1/llm/rag", json=rag_body("Does it support Presto?"))
    body = client.get(f"/api/v1/sessions/{SESSION}/messages").json()
    assert body["session_id"] == SESSION
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert body["messages"][0]["content"] == "What is Amazon EMR?"
    assert body["messages"][1]["content"] == "First answer."
    assert len(body["messages"][1]["sources"]) == 3 and "sources" not in body["messages"][0]
    assert all(m["created_at"].endswith("+00:00") for m in body["messages"])
    assert body["messages"][0]["created_at"] <= body["messages"][1]["created_at"]
    assert client.delete(f"/api/v1/sessions/{SESSION}/messages").status_code == 204
    assert client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []
    assert client.delete(f"/api/v1/sessions/{SESSION}/messages").status_code == 204  # idempotent


def test_history_routes_refuse_other_tenants_and_bad_ids(make_client):
    client = make_client(ScriptedChatModel())
    for response in (
        client.get(f"/api/v1/sessions/{OTHER_TENANT_SESSION}/messages"),
        client.delete(f"/api/v1/sessions/{OTHER_TENANT_SESSION}/messages"),
    ):
        assert response.status_code == 403
        assert response.json() == {"error": "forbidden", "message": "this session belongs to another tenant"}
    bad = client.get("/api/v1/sessions/tenanta:alice@example.com:not-a-uuid/messages")
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"


def test_health_ready_and_metrics(make_client):
    client = make_client(ScriptedChatModel())
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["tenant"] == "tenanta" and body["chunks"] == len(FAQ)
    assert body["embedding_model"] == "fake-embedding-32" and body["index_version"]
    client.post("/api/v1/llm/rag/stream", json=rag_body())
    text = client.get("/metrics").text
    for name in (
        "ragapi_requests_total",
        "ragapi_request_duration_seconds_bucket",
        "ragapi_time_to_first_token_seconds_bucket",
        "ragapi_tokens_total",
        "ragapi_retrieval_duration_seconds_bucket",
        "ragapi_index_info",
        "ragapi_index_reload_failures_total",
    ):
        assert name in text, name
    assert 'route="/api/v1/llm/rag/stream"' in text
    assert f'version="{body["index_version"]}"' in text


def test_not_ready_without_index_then_ready_after_publish(make_client, tmp_path):
    empty = tmp_path / "empty-index"
    client = make_client(ScriptedChatModel(), index_root=empty, index_poll_seconds=0.05)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready" and "LATEST" in ready.json()["message"]
    answer = client.post("/api/v1/llm/rag", json=rag_body())
    assert answer.status_code == 503 and answer.json()["error"] == "index_not_ready"
    assert answer.headers["retry-after"]
    assert client.get("/healthz").status_code == 200  # alive while not ready
    version = publish_index(empty)
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/readyz").json()["index_version"] == version
    assert client.post("/api/v1/llm/rag", json=rag_body()).status_code == 200


def test_hot_reload_swaps_index_and_failed_reload_keeps_old(make_client, index_dir):
    client = make_client(ScriptedChatModel(), index_poll_seconds=0.05)
    first = client.get("/readyz").json()["index_version"]
    failures_before = REGISTRY.get_sample_value("ragapi_index_reload_failures_total")
    # a broken LATEST: reload fails, the old version keeps serving
    (index_dir / "LATEST").write_text("20990101T000000Z-deadbeef")
    deadline = time.monotonic() + 30
    while (
        REGISTRY.get_sample_value("ragapi_index_reload_failures_total") == failures_before
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert REGISTRY.get_sample_value("ragapi_index_reload_failures_total") > failures_before
    assert client.get("/readyz").json()["index_version"] == first
    assert client.post("/api/v1/llm/rag", json=rag_body()).status_code == 200
    # a new good version: swapped in without restart
    second = publish_index(index_dir, rows=[*FAQ, ("What is new?", "A brand new FAQ row.")])
    while client.get("/readyz").json()["index_version"] != second and time.monotonic() < deadline:
        time.sleep(0.05)
    ready = client.get("/readyz").json()
    assert ready["index_version"] == second and ready["chunks"] == len(FAQ) + 1


def test_probe_refuses_unknown_paths(capsys):
    assert probe.main(["/admin"]) == 1
    assert "unknown path" in capsys.readouterr().err


def test_import_does_nothing_heavy():
    """``api.main`` imports with no configuration at all (settings are read by the lifespan)."""
    import importlib

    import api.main

    importlib.reload(api.main)
    assert api.main.app.title == "Tenant RAG API"
    assert not hasattr(api.main.app.state, "rag")


def test_invalid_settings_stop_start_up_with_a_clear_error(monkeypatch):
    import pytest
    from fastapi.testclient import TestClient

    from api.main import create_app
    from rag.settings import SettingsError

    monkeypatch.setenv("TENANT_ID", "Not_Valid")
    with pytest.raises(SettingsError, match="TENANT_ID"), TestClient(create_app()):
        pass
