"""A real PostgreSQL 16 with pgvector on this machine, from the PyPI package ``pgserver``.

Used by ``VECTOR_STORE=pgvector make demo`` (:class:`devstack.stack.DemoStack`), the pgvector
integration tests and ``benchmarks/vector_bench.py``.

``pgserver`` ships PostgreSQL binaries and ``vector.so`` in its wheel; as root it runs the server
as a system user ``pgserver`` and listens on a Unix socket only. :class:`LocalPostgres` adds what
the demo and the tests need on top: stopping and starting the same server mid-test (to play a database
outage), admin connections, and tenant provisioning with the project's own SQL.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import psycopg

from rag.index.pgvector import provision_sql, role_for, run_statements

DATABASE = "rag"


class LocalPostgres:
    """One ``pgserver`` instance under ``root`` with a database :data:`DATABASE` (``vector`` installed).

    Args:
        root: an empty directory for the data files (deleted at :meth:`close`).
    """

    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
            warnings.simplefilter("ignore")
            import pgserver

        self.root = root
        self.server = pgserver.get_server(root, cleanup_mode="delete")
        uri = self.server.get_uri()
        self.socket_dir = parse_qs(urlsplit(uri).query)["host"][0]
        with psycopg.connect(self.url("postgres", "postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")
        with self.admin() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def url(self, user: str = "postgres", database: str = DATABASE) -> str:
        """A libpq URL for ``user`` over the server's Unix socket (trust authentication)."""
        return f"postgresql://{user}@/{database}?host={quote(self.socket_dir, safe='')}"

    @contextlib.contextmanager
    def admin(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection as the superuser ``postgres`` to :data:`DATABASE`."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            yield conn

    def provision(self, tenant: str) -> str:
        """Create the tenant's role and schema with :func:`rag.index.pgvector.provision_sql`;
        returns the URL to connect as that role."""
        with psycopg.connect(self.url()) as conn:
            run_statements(conn, provision_sql(tenant, database=DATABASE, iam=False))
        return self.url(role_for(tenant))

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.root, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        """Stop the server now (``-m fast``: open sessions are terminated, as in a failover)."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        """Start the stopped server again on the same socket (``pg_ctl -w`` waits until it accepts)."""
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.root / "log"), "start")

    def close(self) -> None:
        """Stop the server and delete its files."""
        import logging
        import subprocess

        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        logging.getLogger("pgserver").setLevel(logging.CRITICAL)  # its own stop finds nothing to stop
        self.server.cleanup()
