"""Fixtures for the reliability suite: a fault-injecting TCP proxy and a real gunicorn API."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

# re-exported fixtures of the API suite (fake Bedrock endpoint, demo documents)
from tests.integration.api.conftest import CLAUDE, fake_bedrock, sagemaker_docs, serve  # noqa: F401
from tests.integration.conftest import free_port
from tests.support.gunicorn import gunicorn_env, kill_gunicorn, start_gunicorn


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of a real local server, with switchable faults.

    Modes: ``"pass"`` (forward), ``"refuse"`` (accept, then reset the connection at once: what a
    client sees while a service is down behind a load balancer or restarting), ``"blackhole"``
    (accept and never answer: a hung dependency). ``cut_response_after`` (bytes) closes each
    connection once that many response bytes went through: a stream cut midway.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.cut_response_after: int | None = None
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.extend(socks)

    def drop_all(self) -> None:
        """Reset every open connection (keep-alive pools must reconnect and meet the fault)."""
        with self._lock:
            socks, self._open = self._open, []
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            mode = self.mode
            if mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # RST
                continue
            if mode == "blackhole":
                self._track(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            self._track(client, upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.cut_response_after), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):  # shutdown wakes the blocked accept(); close() alone does not
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self.drop_all()


@pytest.fixture
def fault_proxy() -> Iterator[callable]:
    """``fault_proxy(upstream_port)`` → a started :class:`FaultProxy` (closed at teardown)."""
    proxies: list[FaultProxy] = []

    def make(upstream_port: int) -> FaultProxy:
        proxy = FaultProxy(upstream_port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


__all__ = ["FaultProxy", "free_port", "gunicorn_env", "kill_gunicorn", "start_gunicorn"]
