"""Unit tests: no network. Any socket connection outside a Unix socket fails the test."""

from __future__ import annotations

import socket

import pytest


class NetworkBlockedError(RuntimeError):
    """A unit test tried to open a network connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkBlockedError(f"unit tests must not use the network (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(NetworkBlockedError(str(a))))
