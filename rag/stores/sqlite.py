"""One way to open the local SQLite stores (history, sessions, usage, quota, feedback), safe under many writers.

Every store holds a :class:`SharedConnections` per database file; this module sets the same pragmas
on all of them (https://www.sqlite.org/pragma.html) and runs every statement the same way:

* ``journal_mode=WAL``: readers never block the writer, the writer never blocks readers
  (https://www.sqlite.org/wal.html); one writer at a time per file, across threads *and* processes
  (two gunicorn workers share one history file);
* ``busy_timeout`` :data:`BUSY_TIMEOUT_MS`: a writer that finds the file locked waits (SQLite's
  busy handler sleeps and retries) instead of failing at once. 5 s fits a request: a write holds the
  lock for well under a millisecond, so even hundreds of queued writers get through, and a
  request never waits longer than the web chat's and gunicorn's budgets;
* a bounded retry (tenacity) of statements that still fail with ``SQLITE_BUSY`` / ``SQLITE_LOCKED``:
  the cases where SQLite returns busy *without* calling the busy handler (a WAL snapshot that
  went stale, WAL recovery by another process; https://www.sqlite.org/rescode.html#busy). A busy
  statement did not change anything, so running it again is safe;
* ``synchronous=NORMAL``: with WAL a commit survives a crash of the process, without an fsync per
  write; a small page cache per connection.

Each statement runs in autocommit mode (one statement is one transaction), one at a time per
shared connection (a lock: one writer per database per process), and is stepped to the end before
:meth:`SharedConnections.execute` returns. Without the lock, statements of two threads share the
connection's transaction: a write inside another thread's open read fails at once with
``SQLITE_BUSY`` when another process wrote meanwhile, and such a failure can roll back a write
another thread already saw succeed. ``tests/unit/rag/stores/test_sqlite.py`` measured both with 4
processes x 16 threads (9,600 statements per run): about 2,000 "database is locked" failures per run
without the lock or retry, 10-40 with the retry alone, 0 with the lock (with or without the retry).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from rag.stores.base import StoreUnavailableError

logger = logging.getLogger("rag.stores.sqlite")

#: Page cache per connection, KiB (negative in the pragma = KiB).
CACHE_KIB = 256
#: How long SQLite's busy handler waits for the write lock, milliseconds.
BUSY_TIMEOUT_MS = 5_000
#: Attempts of one statement that fails busy/locked (the first included).
BUSY_ATTEMPTS = 5
#: Longest jittered pause between two attempts, seconds.
BUSY_MAX_BACKOFF_SECONDS = 0.25
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked / busy" errors (primary code ``SQLITE_BUSY`` or ``SQLITE_LOCKED``)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (
            code & 0xFF
        ) in _BUSY_CODES  # extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary in the low byte
    text = str(exc).lower()
    return "locked" in text or "busy" in text


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
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
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

    One connection instead of one per thread keeps a worker's open files and page caches constant,
    however many executor threads (up to 128 per worker) touch the store; the 10-minute soak showed
    file descriptors creeping up with a connection per thread.

    Args:
        path: the database file.
        schema: SQL run on each new connection (idempotent ``CREATE ... IF NOT EXISTS``).
        error: the store's :class:`~rag.stores.base.StoreUnavailableError` subclass, raised by
            :meth:`execute` for any SQLite or file error after the busy retries (the API answers 503).
        label: what the store holds, for the log message (e.g. ``"quota counters"``).
        migrate: called with each new connection after ``schema`` (e.g. ``ALTER TABLE ... ADD COLUMN``
            for files created by an older release); must be idempotent.
    """

    def __init__(
        self,
        path: Path,
        schema: str | None = None,
        *,
        error: type[StoreUnavailableError] = StoreUnavailableError,
        label: str = "database",
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.error = error
        self.label = label
        self.migrate = migrate
        self._shared = sqlite3.threadsafety == 3
        self._lock = threading.Lock()
        self._statement_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._retrying = Retrying(  # the attempts after a first one that was busy (see execute)
            retry=retry_if_exception(is_busy),
            stop=stop_after_attempt(max(1, BUSY_ATTEMPTS - 1)) | stop_after_delay(BUSY_TIMEOUT_MS / 1000),
            wait=wait_random_exponential(multiplier=0.01, max=BUSY_MAX_BACKOFF_SECONDS),
            before_sleep=before_sleep_log(logger, logging.INFO),
            reraise=True,
        )

    def _open(self) -> sqlite3.Connection:
        conn = connect(self.path, self.schema)
        if self.migrate is not None:
            self.migrate(conn)
        return conn

    def get(self) -> sqlite3.Connection:
        """The connection for this thread (opened on first use).

        Raises:
            StoreUnavailableError: ``error``, when the file cannot be created or opened.
        """
        try:
            if not self._shared:
                conn = getattr(self._local, "conn", None)
                if conn is None:
                    conn = self._local.conn = self._retrying(self._open)
                return conn
            if self._conn is None:
                with self._lock:
                    if self._conn is None:
                        self._conn = self._retrying(self._open)
            return self._conn
        except (sqlite3.Error, OSError) as exc:
            raise self.error(f"{self.label} (SQLite {self.path}) cannot be opened: {exc}") from exc

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = self.get()
        if not self._shared:
            return conn.execute(sql, params).fetchall()
        # One statement at a time on the shared connection: statements of two threads would share
        # the connection's transaction, and a write started while another thread's read is open
        # must upgrade that read, which SQLite refuses at once (SQLITE_BUSY, no busy handler) when
        # another process wrote meanwhile. Serialised, every statement starts its own transaction
        # and waits in the busy handler; SQLite allows one writer per file anyway.
        with self._statement_lock:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit: one statement is one transaction) to its end; its rows.

        Args:
            sql: one SQL statement with ``?`` placeholders.
            params: the values of the placeholders.

        Returns:
            Every row the statement produced (``[]`` for writes without ``RETURNING``).

        Raises:
            StoreUnavailableError: ``error`` (the store's own type) when SQLite or the file system
                fails, including "database is locked" after :data:`BUSY_ATTEMPTS` attempts.
        """
        try:
            try:
                return self._run(sql, params)  # the usual case, without the retry machinery's cost
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                logger.info("%s (SQLite %s) busy, retrying: %s", self.label, self.path, exc)
            return self._retrying(self._run, sql, params)
        except (sqlite3.Error, OSError) as exc:
            raise self.error(f"{self.label} (SQLite {self.path}) failed: {exc}") from exc
