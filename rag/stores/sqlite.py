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


class SharedConnections:
    """Connections to one database file: a single one shared by every thread when the sqlite3 module
    is built in serialized mode (``sqlite3.threadsafety == 3``, the usual build: "threads may share the
    module, connections and cursors", https://docs.python.org/3/library/sqlite3.html#sqlite3.threadsafety),
    else one per thread.

    Every statement runs in autocommit mode (one statement is one transaction), so sharing needs no
    extra locking. One connection instead of one per thread keeps a worker's open files and page
    caches constant, however many executor threads (up to 128 per worker) touch the store; the
    10-minute soak showed file descriptors creeping up with a connection per thread.

    Args:
        path: the database file.
        schema: SQL run once on each new connection (idempotent ``CREATE ... IF NOT EXISTS``).
        error: the store's "unavailable" exception, raised by :meth:`execute` for any SQLite or
            file error (the API maps it to a 503).
        label: what the store holds, for the error message (e.g. ``"quota counters"``).
    """

    def __init__(
        self,
        path: Path,
        schema: str | None = None,
        *,
        error: type[Exception] = RuntimeError,
        label: str = "database",
    ) -> None:
        self.path = path
        self.schema = schema
        self.error = error
        self.label = label
        self._shared = sqlite3.threadsafety == 3
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        """The connection for this thread (opened on first use).

        Raises:
            sqlite3.Error, OSError: the file cannot be created or opened.
        """
        if not self._shared:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = connect(self.path, self.schema)
            return conn
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    self._conn = connect(self.path, self.schema)
        return self._conn

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Run one statement (autocommit: one statement is one transaction).

        Raises:
            Exception: ``error`` (the store's own type) when SQLite or the file system fails.
        """
        try:
            return self.get().execute(sql, params)
        except (sqlite3.Error, OSError) as exc:
            raise self.error(f"{self.label} (SQLite {self.path}) failed: {exc}") from exc
