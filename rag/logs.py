"""Structured logs: one JSON object per line, shared by the API and the web chat (stdlib only).

Each line has ``time``, ``level``, ``logger``, ``message``, ``request_id`` and ``tenant``, plus
``route``, ``method``, ``status`` and ``duration_ms`` when the record carries them (``extra=``),
and ``exception`` for errors. Anything that looks like a JWT or a bearer token is masked before it
is written (defence in depth: the code never logs tokens, prompts or documents on purpose).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

#: The request id of the current request or chat turn (``-`` outside one).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
#: Extra fields copied from a record's ``extra=`` into the JSON line.
EXTRA_FIELDS = ("route", "method", "status", "duration_ms", "answer_id", "model_id", "error")
_SECRET_RE = re.compile(r"(eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*|(?i:bearer)\s+[\w.~+/=-]{8,})")
_CONTEXT: dict[str, str] = {"tenant": "-"}


def set_log_context(*, tenant: str) -> None:
    """Process-wide fields of every line (the pod serves one tenant)."""
    _CONTEXT["tenant"] = tenant


def redact(text: str) -> str:
    """``text`` with JWTs and bearer tokens replaced by ``[redacted]``."""
    return _SECRET_RE.sub("[redacted]", text)


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``tenant`` to every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context."""
        if not hasattr(record, "request_id") or record.request_id in (None, "-"):
            record.request_id = request_id_var.get()
        record.tenant = _CONTEXT["tenant"]
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record``."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "tenant": getattr(record, "tenant", _CONTEXT["tenant"]),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
#: Libraries that log at INFO on every call (langchain-aws: one line per embedding and Converse call);
#: kept at WARNING so the answer path writes only its own two lines (access + answered).
QUIET_LIBRARIES = ("langchain_aws",)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install one stderr handler on the root logger (idempotent): JSON lines or plain text."""
    root = logging.getLogger()
    for handler in root.handlers:
        if any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
            break
    else:
        handler = logging.StreamHandler()
        handler.addFilter(ContextFilter())
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
