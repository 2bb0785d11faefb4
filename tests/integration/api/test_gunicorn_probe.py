"""The API under gunicorn with uvicorn workers, probed the way the kubelet does (exec probes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rag.index.store import open_store
from tests.conftest import REPO_ROOT
from tests.integration.api.conftest import SESSION, publish_titan_index, wait_until
from tests.integration.conftest import free_port
from tests.support.gunicorn import gunicorn_env, kill_gunicorn, start_gunicorn
from tests.unit.api.fakes import parse_sse

pytestmark = pytest.mark.integration


def _probe(path: str, port: int) -> int:
    """Run ``python -m api.probe <path>`` as the kubelet would (exit code; 0 = healthy)."""
    env = {"PATH": os.environ.get("PATH", ""), "RAGAPI_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "api.probe", path], cwd=REPO_ROOT, env=env, capture_output=True, timeout=10
    ).returncode


@pytest.fixture
def gunicorn_api(tmp_path: Path, fake_bedrock):
    """gunicorn -c api/gunicorn.conf.py api.main:app, 2 workers, empty index dir (not ready yet)."""
    port = free_port()
    index = tmp_path / "index"
    env = gunicorn_env(
        tmp_path, index, fake_bedrock.endpoint, port, INDEX_POLL_SECONDS="0.3", GUNICORN_GRACEFUL_TIMEOUT="10"
    )
    proc = start_gunicorn(tmp_path, env)
    try:
        yield proc, port, index
    finally:
        kill_gunicorn(proc)


def test_gunicorn_probes_streaming_metrics_and_graceful_shutdown(gunicorn_api, sagemaker_docs, tmp_path):
    proc, port, index = gunicorn_api
    assert wait_until(lambda: _probe("/healthz", port) == 0, timeout=60), (tmp_path / "gunicorn.log").read_text()
    # alive but not ready: nothing published yet
    assert _probe("/readyz", port) == 1
    version = publish_titan_index(open_store(str(index)), sagemaker_docs[:20])
    # both workers poll LATEST; require a run of successes so each has loaded it
    assert wait_until(lambda: all(_probe("/readyz", port) == 0 for _ in range(6)), timeout=60)

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/readyz").json()["index_version"] == version
        response = http.post(
            "/api/v1/llm/rag/stream",
            json={"q": "What is Amazon SageMaker?", "user_session_id": SESSION},
            headers={"X-Request-ID": "probe-test-1"},
        )
        assert response.headers["x-request-id"] == "probe-test-1"
        names = [n for n, _ in parse_sse(response.text)]
        assert names[-2:] == ["sources", "done"] and "token" in names
        assert len(http.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"]) == 2
        metrics = http.get("/metrics").text
    assert 'ragapi_requests_total{method="POST",route="/api/v1/llm/rag/stream",status="200"}' in metrics
    # multiprocess mode: one index_info series per live worker (pid label)
    info_lines = [
        line for line in metrics.splitlines() if line.startswith("ragapi_index_info{") and line.endswith(" 1.0")
    ]
    assert len({line.split('pid="')[1].split('"')[0] for line in info_lines}) == 2

    # not reachable from outside loopback: the bind is 127.0.0.1 only
    log = (tmp_path / "gunicorn.log").read_text()
    assert f"Listening at: http://127.0.0.1:{port}" in log

    proc.send_signal(signal.SIGTERM)  # what the kubelet sends on pod deletion
    assert proc.wait(timeout=30) == 0
    assert _probe("/healthz", port) == 1
