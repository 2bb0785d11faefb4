"""SIGTERM under real gunicorn: in-flight streams finish, new connections are refused.

What the kubelet does on pod deletion: SIGTERM to PID 1 (gunicorn), then SIGKILL after
``terminationGracePeriodSeconds``. gunicorn closes its listeners and gives workers
``GUNICORN_GRACEFUL_TIMEOUT`` seconds. Every stream that was accepted before the signal must end
with ``event: done`` (its turn saved), not be cut.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
import uuid

import httpx
import pytest

from rag.index.store import open_store
from tests.integration.api.conftest import publish_titan_index, wait_until
from tests.integration.reliability.conftest import free_port, gunicorn_env, kill_gunicorn, start_gunicorn
from tests.unit.api.fakes import parse_sse

pytestmark = pytest.mark.integration

STREAMS = 6
WORDS = 40
TOKENS_PER_SECOND = 10  # ~4 s per answer: SIGTERM lands in the middle of every stream


def _stream(base: str, session: str, results: dict, first_token: threading.Event) -> None:
    text = []
    try:
        with (
            httpx.Client(base_url=base, timeout=60) as http,
            http.stream(
                "POST", "/api/v1/llm/rag/stream", json={"q": "What is SageMaker?", "user_session_id": session}
            ) as response,
        ):
            results[session] = {"status": response.status_code}
            for line in response.iter_lines():
                text.append(line)
                if line.startswith("event: token"):
                    first_token.set()
    except httpx.HTTPError as exc:
        results.setdefault(session, {})["exception"] = repr(exc)
    results.setdefault(session, {})["body"] = "\n".join(text) + "\n\n"


def test_sigterm_lets_inflight_streams_finish_and_refuses_new_connections(tmp_path, fake_bedrock, sagemaker_docs):
    fake_bedrock.config.tokens_per_second = TOKENS_PER_SECOND
    fake_bedrock.config.reply_words = WORDS
    index = tmp_path / "index"
    publish_titan_index(open_store(str(index)), sagemaker_docs[:20])
    port = free_port()
    env = gunicorn_env(tmp_path, index, fake_bedrock.endpoint, port, GUNICORN_GRACEFUL_TIMEOUT="25")
    proc = start_gunicorn(tmp_path, env)
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return all(httpx.get(f"{base}/readyz", timeout=2).status_code == 200 for _ in range(4))
            except httpx.HTTPError:
                return False

        assert wait_until(ready, timeout=60), (tmp_path / "gunicorn.log").read_text()
        results: dict[str, dict] = {}
        firsts = [threading.Event() for _ in range(STREAMS)]
        sessions = [f"tenanta:grace@example.com:{uuid.uuid4()}" for _ in range(STREAMS)]
        threads = [
            threading.Thread(target=_stream, args=(base, s, results, e)) for s, e in zip(sessions, firsts, strict=True)
        ]
        for t in threads:
            t.start()
        assert all(e.wait(30) for e in firsts), "every stream must have started before SIGTERM"
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # new connections are refused soon after the signal (listeners closed)
        def refused() -> bool:
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex(("127.0.0.1", port)) != 0

        assert wait_until(refused, timeout=5), "gunicorn still accepts connections after SIGTERM"
        for t in threads:
            t.join(60)
        assert proc.wait(timeout=40) == 0
        took = time.monotonic() - signalled

        cut = []
        for session in sessions:
            outcome = results[session]
            names = [n for n, _ in parse_sse(outcome["body"])]
            if outcome.get("status") != 200 or not names or names[-1] != "done" or "exception" in outcome:
                cut.append((session[-6:], outcome.get("status"), names[-3:], outcome.get("exception")))
        assert not cut, f"{len(cut)}/{STREAMS} accepted streams were cut by SIGTERM: {cut}"
        assert took < 25
        # every answered turn was saved (one row per stream)
        with sqlite3.connect(tmp_path / "history.db") as db:
            saved = {row[0] for row in db.execute("SELECT session_id FROM chat_turns")}
        assert saved == set(sessions)
    finally:
        kill_gunicorn(proc)
