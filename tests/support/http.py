"""A stdlib HTTP server on a free 127.0.0.1 port, served from a daemon thread (for test fakes)."""

from __future__ import annotations

import abc
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class BackgroundHTTPServer:
    """Start with :meth:`start` (returns the base URL), stop with :meth:`stop` (idempotent).

    Args:
        handler: the request handler class.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def start(self) -> str:
        """Serve in a daemon thread; returns ``http://127.0.0.1:<port>``."""
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class ServedFake(abc.ABC):
    """Base of a test fake that is served over HTTP while in a ``with`` block.

    A subclass defines :meth:`handler`; ``with Fake() as fake`` starts a :class:`BackgroundHTTPServer`
    with it, sets ``fake.url`` (``http://127.0.0.1:<port>``) and stops it on exit.
    """

    url: str = ""
    _server: BackgroundHTTPServer | None = None

    @abc.abstractmethod
    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class, bound to this fake."""

    def __enter__(self) -> Self:
        self._server = BackgroundHTTPServer(self.handler())
        self.url = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server:
            self._server.stop()
