"""Pure ASGI middleware (no ``BaseHTTPMiddleware``: it would buffer nothing but costs per request).

* :class:`RequestContextMiddleware`: accepts a client's ``X-Request-ID`` (or makes one), echoes it
  on every response, puts it into every log record of the request, records request count and
  latency by route template and status, and writes one access log line per request (``route``,
  ``method``, ``status``, ``duration_ms``; probes and ``/metrics`` at DEBUG level).
* :class:`BodySizeLimitMiddleware`: refuses bodies over the limit with 413, whether the client
  sent ``Content-Length`` or streamed a chunked body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from rag import logs
from rag.contract import REQUEST_ID_HEADER
from rag.logs import request_id_var

_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()  # ASGI header names are lower-case bytes
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Routes logged at DEBUG (the kubelet's probes and Prometheus' scrapes would drown the rest).
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
access_logger = logging.getLogger("api.access")


class RequestIdLogFilter(logs.ContextFilter):
    """Adds ``record.request_id`` (``-`` outside a request) and ``record.tenant`` for formatters."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Request id propagation plus Prometheus request metrics.

    Args:
        app: the wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, _REQUEST_ID_KEY)
        request_id = incoming if incoming and _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started
        scope["state"]["request_id"] = request_id
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _REQUEST_ID_KEY]
                headers.append((_REQUEST_ID_KEY, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(route, method, str(status["code"])).inc()
            metrics.LATENCY.labels(route, method).observe(elapsed)
            access_logger.log(
                logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                "%s %s %s",
                method,
                route,
                status["code"],
                extra={
                    "route": route,
                    "method": method,
                    "status": status["code"],
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Answer 413 ``{"error": "payload_too_large"}`` for bodies above ``max_bytes``.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the limit in bytes (default 64 KiB).
        exempt_prefixes: paths that enforce their own limit while streaming the body (document uploads).
    """

    def __init__(self, app: ASGIApp, max_bytes: int = 64 * 1024, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"error": "payload_too_large", "message": f"request body larger than {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt_prefixes and scope.get("path", "").startswith(self.exempt_prefixes)):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # Read the (small) body up front, counting bytes: chunked bodies have no Content-Length.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = {"done": False}

        async def replay() -> Message:
            if not replayed["done"]:
                replayed["done"] = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for http.disconnect as usual

        await self.app(scope, replay, send)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """One JSON object per line (``LOG_FORMAT=json``, the default) or ``time level logger [request_id] message``.

    See :mod:`rag.logs`: ``time``, ``level``, ``logger``, ``message``, ``request_id``, ``tenant``,
    and for the access line ``route``, ``method``, ``status``, ``duration_ms``.
    """
    logs.configure_logging(level, fmt)
