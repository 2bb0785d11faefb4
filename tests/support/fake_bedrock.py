"""A local fake of the Bedrock Runtime HTTP API, for integration tests and the API benchmark.

boto3 reaches it through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:<port>`` (or
``endpoint_url=``). It speaks the real wire formats, so botocore and langchain-aws parse it as
they parse Bedrock:

* ``POST /model/{modelId}/converse`` — Converse JSON
  (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html);
* ``POST /model/{modelId}/converse-stream`` — ConverseStream as an AWS event stream
  (``application/vnd.amazon.eventstream``; each message: 4-byte total length, 4-byte headers
  length, CRC32 of those 8 bytes, headers, JSON payload, CRC32 of everything before;
  https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream),
  events ``messageStart``, ``contentBlockDelta``…, ``contentBlockStop``, ``messageStop``, ``metadata``;
* ``POST /model/{modelId}/invoke`` — Titan Text Embeddings
  (``{"inputText"}`` → ``{"embedding": [...], "inputTextTokenCount": n}``), a deterministic
  bag-of-words hashing embedding, so texts sharing words are similar.

Behaviour is set on :class:`FakeBedrockConfig` (also while running): time to first token, token
rate, reply length, throttling (HTTP 429 + ``x-amzn-ErrorType: ThrottlingException``) and other
errors, and a failure in the middle of a stream. Every request body is recorded in ``requests``.

Run alone: ``python -m tests.support.fake_bedrock --port 9999 --ttft 0.3 --tps 50``.
"""

from __future__ import annotations

import argparse
import binascii
import contextlib
import hashlib
import json
import re
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import numpy as np

_PATH_RE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke)$")
_WORD_RE = re.compile(r"\w+")
_DOC_RE = re.compile(r'<doc n="(\d+)"[^>]*>\n?(.*?)\n?</doc>', re.DOTALL)


@dataclass
class FakeBedrockConfig:
    """Knobs of the fake (read on every request; change them between requests).

    Attributes:
        ttft_seconds: delay before the first streamed text (and before a Converse reply), seconds.
        tokens_per_second: pace of text deltas after the first (delta n is due ``ttft + n / rate`` seconds
            after the request arrived, so late wake-ups do not add up); None = as fast as possible.
        reply_words: words in each answer.
        reply_text: a fixed answer instead of the generated one.
        throttle_requests: the next N model calls fail with 429 ThrottlingException (-1: all).
        error_status / error_type: the next calls fail with this HTTP status and x-amzn-ErrorType
            (e.g. 503 / ``ServiceUnavailableException``) while ``error_requests`` > 0 (-1: all).
        fail_stream_after: send this many deltas, then an in-stream ``throttlingException`` event.
        embedding_dim: default Titan dimensions (v2 honours the request's ``dimensions``).
        embedding_seconds: delay of each embedding call, seconds.

    A request's ``inferenceConfig.maxTokens`` caps the reply's words; a non-streaming Converse call
    takes as long as the same reply streamed (``ttft + (words - 1) / rate``).
    """

    ttft_seconds: float = 0.0
    tokens_per_second: float | None = None
    reply_words: int = 24
    reply_text: str | None = None
    throttle_requests: int = 0
    error_status: int = 503
    error_type: str = "ServiceUnavailableException"
    error_requests: int = 0
    fail_stream_after: int | None = None
    embedding_dim: int = 1024
    embedding_seconds: float = 0.0


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (``application/vnd.amazon.eventstream``)."""
    header_bytes = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude_crc = struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + prelude_crc + header_bytes + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def stream_event(event_type: str, body: dict[str, Any]) -> bytes:
    """A ConverseStream event message."""
    return encode_event(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body).encode(),
    )


def exception_event(exception_type: str, message: str) -> bytes:
    """An in-stream exception message (e.g. ``throttlingException``)."""
    return encode_event(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def hashing_embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit vector: signed feature hashing of lower-cased words."""
    vector = np.zeros(dim, dtype=np.float32)
    for word in _WORD_RE.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        vector[value % dim] += 1.0 if (value >> 32) & 1 else -1.0
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        vector[0] = 1.0
        norm = 1.0
    return (vector / norm).tolist()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients that hang up mid-stream are expected (disconnect tests, benchmark)


def _texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))


class FakeBedrock:
    """The server. ``with FakeBedrock() as fake: ... fake.endpoint ...``.

    Args:
        config: behaviour (a default one when None).
        port: 0 for a free port.
    """

    def __init__(self, config: FakeBedrockConfig | None = None, port: int = 0) -> None:
        self.config = config or FakeBedrockConfig()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # small writes (headers, events) go out at once

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                fake._handle(self)

        self.server = _QuietServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeBedrock:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-bedrock", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------------------------

    def _take(self, attribute: str) -> bool:
        with self._lock:
            remaining = getattr(self.config, attribute)
            if remaining == 0:
                return False
            if remaining > 0:
                setattr(self.config, attribute, remaining - 1)
            return True

    def reply_for(self, body: dict[str, Any]) -> str:
        """The answer text: quotes the first document of the prompt (or echoes the question)."""
        config = self.config
        if config.reply_text is not None:
            return config.reply_text
        system = _texts(body.get("system", []))
        last = _texts((body.get("messages") or [{}])[-1].get("content", []))
        docs = _DOC_RE.findall(system + "\n" + last)
        base = f"{docs[0][1]} [{docs[0][0]}]" if docs else last
        words = base.split() or ["ok"]
        while len(words) < config.reply_words:
            words += words
        return " ".join(words[: config.reply_words])

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], **headers: str) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-amzn-RequestId", "fake-" + hashlib.md5(data).hexdigest()[:12])
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        match = _PATH_RE.match(handler.path.split("?")[0])
        if not match:
            self._send_json(
                handler,
                404,
                {"message": f"unknown path {handler.path}"},
                **{"x-amzn-ErrorType": "UnknownOperationException"},
            )
            return
        model, op = unquote(match["model"]), match["op"]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(handler, 400, {"message": "malformed JSON"}, **{"x-amzn-ErrorType": "ValidationException"})
            return
        with self._lock:
            self.requests.append({"model": model, "op": op, "body": body})
        if op == "invoke":
            self._invoke(handler, model, body)
            return
        if self._take("throttle_requests"):
            self._send_json(
                handler,
                429,
                {"message": "Too many requests, please wait before trying again."},
                **{"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"},
            )
            return
        if self._take("error_requests"):
            self._send_json(
                handler,
                self.config.error_status,
                {"message": "fake failure"},
                **{"x-amzn-ErrorType": self.config.error_type},
            )
            return
        reply = self.reply_for(body)
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
        if isinstance(max_tokens, int) and max_tokens > 0:
            reply = " ".join(reply.split(" ")[:max_tokens])
        input_tokens = max(1, len(json.dumps(body)) // 4)
        output_tokens = len(reply.split())
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        }
        if op == "converse":
            rate = self.config.tokens_per_second
            time.sleep(self.config.ttft_seconds + ((output_tokens - 1) / rate if rate else 0.0))
            self._send_json(
                handler,
                200,
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": reply}]}},
                    "stopReason": "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": int(self.config.ttft_seconds * 1000)},
                },
            )
            return
        self._converse_stream(handler, reply, usage)

    def _converse_stream(self, handler: BaseHTTPRequestHandler, reply: str, usage: dict[str, int]) -> None:
        config = self.config
        started = time.perf_counter()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.amazon.eventstream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("x-amzn-RequestId", "fake-stream")
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        try:
            chunk(stream_event("messageStart", {"role": "assistant"}))
            words = reply.split(" ")
            for n, word in enumerate(words):
                if config.fail_stream_after is not None and n >= config.fail_stream_after:
                    chunk(exception_event("throttlingException", "Too many tokens, please wait."))
                    handler.wfile.write(b"0\r\n\r\n")
                    return
                # Token n is due at ttft + n / rate after the request, like a remote model whose pace
                # does not depend on this machine's load: a late wake-up is not carried over.
                due = started + config.ttft_seconds
                if n and config.tokens_per_second:
                    due += n / config.tokens_per_second
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                text = word if n == 0 else " " + word
                chunk(stream_event("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": 0}))
            chunk(stream_event("contentBlockStop", {"contentBlockIndex": 0}))
            chunk(stream_event("messageStop", {"stopReason": "end_turn"}))
            latency = int((time.perf_counter() - started) * 1000)
            chunk(stream_event("metadata", {"usage": usage, "metrics": {"latencyMs": latency}}))
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away mid-stream

    def _invoke(self, handler: BaseHTTPRequestHandler, model: str, body: dict[str, Any]) -> None:
        if not model.startswith("amazon.titan-embed"):
            self._send_json(handler, 400, {"message": f"fake supports Titan embeddings only, not {model}"},
                            **{"x-amzn-ErrorType": "ValidationException"})  # fmt: skip
            return
        text = str(body.get("inputText", ""))
        if self.config.embedding_seconds:
            time.sleep(self.config.embedding_seconds)
        dim = int(body.get("dimensions") or (1536 if model.endswith("v1") else self.config.embedding_dim))
        self._send_json(
            handler, 200, {"embedding": hashing_embedding(text, dim), "inputTextTokenCount": len(text.split())}
        )


def main() -> None:
    """Run the fake in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to first token")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second after the first")
    parser.add_argument("--words", type=int, default=24, help="words per answer")
    parser.add_argument("--embed-ms", type=float, default=0.0, help="milliseconds per embedding call")
    args = parser.parse_args()
    config = FakeBedrockConfig(
        ttft_seconds=args.ttft,
        tokens_per_second=args.tps or None,
        reply_words=args.words,
        embedding_seconds=args.embed_ms / 1000,
    )
    fake = FakeBedrock(config, args.port)
    print(fake.endpoint, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.server.serve_forever()


if __name__ == "__main__":
    main()
