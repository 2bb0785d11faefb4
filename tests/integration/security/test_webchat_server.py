"""The web chat's own server (Streamlit on uvicorn), attacked with raw sockets: oversize websocket
handshakes must be answered and closed, not left hanging; internal endpoints are off where
Streamlit lets them be turned off.

Starts ``python -m webapp.server`` (the pod's command) and, for comparison, plain
``streamlit run webapp/app.py`` (the command before the fix), both in ``AUTH_MODE=dev``.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.integration.conftest import free_port
from tests.support.processes import stop_process
from webapp.server import install_handshake_fix, uvicorn_answers_refused_handshakes

LAYER = "web chat server (raw socket)"
#: How long a test waits for the server's answer before calling the connection hung, in seconds.
ANSWER_DEADLINE_SECONDS = 15.0


def _start(tmp_path: Path, argv: list[str], name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TENANT_ID": "tenanta",
        "AUTH_MODE": "dev",
        "SESSIONS_URL": f"sqlite:///{tmp_path / 'sessions.db'}",
        "RAG_API_URL": "http://127.0.0.1:9",
        "EMBEDDINGS_PROVIDER": "local",
        "LLM_PROVIDER": "extractive",
    }
    env.pop("WEBSOCKETS_MAX_LINE_LENGTH", None)
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [*argv, "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"{name} did not become healthy")


@pytest.fixture(scope="module")
def webchat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``python -m webapp.server`` (the pod's entry point); yields its port."""
    proc, port = _start(tmp_path_factory.mktemp("webchat"), [sys.executable, "-m", "webapp.server"], "fixed")
    yield port
    stop_process(proc)


@pytest.fixture(scope="module")
def plain_streamlit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``streamlit run webapp/app.py`` without the launcher: the behaviour before the fix."""
    argv = [sys.executable, "-m", "streamlit", "run", "webapp/app.py", "--server.headless", "true"]
    proc, port = _start(tmp_path_factory.mktemp("plain"), argv, "plain")
    yield port
    stop_process(proc)


def upgrade_request(port: int, extra_header: str = "", origin: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /_stcore/stream HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: streamlit",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    if extra_header:
        lines.append(extra_header)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_of(port: int, request: bytes, deadline: float = ANSWER_DEADLINE_SECONDS) -> tuple[str, float]:
    """Send ``request`` and read until the server answers a status line or closes.

    Returns:
        (the status line or ``"closed"`` / ``"no answer"``, seconds until the first byte or close).
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(request)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return "no answer", time.monotonic() - started
    elapsed = time.monotonic() - started
    if not data:
        return "closed", elapsed
    return data.split(b"\r\n", 1)[0].decode(errors="replace"), elapsed


def test_valid_upgrade_is_accepted(webchat: int, attempts) -> None:
    status, _ = answer_of(webchat, upgrade_request(webchat))
    assert attempts.record(LAYER, "websocket upgrade, ordinary headers", "HTTP/1.1 101 Switching Protocols", status)


@pytest.mark.parametrize("size", [9 * 1024, 64 * 1024])
def test_oversize_header_line_is_answered_not_left_hanging(webchat: int, attempts, size: int) -> None:
    status, elapsed = answer_of(webchat, upgrade_request(webchat, "X-Pad: " + "a" * size))
    expected = (
        "HTTP/1.1 101 Switching Protocols" if size < 60 * 1024 else "HTTP/1.1 431 Request Header Fields Too Large"
    )
    assert attempts.record(LAYER, f"websocket upgrade with one {size // 1024} KB header line", expected, status)
    assert elapsed < ANSWER_DEADLINE_SECONDS


def test_too_many_headers_get_431(webchat: int, attempts) -> None:
    extra = "\r\n".join(f"X-H{i}: v" for i in range(200))
    status, _ = answer_of(webchat, upgrade_request(webchat, extra))
    assert attempts.record(
        LAYER, "websocket upgrade with 200 headers", "HTTP/1.1 431 Request Header Fields Too Large", status
    )


def test_before_the_fix_the_9kb_line_hangs(plain_streamlit: int, attempts) -> None:
    """The finding, reproduced on plain ``streamlit run``: no answer within the deadline, as long as the
    installed uvicorn leaves the refused handshake unanswered; a uvicorn that answers it (0.55+) must
    then send the 431 at once on plain Streamlit too (and our fix stands aside)."""
    status, elapsed = answer_of(plain_streamlit, upgrade_request(plain_streamlit, "X-Pad: " + "a" * 9 * 1024), 8.0)
    if uvicorn_answers_refused_handshakes():
        assert not install_handshake_fix(), "the fix must not patch a uvicorn that answers by itself"
        expected, attempt = "HTTP/1.1 431 Request Header Fields Too Large", "(uvicorn 0.55+, plain streamlit run)"
    else:
        expected, attempt = "no answer", "(before the fix: plain streamlit run)"
    assert attempts.record(LAYER, f"{attempt} one 9 KB header line", expected, status), f"{status} after {elapsed:.1f}s"
    assert elapsed < ANSWER_DEADLINE_SECONDS


def test_agent_api_is_off(webchat: int, attempts) -> None:
    response = httpx.post(f"http://127.0.0.1:{webchat}/_stcore/agent/interact", json={}, timeout=10)
    actual = f"{response.status_code} {response.json()['error']['code']}"
    assert attempts.record(
        LAYER, "POST /_stcore/agent/interact (server.enableAgentApi = false)", "403 not_available", actual
    )


def test_metrics_cannot_be_turned_off_in_streamlit(webchat: int, attempts) -> None:
    """Streamlit has no option to drop /_stcore/metrics: the gateway's path allow-list is what blocks
    it (tested in test_gateway_attacks.py); the pod is reachable only through the gateway."""
    status = httpx.get(f"http://127.0.0.1:{webchat}/_stcore/metrics", timeout=10).status_code
    assert attempts.record(LAYER, "GET /_stcore/metrics straight to the web chat (gateway bypassed)", 200, status)
