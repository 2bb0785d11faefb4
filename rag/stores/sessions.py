"""Chat session ids per user, renewed after a period of inactivity.

One row per user (``<tenant>:<subject>``, the subject being the token's ``sub`` claim) holds the
current session id and when it was last used (epoch seconds). The row lives in the tenant's
DynamoDB table (``SESSIONS_TABLE``, HASH key ``TenantId``) or, for the local demo and tests, in SQLite (``SESSIONS_URL=sqlite:///path``).

Idleness is checked when a message is *sent* (:meth:`SessionManager.session_for_message`), not
only when the page loads: a tab left open past ``SESSION_IDLE_SECONDS`` starts a new session
with its next message (the reference deployment kept sending the stale id).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.tenant import SessionId, parse_session_id, user_key

#: The DynamoDB table's partition key (as the onboarding script creates it).
HASH_KEY = "TenantId"


def now() -> float:
    """The current time in epoch seconds (tests patch this to a fake clock)."""
    return time.time()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A user's current session.

    Attributes:
        session_id: ``<tenant>:<subject>:<uuid>``.
        last_active: when the session was last used, epoch seconds.
    """

    session_id: str
    last_active: float


class SessionStore(Protocol):
    """Where the per-user session rows live."""

    def get(self, user_key: str) -> SessionRecord | None:
        """The user's row, or None."""

    def put(self, user_key: str, record: SessionRecord) -> None:
        """Create or replace the user's row."""


class SqliteSessionStore:
    """Session rows in a SQLite file (local demo, tests).

    Args:
        path: the database file; created with its parent directory when missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS sessions ("
                " user_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, last_active REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5.0)

    def get(self, user_key: str) -> SessionRecord | None:
        """The user's row, or None."""
        with self._lock, self._connect() as conn:
            row = conn.execute(
                "SELECT session_id, last_active FROM sessions WHERE user_key = ?", (user_key,)
            ).fetchone()
        return SessionRecord(session_id=row[0], last_active=float(row[1])) if row else None

    def put(self, user_key: str, record: SessionRecord) -> None:
        """Create or replace the user's row."""
        with self._lock, self._connect() as conn:
            conn.execute(
                "INSERT INTO sessions (user_key, session_id, last_active) VALUES (?, ?, ?)"
                " ON CONFLICT(user_key) DO UPDATE SET session_id = excluded.session_id,"
                " last_active = excluded.last_active",
                (user_key, record.session_id, record.last_active),
            )


class DynamoSessionStore:
    """Session rows in the tenant's DynamoDB table.

    Item shape: ``{"TenantId": "<tenant>:<subject>", "session_id": "...", "last_active": <epoch s>}``.

    Args:
        client: a boto3 DynamoDB client (from :func:`rag.aws.make_client`).
        table: the table name (``SESSIONS_TABLE``).
    """

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def get(self, user_key: str) -> SessionRecord | None:
        """The user's row, or None (strongly consistent read)."""
        item = self.client.get_item(TableName=self.table, Key={HASH_KEY: {"S": user_key}}, ConsistentRead=True).get(
            "Item"
        )
        if not item or "session_id" not in item:
            return None
        return SessionRecord(session_id=item["session_id"]["S"], last_active=float(item["last_active"]["N"]))

    def put(self, user_key: str, record: SessionRecord) -> None:
        """Create or replace the user's row."""
        self.client.put_item(
            TableName=self.table,
            Item={
                HASH_KEY: {"S": user_key},
                "session_id": {"S": record.session_id},
                "last_active": {"N": str(int(record.last_active))},
            },
        )


class SessionManager:
    """Hands out the session id to use for a user, renewing it after ``idle_seconds``.

    Args:
        store: where the rows live.
        idle_seconds: inactivity after which the next message starts a new session, in seconds.
        clock: returns epoch seconds (default :func:`now`).
    """

    def __init__(self, store: SessionStore, idle_seconds: float, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self.clock = clock or now

    def _valid(self, record: SessionRecord | None, tenant: str, subject: str) -> SessionId | None:
        if record is None:
            return None
        try:
            sid = parse_session_id(record.session_id)
        except ValueError:
            return None
        return sid if (sid.tenant, sid.subject) == (tenant, subject) else None

    def is_idle(self, record: SessionRecord, at: float | None = None) -> bool:
        """True when ``record`` was last used more than ``idle_seconds`` before ``at`` (default now)."""
        return (self.clock() if at is None else at) - record.last_active > self.idle_seconds

    def current(self, tenant: str, subject: str) -> SessionId:
        """The session to show on page load: the stored one unless idle, else a new one.

        Does not mark the session as used (loading a page is not chat activity), except that a
        new session is stored straight away so that other tabs agree on it.
        """
        record = self.store.get(user_key(tenant, subject))
        sid = self._valid(record, tenant, subject)
        if sid is not None and record is not None and not self.is_idle(record):
            return sid
        return self.renew(tenant, subject)

    def session_for_message(self, tenant: str, subject: str) -> SessionId:
        """The session a message being sent now belongs to; marks it used.

        Renews the id when the stored one is idle (or missing), so the first message after an
        idle period starts a new conversation.
        """
        at = self.clock()
        record = self.store.get(user_key(tenant, subject))
        sid = self._valid(record, tenant, subject)
        if sid is None or record is None or self.is_idle(record, at):
            sid = SessionId.new(tenant, subject)
        self.store.put(sid.user_key, SessionRecord(session_id=str(sid), last_active=at))
        return sid

    def renew(self, tenant: str, subject: str) -> SessionId:
        """Start a new session now ("New chat", or after an idle period)."""
        sid = SessionId.new(tenant, subject)
        self.store.put(sid.user_key, SessionRecord(session_id=str(sid), last_active=self.clock()))
        return sid


def store_from_settings(settings: Settings, dynamodb_client: Any = None) -> SessionStore:
    """The store configured by ``SESSIONS_URL`` (SQLite, wins) or ``SESSIONS_TABLE`` (DynamoDB).

    Args:
        settings: the process settings.
        dynamodb_client: a boto3 client to reuse; created with :func:`rag.aws.make_client` if None.

    Raises:
        ValueError: neither variable is set (message names both).
    """
    if settings.sessions_url:
        return SqliteSessionStore(settings.sessions_url.removeprefix("sqlite:///"))
    if settings.sessions_table:
        if dynamodb_client is None:
            from rag.aws import make_client

            dynamodb_client = make_client("dynamodb", settings)
        return DynamoSessionStore(dynamodb_client, settings.sessions_table)
    raise ValueError("SESSIONS_TABLE or SESSIONS_URL: one of them is required by the web chat")
