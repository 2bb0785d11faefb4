"""A tiny stand-in for the RAG API that speaks its HTTP/SSE contract (stdlib only).

Retrieval is keyword overlap (IDF-weighted) over a two-column FAQ CSV; the answer is the best
row's answer, streamed a few words per ``token`` event. History is kept in memory per session.

- ``POST /api/v1/llm/rag/stream`` → ``token``…, ``sources``, ``done`` (or ``error``);
- ``GET|DELETE /api/v1/sessions/{session_id}/messages``;
- ``GET /readyz``.

Use in tests with :class:`FakeRagApi` (a context manager), or run it for a local demo:
``python -m tests.integration.webapp.fake_rag_api --port 8000 --csv ../shared/data/Amazon_SageMaker_FAQs.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.support.http import BackgroundHTTPServer, ServedFake

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class FaqRow:
    row: int
    question: str
    answer: str


def load_faq(path: Path) -> list[FaqRow]:
    """Rows of a headerless ``question,answer`` CSV (0-based row numbers, as ``csv.reader`` yields)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        return [
            FaqRow(i, " ".join(r[0].split()), " ".join(r[1].split()))
            for i, r in enumerate(csv.reader(f))
            if len(r) >= 2 and r[0].strip()
        ]


@dataclass
class FakeRagApi(ServedFake):
    """The fake server's state; start it with ``with FakeRagApi(rows) as api: api.url``.

    Attributes:
        rows: the FAQ corpus.
        source: the ``source`` reported for every row (a file name or URI).
        token_delay: pause between token events, in seconds (makes streaming visible).
        fail_with: when set, e.g. ``(503, "bedrock_unavailable")``, every question gets that
            ``error`` event instead of an answer.
        http_error: when set, e.g. ``(422, {"error": ..., "message": ...})``, every question is
            answered with that JSON error status instead of a stream.
        requests: the JSON bodies and ``X-Request-ID`` of every stream request received.
        history: messages per session id.
    """

    rows: list[FaqRow]
    source: str = "Amazon_SageMaker_FAQs.csv"
    token_delay: float = 0.03
    fail_with: tuple[int, str] | None = None
    http_error: tuple[int, dict[str, Any]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    url: str = ""
    _server: BackgroundHTTPServer | None = None

    def search(self, question: str, k: int = 3) -> list[tuple[FaqRow, float]]:
        """The ``k`` best rows for ``question`` with scores in (0, 1]."""
        docs = [Counter(_words(r.question + " " + r.question + " " + r.answer)) for r in self.rows]
        df = Counter(w for d in docs for w in d)
        idf = {w: math.log(1 + len(docs) / n) for w, n in df.items()}
        query = set(_words(question))
        scored = [(sum(idf[w] for w in query if w in d), r) for d, r in zip(docs, self.rows, strict=True)]
        scored.sort(key=lambda x: -x[0])
        top = scored[0][0] or 1.0
        return [(r, round(s / top, 3)) for s, r in scored[:k] if s > 0]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The API's routes (:class:`_Handler`) over this fake's state."""
        api = self

        class Handler(_Handler):
            state = api

        return Handler


class _Handler(BaseHTTPRequestHandler):
    state: FakeRagApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _messages_session(self) -> str | None:
        m = re.fullmatch(r"/api/v1/sessions/([^/]+)/messages", self.path.split("?")[0])
        return unquote(m.group(1)) if m else None

    def do_GET(self) -> None:
        if self.path == "/readyz":
            return self._json(200, {"status": "ready"})
        sid = self._messages_session()
        if sid is None:
            return self._json(404, {"error": "not_found", "message": "no such path"})
        return self._json(200, {"session_id": sid, "messages": self.state.history.get(sid, [])})

    def do_DELETE(self) -> None:
        sid = self._messages_session()
        if sid is None:
            return self._json(404, {"error": "not_found", "message": "no such path"})
        self.state.history.pop(sid, None)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def do_POST(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the browser went away mid-answer
            self._stream()

    def _stream(self) -> None:
        if self.path != "/api/v1/llm/rag/stream":
            return self._json(404, {"error": "not_found", "message": "no such path"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        question, sid = str(body.get("q", "")).strip(), str(body.get("user_session_id", ""))
        self.state.requests.append({**body, "request_id": self.headers.get("X-Request-ID")})
        if not question or sid.count(":") != 2:
            return self._json(422, {"error": "invalid_request", "message": "q and user_session_id are required"})
        if self.state.http_error:
            return self._json(*self.state.http_error)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.state.fail_with:
            status, code = self.state.fail_with
            return self._event("error", {"status": status, "error": code, "message": "fake failure", "retry_after": 1})
        hits = self.state.search(question, int(body.get("max_matching_docs") or 3))
        answer = hits[0][0].answer if hits else "I could not find that in your documents."
        words = answer.split(" ")
        for i in range(0, len(words), 3):
            self._event("token", {"text": " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")})
            time.sleep(self.state.token_delay)
        sources = [
            {
                "id": f"{self.state.source}#{row.row}",
                "source": self.state.source,
                "row": row.row,
                "title": row.question,
                "score": score,
                "snippet": row.answer[:200],
            }
            for row, score in hits
        ]
        self._event("sources", {"sources": sources})
        now = datetime.now(UTC).isoformat()
        self.state.history.setdefault(sid, []).extend(
            [
                {"role": "user", "content": question, "created_at": now},
                {"role": "assistant", "content": answer, "sources": sources, "created_at": now},
            ]
        )
        usage = {"input_tokens": len(question.split()), "output_tokens": len(words)}
        usage["total_tokens"] = sum(usage.values())
        self._event("done", {"session_id": sid, "answer": answer, "usage": usage, "model_id": "fake.keyword-v1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    api = FakeRagApi(load_faq(args.csv), source=args.csv.name)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), type("H", (_Handler,), {"state": api}))
    print(f"fake RAG API on http://127.0.0.1:{args.port} ({len(api.rows)} rows)")
    server.serve_forever()


if __name__ == "__main__":
    main()
