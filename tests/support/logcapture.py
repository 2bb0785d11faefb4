"""Capture log records formatted exactly as the services' stderr handler does (JSON lines)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rag.logs import ContextFilter, JsonFormatter


class JsonLogCapture(logging.Handler):
    """Keeps every record as its JSON line (``lines``) and parsed (``records``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def records(self) -> list[dict[str, Any]]:
        """The captured lines as dicts."""
        return [json.loads(line) for line in self.lines]


@contextmanager
def capture_json_logs(level: int = logging.INFO) -> Iterator[JsonLogCapture]:
    """Attach a :class:`JsonLogCapture` to the root logger (at ``level``) for the duration."""
    handler = JsonLogCapture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
