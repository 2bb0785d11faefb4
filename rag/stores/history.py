"""Chat history: one *turn* (question + answer + sources) written atomically once the answer is done.

Why not langchain-community's ``DynamoDBChatMessageHistory`` / ``SQLChatMessageHistory``? They
store messages one by one (the SQL one: a row per message; the DynamoDB one: a read-modify-write
of the whole list, which loses turns under concurrent writers), have no place for the sources of
an answer, and would leave a lone question behind when the answer fails. Here a turn is stored
only when it is complete, in one write:

* DynamoDB (``CHATHISTORY_TABLE``, HASH key ``SessionId``, TTL attribute ``expires_at``): one item
  per session; a turn is appended with a single ``UpdateItem`` ``list_append`` (atomic, no read
  first), which also pushes ``expires_at`` to now + ``HISTORY_TTL_SECONDS``
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html). The table only has a
  HASH key (as the onboarding script creates it), so turns live in a list attribute; the oldest
  turns are dropped beyond :data:`MAX_TURNS` to stay far below the 400 KB item limit.
* SQLite (``HISTORY_URL=sqlite:///path``): one row per turn, one ``INSERT``.

Every backend error is raised as :class:`HistoryUnavailableError` (the API answers 503).

The store has no "list" operation: turns are only ever read by their full session id,
``<tenant>:<user>:<uuid>``, which the API checks against the caller; the list of a user's
conversations lives in the web chat's sessions store (:mod:`rag.stores.sessions`), keyed by the user.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.stores.base import StoreUnavailableError, dynamodb_errors, dynamodb_table, select_backend
from rag.stores.sqlite import SharedConnections

#: Turns kept per session (oldest dropped first).
MAX_TURNS = 50
#: Read-and-write rounds of a DynamoDB regenerate before giving up (another append won each time).
REPLACE_ATTEMPTS = 3
_CONDITION_FAILED = frozenset({"ConditionalCheckFailedException"})


class HistoryUnavailableError(StoreUnavailableError):
    """The history backend failed (DynamoDB throttled/unreachable, SQLite locked or unwritable)."""

    code = "history_unavailable"
    public_message = "Chat history is unavailable; try again shortly."


@dataclass(frozen=True)
class Turn:
    """One question and its complete answer.

    Attributes:
        question: the user's question, as asked.
        answer: the complete answer.
        sources: the citations returned with the answer (JSON-able dicts).
        created_at: when the question was received (ISO 8601, UTC).
        answered_at: when the answer was complete (ISO 8601, UTC).
        answer_id: the answer's id (as returned by the API; feedback refers to it).
        model_id: the model that answered.
    """

    question: str
    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    answered_at: str = ""
    answer_id: str = ""
    model_id: str = ""


def utc_now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class HistoryStore(Protocol):
    """Where turns live. Methods are blocking: call them from a worker thread in async code."""

    def load(self, session_id: str, *, limit: int | None = None) -> list[Turn]:
        """The session's turns, oldest first (only the last ``limit`` when given)."""

    def append(self, session_id: str, turn: Turn) -> None:
        """Store one complete turn atomically."""

    def clear(self, session_id: str) -> None:
        """Delete every turn of the session (idempotent)."""

    def replace_last(self, session_id: str, turn: Turn) -> None:
        """Replace the session's last turn with ``turn`` atomically (a regenerated answer); append when it has none."""


def _turn_to_json(turn: Turn) -> dict[str, str]:
    row = {
        "question": turn.question,
        "answer": turn.answer,
        "sources": json.dumps(turn.sources, ensure_ascii=False),
        "created_at": turn.created_at,
        "answered_at": turn.answered_at,
    }
    # newer optional fields only when set (items written before them, and older DynamoDB Local
    # versions, know no empty strings)
    row.update({k: v for k, v in (("answer_id", turn.answer_id), ("model_id", turn.model_id)) if v})
    return row


def _turn_from_json(raw: dict[str, Any]) -> Turn:
    try:
        sources = json.loads(raw.get("sources") or "[]")
    except ValueError:
        sources = []
    return Turn(
        question=str(raw.get("question", "")),
        answer=str(raw.get("answer", "")),
        sources=sources if isinstance(sources, list) else [],
        created_at=str(raw.get("created_at", "")),
        answered_at=str(raw.get("answered_at", "")),
        answer_id=str(raw.get("answer_id") or ""),
        model_id=str(raw.get("model_id") or ""),
    )


class DynamoDBHistoryStore:
    """History in a DynamoDB table (HASH key ``SessionId``, TTL attribute ``expires_at``).

    Args:
        table: a boto3 DynamoDB ``Table`` resource.
        ttl_seconds: lifetime of a session after its last turn, seconds.
        max_turns: turns kept per session.
    """

    def __init__(self, table: Any, *, ttl_seconds: int, max_turns: int = MAX_TURNS) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds
        self.max_turns = max_turns

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        with dynamodb_errors(HistoryUnavailableError, "chat history"):
            return fn(**kwargs)

    def load(self, session_id: str, *, limit: int | None = None) -> list[Turn]:
        """See :class:`HistoryStore`. Expired items (TTL passed, not yet deleted) count as empty."""
        item = self._call(self.table.get_item, Key={"SessionId": session_id}, ConsistentRead=True).get("Item")
        if not item or int(item.get("expires_at", 0)) < time.time():
            return []
        turns = [_turn_from_json(raw) for raw in item.get("Turns", [])]
        return turns[-limit:] if limit else turns

    def append(self, session_id: str, turn: Turn) -> None:
        """See :class:`HistoryStore`: one ``UpdateItem`` with ``list_append``."""
        response = self._call(
            self.table.update_item,
            Key={"SessionId": session_id},
            UpdateExpression=(
                "SET Turns = list_append(if_not_exists(Turns, :empty), :turn), expires_at = :exp, updated_at = :now"
            ),
            ExpressionAttributeValues={
                ":empty": [],
                ":turn": [_turn_to_json(turn)],
                ":exp": int(time.time()) + self.ttl_seconds,
                ":now": turn.answered_at or utc_now_iso(),
            },
            ReturnValues="UPDATED_NEW",
        )
        count = len(response.get("Attributes", {}).get("Turns", []))
        if count > self.max_turns:
            drop = count - self.max_turns
            # Best effort; the condition keeps a concurrent trim from dropping too much.
            self._call(
                self.table.update_item,
                Key={"SessionId": session_id},
                UpdateExpression="REMOVE " + ", ".join(f"Turns[{i}]" for i in range(drop)),
                ConditionExpression="size(Turns) > :max",
                ExpressionAttributeValues={":max": self.max_turns},
            )

    def clear(self, session_id: str) -> None:
        """See :class:`HistoryStore`."""
        self._call(self.table.delete_item, Key={"SessionId": session_id})

    def replace_last(self, session_id: str, turn: Turn) -> None:
        """See :class:`HistoryStore`: one conditional ``UpdateItem`` of ``Turns[n-1]``.

        The condition ``size(Turns) = n`` makes the write fail, instead of overwriting the wrong turn,
        when another append landed since the read; the read and the write are then tried again
        (:data:`REPLACE_ATTEMPTS` times in all).
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html

        Raises:
            HistoryUnavailableError: DynamoDB failed, or the session kept changing under the write.
        """
        from botocore.exceptions import ClientError

        for _ in range(REPLACE_ATTEMPTS):
            count = len(self.load(session_id))
            if count == 0:
                self.append(session_id, turn)
                return
            try:
                with dynamodb_errors(HistoryUnavailableError, "chat history", passthrough=_CONDITION_FAILED):
                    self.table.update_item(
                        Key={"SessionId": session_id},
                        UpdateExpression=f"SET Turns[{count - 1}] = :turn, expires_at = :exp, updated_at = :now",
                        ConditionExpression="size(Turns) = :n",
                        ExpressionAttributeValues={
                            ":turn": _turn_to_json(turn),
                            ":n": count,
                            ":exp": int(time.time()) + self.ttl_seconds,
                            ":now": turn.answered_at or utc_now_iso(),
                        },
                    )
                return
            except ClientError:  # only ConditionalCheckFailedException passes through: read again
                continue
        raise HistoryUnavailableError(f"chat history: session changed during {REPLACE_ATTEMPTS} replace attempts")


class SQLiteHistoryStore:
    """History in a SQLite file (the local default): one row per turn.

    Args:
        path: database file (created with its table on first use).
        ttl_seconds: rows older than this are ignored and purged on write, seconds.
        max_turns: turns returned at most per session.
        purge_interval_seconds: expired rows of every session are deleted by an ``append`` at most
            this often per process (one indexed ``DELETE``), so the file does not grow forever.
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS chat_turns (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        sources TEXT NOT NULL,
        created_at TEXT NOT NULL,
        answered_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        answer_id TEXT NOT NULL DEFAULT '',
        model_id TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS chat_turns_session ON chat_turns (session_id, seq);
    CREATE INDEX IF NOT EXISTS chat_turns_expiry ON chat_turns (expires_at);
    """
    #: Columns added after the first release (files created before get them on open).
    _ADDED_COLUMNS = ("answer_id", "model_id")

    def __init__(
        self, path: str | Path, *, ttl_seconds: int, max_turns: int = MAX_TURNS, purge_interval_seconds: float = 60.0
    ) -> None:
        self.path = Path(path)
        self.ttl_seconds = ttl_seconds
        self.max_turns = max_turns
        self.purge_interval_seconds = purge_interval_seconds
        self._next_purge = 0.0  # time.monotonic() after which the next append purges
        self._purge_lock = threading.Lock()
        self._connections = SharedConnections(
            self.path, self._SCHEMA, error=HistoryUnavailableError, label="chat history", migrate=self._migrate
        )

    @classmethod
    def _migrate(cls, conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(chat_turns)")}
        for column in cls._ADDED_COLUMNS:
            if column not in columns:
                conn.execute(f"ALTER TABLE chat_turns ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._connections.execute(sql, params)

    def load(self, session_id: str, *, limit: int | None = None) -> list[Turn]:
        """See :class:`HistoryStore`."""
        rows = self._run(
            "SELECT question, answer, sources, created_at, answered_at, answer_id, model_id FROM chat_turns "
            "WHERE session_id = ? AND expires_at >= ? ORDER BY seq DESC LIMIT ?",
            (session_id, int(time.time()), min(limit or self.max_turns, self.max_turns)),
        )
        return [
            _turn_from_json(
                {
                    "question": q,
                    "answer": a,
                    "sources": s,
                    "created_at": c,
                    "answered_at": d,
                    "answer_id": aid,
                    "model_id": mid,
                }
            )
            for q, a, s, c, d, aid, mid in reversed(rows)
        ]

    def append(self, session_id: str, turn: Turn) -> None:
        """See :class:`HistoryStore`: one ``INSERT`` (atomic)."""
        row = _turn_to_json(turn)
        self._run(
            "INSERT INTO chat_turns (session_id, question, answer, sources, created_at, answered_at, expires_at, "
            "answer_id, model_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                row["question"],
                row["answer"],
                row["sources"],
                row["created_at"],
                row["answered_at"],
                int(time.time()) + self.ttl_seconds,
                row.get("answer_id", ""),
                row.get("model_id", ""),
            ),
        )
        self._purge_expired()

    def _purge_expired(self) -> None:
        """Delete every session's expired rows, at most once per ``purge_interval_seconds``."""
        with self._purge_lock:
            now = time.monotonic()
            if now < self._next_purge:
                return
            self._next_purge = now + self.purge_interval_seconds
        self._run("DELETE FROM chat_turns WHERE expires_at < ?", (int(time.time()),))

    def clear(self, session_id: str) -> None:
        """See :class:`HistoryStore`."""
        self._run("DELETE FROM chat_turns WHERE session_id = ?", (session_id,))

    def replace_last(self, session_id: str, turn: Turn) -> None:
        """See :class:`HistoryStore`: one ``UPDATE`` of the session's newest live row (atomic), else an append."""
        row = _turn_to_json(turn)
        now = int(time.time())
        updated = self._run(
            "UPDATE chat_turns SET question = ?, answer = ?, sources = ?, created_at = ?, answered_at = ?, "
            "expires_at = ?, answer_id = ?, model_id = ? WHERE seq = (SELECT MAX(seq) FROM chat_turns "
            "WHERE session_id = ? AND expires_at >= ?) RETURNING seq",
            (
                row["question"],
                row["answer"],
                row["sources"],
                row["created_at"],
                row["answered_at"],
                now + self.ttl_seconds,
                row.get("answer_id", ""),
                row.get("model_id", ""),
                session_id,
                now,
            ),
        )
        if not updated:
            self.append(session_id, turn)


class InMemoryHistoryStore:
    """History in a dict: for unit tests and ``HISTORY_URL`` unset without a table (dev only)."""

    def __init__(self) -> None:
        self._turns: dict[str, list[Turn]] = {}
        self._lock = threading.Lock()

    def load(self, session_id: str, *, limit: int | None = None) -> list[Turn]:
        """See :class:`HistoryStore`."""
        with self._lock:
            turns = list(self._turns.get(session_id, []))
        return turns[-limit:] if limit else turns

    def append(self, session_id: str, turn: Turn) -> None:
        """See :class:`HistoryStore`."""
        with self._lock:
            self._turns.setdefault(session_id, []).append(turn)

    def clear(self, session_id: str) -> None:
        """See :class:`HistoryStore`."""
        with self._lock:
            self._turns.pop(session_id, None)

    def replace_last(self, session_id: str, turn: Turn) -> None:
        """See :class:`HistoryStore`."""
        with self._lock:
            turns = self._turns.setdefault(session_id, [])
            if turns:
                turns[-1] = turn
            else:
                turns.append(turn)


def make_history_store(settings: Settings, *, dynamodb_resource: Any = None) -> HistoryStore:
    """The store the settings ask for (:func:`rag.stores.base.select_backend`).

    ``HISTORY_URL=sqlite:///path`` → SQLite; else ``CHATHISTORY_TABLE`` → DynamoDB; else an
    in-memory store (history lost on restart; logged by the caller).

    Args:
        settings: ``HISTORY_URL``, ``CHATHISTORY_TABLE``, ``HISTORY_TTL_SECONDS``.
        dynamodb_resource: a boto3 DynamoDB resource (tests); from :func:`rag.aws.make_resource` if None.
    """
    ttl = settings.history_ttl_seconds
    return select_backend(
        settings.history_url,
        settings.chathistory_table,
        sqlite=lambda path: SQLiteHistoryStore(path, ttl_seconds=ttl),
        dynamodb=lambda name: DynamoDBHistoryStore(dynamodb_table(settings, name, dynamodb_resource), ttl_seconds=ttl),
        memory=InMemoryHistoryStore,
        names="HISTORY_URL or CHATHISTORY_TABLE",
    )


def replace_last_turn(store: HistoryStore, session_id: str, turn: Turn) -> None:
    """Replace the session's last turn with ``turn`` (a regenerated answer); append when it has none.

    Each backend does it in one atomic write (:meth:`HistoryStore.replace_last`): a failure leaves the
    old turn in place, never a half-rewritten conversation.

    Raises:
        HistoryUnavailableError: the backend failed.
    """
    store.replace_last(session_id, turn)
