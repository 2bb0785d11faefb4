"""One way to open the local SQLite stores (history, usage, quota, feedback, sessions).

Each store keeps one connection per thread (``sqlite3`` connections are not shared across threads
safely); this module sets the same pragmas on all of them
(https://www.sqlite.org/pragma.html): WAL so readers never block the writer, a 10 s busy timeout,
``synchronous=NORMAL`` (with WAL a commit survives a crash of the process, without an fsync per
write), and a small page cache per connection, since a worker may hold one per thread.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

#: Page cache per connection, KiB (negative in the pragma = KiB): up to 128 threads per worker.
CACHE_KIB = 256
BUSY_TIMEOUT_MS = 10_000


def connect(path: Path, schema: str | None = None) -> sqlite3.Connection:
    """Open (creating its folder) the database at ``path`` in autocommit mode with our pragmas.

    Args:
        path: the database file.
        schema: SQL run once on the new connection (``CREATE TABLE IF NOT EXISTS ...``).

    Raises:
        sqlite3.Error, OSError: the file cannot be created or opened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    if schema:
        conn.executescript(schema)
    return conn


class ThreadLocalConnections:
    """One :func:`connect`-ed connection per thread to one database file.

    Args:
        path: the database file.
        schema: SQL run once on each new connection (idempotent ``CREATE ... IF NOT EXISTS``).
    """

    def __init__(self, path: Path, schema: str | None = None) -> None:
        self.path = path
        self.schema = schema
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use).

        Raises:
            sqlite3.Error, OSError: the file cannot be created or opened.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.schema)
            self._local.conn = conn
        return conn
