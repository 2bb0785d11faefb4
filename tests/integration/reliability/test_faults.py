"""Fault injection against real local servers: S3 (moto), DynamoDB Local, the fake Bedrock.

Each dependency fails in the ways production sees (down at start, down during a reload, refusing
connections, hanging, throttling, a stream cut midway, a corrupted upload), and the API must:
stay up, keep serving what it has, answer a JSON 503/504 with ``Retry-After`` where a retry helps,
and never store half a turn. Bedrock throttling/unavailable/in-stream exception/read timeout on
the first byte are in ``tests/integration/api/test_api_aws.py``; the web chat with the API down is
``tests/integration/webapp/test_webchat_browser.py::test_api_failure_shows_message_and_retry``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from prometheus_client import REGISTRY

from api.main import create_app
from rag.answer.models import make_chat_model
from rag.aws import make_client, make_resource
from rag.index.store import (
    DOCSTORE_FILE,
    INDEX_FILE,
    LATEST,
    MANIFEST_FILE,
    open_store,
    read_latest_version_id,
    write_index_version,
)
from rag.settings import load_settings
from tests.integration.api.conftest import CLAUDE, TITAN_V2, publish_titan_index, wait_until
from tests.integration.conftest import FAKE_CREDS, create_table, free_port
from tests.unit.api.fakes import parse_sse

pytestmark = pytest.mark.integration

SESSION = "tenanta:alice@example.com:6f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d10"
OTHER = "tenanta:bob@example.com:0b5e3c1e-4a8d-4c35-9a59-3f0f6d1b2c44"
ASK = {"q": "What is Amazon SageMaker?", "user_session_id": SESSION}


def _settings(**overrides):
    values = {
        "tenant_id": "tenanta",
        "aws_default_region": "us-east-1",
        "text2text_model_id": CLAUDE,
        "bedrock_max_attempts": 2,
        "index_poll_seconds": 0.2,
    }
    values.update(overrides)
    return load_settings(**values)


def _reload_failures() -> float:
    return REGISTRY.get_sample_value("ragapi_index_reload_failures_total") or 0.0


def _version(client: TestClient) -> str | None:
    return client.get("/readyz").json().get("index_version")


def _assert_503(response, error: str, retry_after: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error and response.json()["message"]
    assert response.headers["retry-after"] == retry_after
    assert "Traceback" not in response.text


# -- S3 ------------------------------------------------------------------------------------------


def test_s3_down_at_start_pod_unready_then_ready_when_s3_returns(fake_bedrock, aws_env, monkeypatch, sagemaker_docs):
    port = free_port()  # nothing listens here yet: S3 is down when the pod starts
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    settings = _settings(contextual_data_bucket="tenanta-docs")
    with TestClient(create_app(settings=settings)) as client:
        assert client.get("/healthz").status_code == 200  # alive: the kubelet must not restart it
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert "Could not connect" in ready.json()["message"] or "Connect" in ready.json()["message"]
        _assert_503(client.post("/api/v1/llm/rag", json=ASK), "index_not_ready", "10")
        assert client.post("/api/v1/llm/rag/stream", json=ASK).status_code == 503
        assert client.get("/readyz").status_code == 503  # still retrying, still alive

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()  # S3 comes back
        try:
            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", **FAKE_CREDS)
            s3.create_bucket(Bucket="tenanta-docs")
            version = publish_titan_index(
                open_store("s3://tenanta-docs/faiss_index/", s3_client=s3), sagemaker_docs[:10]
            )
            assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30)
            assert _version(client) == version
            assert client.post("/api/v1/llm/rag", json=ASK).status_code == 200
        finally:
            moto.stop()


@pytest.fixture
def own_moto():
    """A moto server of this test only (it is stopped and restarted mid-test)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    yield port
    server.stop()


def test_s3_failing_during_reload_old_index_keeps_serving(
    fake_bedrock, aws_env, monkeypatch, own_moto, fault_proxy, sagemaker_docs
):
    proxy = fault_proxy(own_moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{own_moto}", **FAKE_CREDS)  # the writer's own path
    s3.create_bucket(Bucket="tenanta-docs")
    store = open_store("s3://tenanta-docs/faiss_index/", s3_client=s3)
    v1 = publish_titan_index(store, sagemaker_docs[:20])
    rows = 20
    with TestClient(create_app(settings=_settings(contextual_data_bucket="tenanta-docs"))) as client:
        assert _version(client) == v1
        for mode in ("refuse", "blackhole"):
            failures = _reload_failures()
            connections = proxy.connections
            proxy.mode = mode
            proxy.drop_all()
            v2 = publish_titan_index(store, sagemaker_docs[: rows + 5])  # a new version the pod cannot fetch
            if mode == "refuse":
                assert wait_until(lambda f=failures: _reload_failures() >= f + 2, timeout=30)
            else:  # the poller is hanging on a read (the proxy holds its connection); requests must not
                assert wait_until(lambda c=connections: proxy.connections > c, timeout=30)
            assert client.get("/readyz").status_code == 200
            assert _version(client) == v1  # old index keeps serving
            answer = client.post("/api/v1/llm/rag", json={**ASK, "user_session_id": f"tenanta:a@b.c:{uuid.uuid4()}"})
            assert answer.status_code == 200, answer.text
            assert all(s["row"] < rows for s in answer.json()["sources"])  # answered from the old version
            proxy.mode = "pass"
            proxy.drop_all()
            assert wait_until(lambda v=v2: _version(client) == v, timeout=90), (
                f"{mode}: never reloaded after S3 returned"
            )
            v1, rows = v2, rows + 5


def _copy_version(store, src: str, dst: str, *, skip=(), mutate=None) -> None:
    for name in (INDEX_FILE, DOCSTORE_FILE, MANIFEST_FILE):
        if name in skip:
            continue
        data = store.read(f"v/{src}/{name}")
        if mutate and name in mutate:
            data = mutate[name](data)
        store.write(f"v/{dst}/{name}", data)


def _flip_byte(data: bytes) -> bytes:
    return data[:-5] + bytes([data[-5] ^ 0x01]) + data[-4:]


def _other_tenant(data: bytes) -> bytes:
    manifest = json.loads(data)
    manifest["tenant"] = "tenantb"
    return json.dumps(manifest).encode()


def _docstore_swapped_with_matching_checksum(store, version: str):
    """A writer bug: docstore lines reordered and the manifest's checksum recomputed."""

    def mutate_manifest(data: bytes) -> bytes:
        manifest = json.loads(data)
        lines = store.read(f"v/{version}/{DOCSTORE_FILE}").splitlines(keepends=True)
        manifest["files"][DOCSTORE_FILE] = hashlib.sha256(b"".join(lines[:-1])).hexdigest()
        return json.dumps(manifest).encode()

    return {
        DOCSTORE_FILE: lambda data: b"".join(data.splitlines(keepends=True)[:-1]),  # one line short
        MANIFEST_FILE: mutate_manifest,
    }


def test_corrupted_or_half_written_versions_are_refused_old_keeps_serving(
    fake_bedrock, aws_env, monkeypatch, moto_endpoint, s3_client, sagemaker_docs
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3_client.create_bucket(Bucket="tenanta-docs")
    store = open_store("s3://tenanta-docs/faiss_index/", s3_client=s3_client)
    v1 = publish_titan_index(store, sagemaker_docs[:20])
    bad = {
        "half-written: no docstore": {"skip": (DOCSTORE_FILE,)},
        "half-written: no index": {"skip": (INDEX_FILE,)},
        "half-written: no manifest": {"skip": (MANIFEST_FILE,)},
        "bit flip in index.faiss": {"mutate": {INDEX_FILE: _flip_byte}},
        "bit flip in docstore": {"mutate": {DOCSTORE_FILE: _flip_byte}},
        "other tenant's manifest": {"mutate": {MANIFEST_FILE: _other_tenant}},
        "truncated manifest": {"mutate": {MANIFEST_FILE: lambda d: d[: len(d) // 2]}},
        "docstore short, checksum matching": {"mutate": _docstore_swapped_with_matching_checksum(store, v1)},
    }
    with TestClient(create_app(settings=_settings(contextual_data_bucket="tenanta-docs"))) as client:
        assert _version(client) == v1
        for n, (name, how) in enumerate(bad.items()):
            failures = _reload_failures()
            broken = f"20991231T2359{n:02d}Z-0000000{n}"
            _copy_version(store, v1, broken, **how)
            store.write(LATEST, broken.encode())
            assert wait_until(lambda f=failures: _reload_failures() >= f + 1, timeout=20), name
            assert client.get("/readyz").status_code == 200, name
            assert _version(client) == v1, name
            assert client.post("/api/v1/llm/rag", json=ASK).status_code == 200, name
        for garbage in (b"", b"../../../etc/passwd", b"\xff\xfe", b"20991231T235959Z-ffffffff"):
            failures = _reload_failures()
            store.write(LATEST, garbage)
            assert wait_until(lambda f=failures: _reload_failures() >= f + 1, timeout=20), garbage
            assert _version(client) == v1
        v2 = publish_titan_index(store, sagemaker_docs[:21])  # a good version after the bad ones
        assert wait_until(lambda: _version(client) == v2, timeout=20)


class _FailingStore:
    """Wraps a store; the write of ``fail_on`` raises (the job dies or S3 fails mid-upload)."""

    def __init__(self, inner, fail_on: str) -> None:
        self.inner, self.fail_on = inner, fail_on
        self.uri = inner.uri

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, key: str, data: bytes) -> None:
        if key.endswith(self.fail_on):
            raise ConnectionError(f"S3 went away while uploading {key}")
        self.inner.write(key, data)


@pytest.mark.parametrize("fail_on", [INDEX_FILE, DOCSTORE_FILE, MANIFEST_FILE, LATEST])
def test_upload_failing_midway_leaves_latest_unchanged(s3_client, sagemaker_docs, fail_on):
    import numpy as np

    s3_client.create_bucket(Bucket="tenanta-docs")
    store = open_store("s3://tenanta-docs/faiss_index/", s3_client=s3_client)
    v1 = publish_titan_index(store, sagemaker_docs[:5])
    docs = sagemaker_docs[:6]
    with pytest.raises(ConnectionError):
        write_index_version(
            _FailingStore(store, fail_on),
            tenant="tenanta",
            embedding_model=TITAN_V2,
            vectors=np.eye(6, 16, dtype=np.float32),
            documents=docs,
            sources=[],
        )
    assert read_latest_version_id(store) == v1


# -- DynamoDB ------------------------------------------------------------------------------------


@pytest.fixture
def ddb_behind_proxy(dynamodb_local, fault_proxy, monkeypatch):
    table = f"chathistory-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb_local, table, "SessionId", "expires_at")
    proxy = fault_proxy(int(dynamodb_local.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)
    direct = boto3.resource("dynamodb", endpoint_url=dynamodb_local, **FAKE_CREDS).Table(table)
    return proxy, table, direct


def _turns(direct_table, session: str) -> list[dict]:
    item = direct_table.get_item(Key={"SessionId": session}, ConsistentRead=True).get("Item") or {}
    return item.get("Turns", [])


def test_dynamodb_outage_is_a_bounded_503_and_history_never_holds_half_a_turn(
    fake_bedrock, aws_env, tmp_path, sagemaker_docs, ddb_behind_proxy, serve
):
    proxy, table, direct = ddb_behind_proxy
    index = tmp_path / "index"
    publish_titan_index(open_store(str(index)), sagemaker_docs[:20])
    app = create_app(settings=_settings(index_uri=str(index), chathistory_table=table, index_poll_seconds=0))
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/api/v1/llm/rag", json=ASK).status_code == 200
        assert len(_turns(direct, SESSION)) == 1

        # 1. DynamoDB refuses connections: a quick, clear 503 on every route; the model is not called
        proxy.mode = "refuse"
        proxy.drop_all()
        calls_before = len(fake_bedrock.requests)
        started = time.monotonic()
        _assert_503(http.post("/api/v1/llm/rag", json=ASK), "history_unavailable", "2")
        assert time.monotonic() - started < 15, "retries against a down DynamoDB must be bounded"
        _assert_503(http.post("/api/v1/llm/rag/stream", json=ASK), "history_unavailable", "2")
        _assert_503(http.get(f"/api/v1/sessions/{SESSION}/messages"), "history_unavailable", "2")
        assert not [r for r in fake_bedrock.requests[calls_before:] if r["op"].startswith("converse")]

        # 2. DynamoDB goes down while an answer streams: the answer is not saved, and the client is told
        proxy.mode = "pass"
        fake_bedrock.config.tokens_per_second = 8
        fake_bedrock.config.reply_words = 12
        lines: list[str] = []
        first = threading.Event()

        def stream() -> None:
            with http.stream("POST", "/api/v1/llm/rag/stream", json=ASK) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    if line.startswith("event: token"):
                        first.set()

        worker = threading.Thread(target=stream)
        worker.start()
        assert first.wait(20)
        proxy.mode = "refuse"
        proxy.drop_all()
        worker.join(60)
        events = parse_sse("\n".join(lines) + "\n\n")
        names = [n for n, _ in events]
        assert names[-2:] == ["sources", "error"] and "done" not in names, names
        assert events[-1][1]["error"] == "history_unavailable" and events[-1][1]["retry_after"] == 2

        # 3. back up: exactly the one complete turn from before; a retry stores a complete second turn
        proxy.mode = "pass"
        fake_bedrock.config.tokens_per_second = None
        turns = _turns(direct, SESSION)
        assert len(turns) == 1 and turns[0]["answer"] and turns[0]["question"] == ASK["q"]
        assert http.post("/api/v1/llm/rag", json=ASK).status_code == 200
        turns = _turns(direct, SESSION)
        assert len(turns) == 2 and all(t["answer"] and t["question"] for t in turns)


def test_hung_dynamodb_is_a_quick_503(fake_bedrock, aws_env, tmp_path, sagemaker_docs, ddb_behind_proxy, serve):
    proxy, table, _ = ddb_behind_proxy
    index = tmp_path / "index"
    publish_titan_index(open_store(str(index)), sagemaker_docs[:20])
    # production defaults for timeouts and attempts
    settings = load_settings(
        tenant_id="tenanta",
        aws_default_region="us-east-1",
        text2text_model_id=CLAUDE,
        index_uri=str(index),
        chathistory_table=table,
        index_poll_seconds=0,
    )
    server = serve(create_app(settings=settings))
    attempts = settings.aws_data_max_attempts
    # botocore's budget for one call: every attempt waits the read timeout (the connection is
    # accepted), plus the standard retry mode's backoff between attempts, at most
    # rand * min(2**i, 20) s for i = 0 .. attempts - 2 (botocore.retries.standard.ExponentialBackoff)
    per_attempt = settings.aws_data_connect_timeout_seconds + settings.aws_data_read_timeout_seconds
    budget = attempts * per_attempt + sum(min(2**i, 20) for i in range(attempts - 1))
    proxy.mode = "blackhole"  # connections accepted, never answered
    connections = proxy.connections
    try:
        with httpx.Client(base_url=server.url, timeout=budget + 30) as http:
            started = time.monotonic()
            response = http.post("/api/v1/llm/rag", json=ASK)
            elapsed = time.monotonic() - started
        _assert_503(response, "history_unavailable", "2")
        print(f"hung DynamoDB: 503 after {elapsed:.2f} s (budget {budget:.2f} s, {attempts} attempts)")
        # bounded by the configured AWS_DATA_* timeouts and attempts (+1 s for the request's own work),
        # and it really waited for each attempt's read timeout (not failed for another reason)
        assert attempts * settings.aws_data_read_timeout_seconds <= elapsed <= budget + 1.0, (elapsed, budget)
        assert proxy.connections - connections == attempts  # one connection per attempt, no more
    finally:
        proxy.close()  # reset the hung connections so the server thread can finish


class _ThrottleDynamoDB:
    """A ``before-send`` hook on the real client: the next ``remaining`` calls of ``operation`` get
    HTTP 400 ``ProvisionedThroughputExceededException`` (botocore's retry handler sees it as
    throttling and backs off, as with real DynamoDB)."""

    def __init__(self, client, operation: str, remaining: int) -> None:
        self.remaining, self.calls = remaining, 0
        client.meta.events.register(f"before-send.dynamodb.{operation}", self)

    def __call__(self, request, **kwargs):
        self.calls += 1
        if self.remaining == 0:
            return None
        self.remaining -= 1
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }
        ).encode()

        class Raw:
            def stream(self, **_):
                yield body

        return AWSResponse(request.url, 400, {"x-amzn-RequestId": "throttled"}, Raw())


def test_dynamodb_throttling_bounded_retries_then_503_nothing_saved(
    fake_bedrock, aws_env, tmp_path, sagemaker_docs, dynamodb_local, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local)
    table = f"chathistory-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb_local, table, "SessionId", "expires_at")
    index = tmp_path / "index"
    publish_titan_index(open_store(str(index)), sagemaker_docs[:20])
    settings = _settings(index_uri=str(index), chathistory_table=table, bedrock_max_attempts=3, index_poll_seconds=0)
    resource = make_resource("dynamodb", settings)
    with TestClient(create_app(settings=settings, dynamodb_resource=resource)) as client:
        # throttled twice, then fine: the retries absorb it, the user sees nothing
        hook = _ThrottleDynamoDB(resource.meta.client, "UpdateItem", remaining=2)
        assert client.post("/api/v1/llm/rag", json=ASK).status_code == 200
        assert hook.calls == 3
        # throttled for good: exactly max_attempts tries, then a 503 (stream: sources, then error)
        hook.remaining, hook.calls = -1, 0
        _assert_503(client.post("/api/v1/llm/rag", json=ASK), "history_unavailable", "2")
        assert hook.calls == 3
        events = parse_sse(client.post("/api/v1/llm/rag/stream", json=ASK).text)
        assert [n for n, _ in events][-2:] == ["sources", "error"]
        assert events[-1][1]["error"] == "history_unavailable"
        hook.remaining = 0
        messages = client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"]
        assert len(messages) == 2  # only the first, complete turn


# -- Bedrock -------------------------------------------------------------------------------------


def _app_with_model_via(settings, endpoint: str):
    """Chat model through ``endpoint`` (a fault proxy); embeddings straight to the fake."""
    client = make_client("bedrock-runtime", settings, endpoint_url=endpoint)
    return create_app(settings=settings, chat_model=make_chat_model(settings, bedrock_client=client))


@pytest.fixture
def local_index(tmp_path, sagemaker_docs):
    root = tmp_path / "index"
    publish_titan_index(open_store(str(root)), sagemaker_docs[:20])
    return root


@pytest.mark.parametrize("cut_after", [600, 1500])
def test_bedrock_stream_cut_midway_is_503_and_nothing_saved(
    fake_bedrock, aws_env, tmp_path, local_index, fault_proxy, cut_after
):
    fake_bedrock.config.reply_words = 200  # far more bytes than the cut lets through
    proxy = fault_proxy(int(fake_bedrock.endpoint.rsplit(":", 1)[1]))
    proxy.cut_response_after = cut_after  # the TCP connection closes in the middle of the event stream
    settings = _settings(index_uri=str(local_index), history_url=f"sqlite:///{tmp_path}/h.db", index_poll_seconds=0)
    with TestClient(_app_with_model_via(settings, proxy.endpoint)) as client:
        response = client.post("/api/v1/llm/rag", json=ASK)
        assert response.status_code in (503, 504), response.text
        assert response.json()["error"] in ("model_unavailable", "model_timeout")
        if response.status_code == 503:
            assert response.headers["retry-after"] == "10"
        events = parse_sse(client.post("/api/v1/llm/rag/stream", json=ASK).text)
        names = [n for n, _ in events]
        assert names[-1] == "error" and "done" not in names and "sources" not in names, names
        assert events[-1][1]["status"] in (503, 504)
        assert client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []


def test_bedrock_stalls_midstream_is_504_and_nothing_saved(fake_bedrock, aws_env, tmp_path, local_index):
    fake_bedrock.config.reply_words = 6
    fake_bedrock.config.tokens_per_second = 0.5  # 2 s between tokens > read timeout
    settings = _settings(
        index_uri=str(local_index),
        history_url=f"sqlite:///{tmp_path}/h.db",
        bedrock_read_timeout_seconds=0.7,
        index_poll_seconds=0,
    )
    with TestClient(create_app(settings=settings)) as client:
        events = parse_sse(client.post("/api/v1/llm/rag/stream", json=ASK).text)
        names = [n for n, _ in events]
        assert names[0] == "token" and names[-1] == "error" and "done" not in names, names
        assert events[-1][1]["status"] == 504 and events[-1][1]["error"] == "model_timeout"
        response = client.post("/api/v1/llm/rag", json=ASK)
        assert response.status_code == 504 and response.json()["error"] == "model_timeout"
        assert client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] == []


def test_bedrock_throttling_retries_are_bounded(fake_bedrock, aws_env, tmp_path, local_index):
    settings = _settings(
        index_uri=str(local_index),
        history_url=f"sqlite:///{tmp_path}/h.db",
        bedrock_max_attempts=3,
        index_poll_seconds=0,
    )

    def model_calls() -> int:
        return len([r for r in fake_bedrock.requests if r["op"] == "converse-stream"])

    with TestClient(create_app(settings=settings)) as client:
        fake_bedrock.config.throttle_requests = 2  # absorbed by the retries
        assert client.post("/api/v1/llm/rag", json=ASK).status_code == 200
        fake_bedrock.config.throttle_requests = -1
        before = model_calls()
        started = time.monotonic()
        response = client.post("/api/v1/llm/rag", json={**ASK, "user_session_id": OTHER})
        _assert_503(response, "model_throttled", "5")
        assert model_calls() - before == 3  # exactly BEDROCK_MAX_ATTEMPTS, then give up
        assert time.monotonic() - started < 20
        fake_bedrock.config.throttle_requests = 0
        assert client.get(f"/api/v1/sessions/{OTHER}/messages").json()["messages"] == []
