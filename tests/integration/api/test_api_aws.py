"""The API against local AWS stand-ins: fake Bedrock (Converse/ConverseStream/Titan), moto S3,
DynamoDB Local; errors from each mapped to 503/504; hot reload; client disconnect."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.main import create_app
from rag.index.store import open_store
from rag.settings import load_settings
from tests.integration.api.conftest import CLAUDE, SESSION, publish_titan_index, wait_until
from tests.integration.conftest import FAKE_CREDS, create_table, free_port
from tests.unit.api.fakes import parse_sse

pytestmark = pytest.mark.integration


def _bedrock_settings(**overrides):
    values = {
        "tenant_id": "tenanta",
        "aws_default_region": "us-east-1",
        "text2text_model_id": CLAUDE,
        "bedrock_max_attempts": 1,
        "index_poll_seconds": 0,
    }
    values.update(overrides)
    return load_settings(**values)


def _stream_requests(fake):
    return [r for r in fake.requests if r["op"] == "converse-stream"]


def _model_requests(fake):
    return [r for r in fake.requests if r["op"] in ("converse", "converse-stream")]


def test_bedrock_s3_dynamodb_end_to_end_with_hot_reload(
    fake_bedrock, s3_client, moto_endpoint, dynamodb_local, monkeypatch, sagemaker_docs
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local)
    s3_client.create_bucket(Bucket="tenanta-docs")
    store = open_store("s3://tenanta-docs/faiss_index/", s3_client=s3_client)
    v1 = publish_titan_index(store, sagemaker_docs[:40])
    table = f"chathistory-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb_local, table, "SessionId", "expires_at")
    settings = _bedrock_settings(
        contextual_data_bucket="tenanta-docs",
        chathistory_table=table,
        index_poll_seconds=0.2,
        history_ttl_seconds=3600,
        stream_flush_seconds=0,  # every delta its own event (counted below)
    )
    fake_bedrock.config.reply_words = 12
    # 50 ms apart: each delta is its own token event, unless this (shared, loaded) machine stalls the loop
    # for longer, when deltas that piled up travel together (never lost: the joined text is checked)
    fake_bedrock.config.tokens_per_second = 20
    with TestClient(create_app(settings=settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["index_version"] == v1 and ready["embedding_model"] == "amazon.titan-embed-text-v2:0"

        # 1. streamed answer through the real ChatBedrockConverse -> ConverseStream (event-stream framing)
        q1 = "What is Amazon SageMaker?"
        response = client.post("/api/v1/llm/rag/stream", json={"q": q1, "user_session_id": SESSION, "topK": 40})
        events = parse_sse(response.text)
        names = [n for n, _ in events]
        assert names[-2:] == ["sources", "done"] and 8 <= names.count("token") <= 12
        assert "".join(d["text"] for n, d in events if n == "token") == events[-1][1]["answer"]
        assert len(events[-1][1]["answer"].split()) == 12
        done = events[-1][1]
        assert done["model_id"] == CLAUDE
        assert done["usage"]["output_tokens"] == 12 and done["usage"]["input_tokens"] > 0  # Bedrock's counts
        answer_call = _stream_requests(fake_bedrock)[-1]
        assert answer_call["model"] == CLAUDE
        assert answer_call["body"]["inferenceConfig"] == {"temperature": 0.1, "maxTokens": 512, "topP": 0.9}
        assert answer_call["body"]["additionalModelRequestFields"] == {"top_k": 40}
        assert any(r["op"] == "invoke" and r["model"] == "amazon.titan-embed-text-v2:0" for r in fake_bedrock.requests)
        assert len(events[-2][1]["sources"]) == 3 and all(
            s["source"].endswith(".csv") for s in events[-2][1]["sources"]
        )

        # 2. follow-up: the condense call sees the history (two model calls)
        before = len(_model_requests(fake_bedrock))
        follow = client.post(
            "/api/v1/llm/rag", json={"q": "Which regions is it available in?", "user_session_id": SESSION}
        )
        assert follow.status_code == 200, follow.text
        calls = _model_requests(fake_bedrock)[before:]
        # the condense call is one non-streaming Converse call; the answer streams
        assert [c["op"] for c in calls] == ["converse", "converse-stream"]
        condense_text = json.dumps(calls[0]["body"]["messages"])
        assert q1 in condense_text

        # 3. history in DynamoDB: one item, two turns, TTL attribute
        messages = client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * 2
        item = (
            boto3.resource("dynamodb", endpoint_url=dynamodb_local, **FAKE_CREDS)
            .Table(table)
            .get_item(Key={"SessionId": SESSION})["Item"]
        )
        assert len(item["Turns"]) == 2
        assert time.time() + 3500 < int(item["expires_at"]) <= time.time() + 3600

        # 4. hot reload: a new version on S3 is picked up without restart
        extra = [*sagemaker_docs[:40], sagemaker_docs[100]]
        v2 = publish_titan_index(store, extra)
        assert wait_until(lambda: client.get("/readyz").json()["index_version"] == v2)
        other = f"tenanta:alice@example.com:{uuid.uuid4()}"
        body = client.post(
            "/api/v1/llm/rag", json={"q": sagemaker_docs[100].metadata["title"], "user_session_id": other}
        ).json()
        assert 100 in [s["row"] for s in body["sources"]]

        # 5. clear
        assert client.delete(f"/api/v1/sessions/{SESSION}/messages").status_code == 204
        assert client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []


@pytest.fixture
def local_titan_index(tmp_path, sagemaker_docs):
    root = tmp_path / "index"
    publish_titan_index(open_store(str(root)), sagemaker_docs[:30])
    return root


@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
def test_bedrock_throttling_is_503_with_retry_after(fake_bedrock, aws_env, local_titan_index, tmp_path, route):
    settings = _bedrock_settings(index_uri=str(local_titan_index), history_url=f"sqlite:///{tmp_path}/h.db")
    with TestClient(create_app(settings=settings)) as client:
        fake_bedrock.config.throttle_requests = -1  # every model call: HTTP 429 ThrottlingException
        response = client.post(route, json={"q": "What is SageMaker?", "user_session_id": SESSION})
        if route.endswith("stream"):
            events = parse_sse(response.text)
            assert events == [
                (
                    "error",
                    {
                        "status": 503,
                        "error": "model_throttled",
                        "message": "The language model is busy (throttled); retry later.",
                        "retry_after": 5,
                    },
                )
            ]
        else:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"] == "model_throttled"
        assert client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []
        fake_bedrock.config.throttle_requests = 0
        assert (
            client.post("/api/v1/llm/rag", json={"q": "What is SageMaker?", "user_session_id": SESSION}).status_code
            == 200
        )


def test_bedrock_unavailable_mid_stream_failure_and_timeout(fake_bedrock, aws_env, local_titan_index, tmp_path):
    settings = _bedrock_settings(
        index_uri=str(local_titan_index),
        history_url=f"sqlite:///{tmp_path}/h.db",
        bedrock_read_timeout_seconds=0.5,
        stream_flush_seconds=0,
    )
    body = {"q": "What is SageMaker?", "user_session_id": SESSION}
    with TestClient(create_app(settings=settings)) as client:
        fake_bedrock.config.error_requests = -1  # 503 ServiceUnavailableException
        response = client.post("/api/v1/llm/rag", json=body)
        assert response.status_code == 503 and response.json()["error"] == "model_unavailable"
        assert response.headers["retry-after"] == "10"
        fake_bedrock.config.error_requests = 0

        fake_bedrock.config.fail_stream_after = 3  # in-stream throttlingException after 3 deltas
        fake_bedrock.config.tokens_per_second = 100
        events = parse_sse(client.post("/api/v1/llm/rag/stream", json=body).text)
        assert [n for n, _ in events] == ["token"] * 3 + ["error"]
        assert events[-1][1]["status"] == 503 and events[-1][1]["retry_after"] == 5
        fake_bedrock.config.fail_stream_after = None

        fake_bedrock.config.ttft_seconds = 2.0  # > read timeout 0.5 s
        response = client.post("/api/v1/llm/rag", json=body)
        assert response.status_code == 504 and response.json()["error"] == "model_timeout"
        assert "Traceback" not in response.text
        assert client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []


def test_dynamodb_unreachable_is_503(fake_bedrock, aws_env, local_titan_index, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{free_port()}")  # nothing listens
    settings = _bedrock_settings(index_uri=str(local_titan_index), chathistory_table="chathistory")
    with TestClient(create_app(settings=settings)) as client:
        response = client.post("/api/v1/llm/rag", json={"q": "What is SageMaker?", "user_session_id": SESSION})
        assert response.status_code == 503
        assert response.json() == {
            "error": "history_unavailable",
            "message": "Chat history is unavailable; try again shortly.",
        }
        assert client.get(f"/api/v1/sessions/{SESSION}/messages").status_code == 503
        assert not [r for r in fake_bedrock.requests if r["op"].startswith("converse")]


def test_s3_unreachable_at_start_then_ready(
    fake_bedrock, aws_env, monkeypatch, moto_endpoint, s3_client, sagemaker_docs
):
    """The app starts unready when S3 has no index (or is unreachable), then becomes ready."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3_client.create_bucket(Bucket="tenanta-late")
    settings = _bedrock_settings(contextual_data_bucket="tenanta-late", index_poll_seconds=0.2)
    with TestClient(create_app(settings=settings)) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        version = publish_titan_index(
            open_store("s3://tenanta-late/faiss_index/", s3_client=s3_client), sagemaker_docs[:5]
        )
        assert wait_until(lambda: client.get("/readyz").status_code == 200)
        assert client.get("/readyz").json()["index_version"] == version


def test_client_disconnect_mid_stream_saves_nothing(fake_bedrock, aws_env, local_titan_index, tmp_path, serve):
    settings = _bedrock_settings(index_uri=str(local_titan_index), history_url=f"sqlite:///{tmp_path}/h.db")
    fake_bedrock.config.tokens_per_second = 20
    fake_bedrock.config.reply_words = 200  # ~10 s of tokens: the client leaves long before the end
    server = serve(create_app(settings=settings))
    route_done = {"route": "/api/v1/llm/rag/stream", "method": "POST", "status": "200"}
    finished_before = REGISTRY.get_sample_value("ragapi_requests_total", route_done) or 0.0
    with (
        httpx.Client(base_url=server.url, timeout=30) as http,
        http.stream(
            "POST", "/api/v1/llm/rag/stream", json={"q": "What is SageMaker?", "user_session_id": SESSION}
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("event: token"):
                break  # hang up after the first token
    # the server notices the disconnect and ends the request (cancelling the chain)
    assert wait_until(lambda: (REGISTRY.get_sample_value("ragapi_requests_total", route_done) or 0) > finished_before)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []
