"""The web chat's conversations: many per user, listed newest first, renamed, deleted, renewed when idle.

A *conversation* is one chat session: its id is the session id the RAG API keys the history by,
``<tenant>:<user>:<uuid>`` (:class:`rag.tenant.SessionId`). The store keeps, per user key
``<tenant>:<user>``, one record per conversation (:class:`Conversation`): its session id, a title
(from the first question, renamable), ``created_at`` and ``last_activity`` (epoch seconds). The
messages live in the API's history store (``GET``/``DELETE /api/v1/sessions/{session_id}/messages``).

Use from the page (:class:`SessionManager`; every method takes the verified ``tenant`` and ``user``
and only ever reads or changes that user's conversations): ``conversations`` (the sidebar),
``current`` (page load), ``renew`` ("New chat": an id stored with its first message),
``session_for_message`` (sending; a new conversation when idle or foreign), ``open`` (resume; refused
unless it is the user's), ``rename``, ``delete``.

Storage: DynamoDB ``SESSIONS_TABLE`` (HASH ``TenantId`` = user key, RANGE ``ConversationId`` = the
uuid) or SQLite ``SESSIONS_URL=sqlite:///path`` (local demo, tests).

This is the chat area's minimal version of the interface the store area builds (same names and
shapes); the store area's implementation replaces it on merge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.stores.sqlite import connect
from rag.tenant import SessionId, parse_session_id, validate_tenant_id

#: The DynamoDB table's partition key, ``<tenant>:<user>``.
HASH_KEY = "TenantId"
#: The DynamoDB table's sort key: the conversation's uuid.
RANGE_KEY = "ConversationId"
#: Longest title kept, characters (a sidebar line).
MAX_TITLE_CHARS = 80
#: Conversations per page of :meth:`SessionManager.conversations` by default, and at most.
DEFAULT_PAGE = 50
MAX_PAGE = 100


def now() -> float:
    """The current time in epoch seconds (tests patch this to a fake clock)."""
    return time.time()


class ConversationNotFoundError(LookupError):
    """No such conversation for this user: absent, deleted, malformed or someone else's (one error for all)."""


def clean_title(text: str, *, limit: int = MAX_TITLE_CHARS) -> str:
    """A one-line title: whitespace collapsed, cut to ``limit`` characters with ``…``; ``""`` when blank."""
    title = " ".join(text.split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def user_key(tenant: str, user: str) -> str:
    """``<tenant>:<user>``, the partition of a user's conversations.

    Raises:
        ValueError: a bad tenant id, or a user id that is empty or contains ``:`` or whitespace.
    """
    validate_tenant_id(tenant)
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ValueError("invalid user id")
    return f"{tenant}:{user}"


def _conversation_id(session_id: str) -> str:
    return session_id.rsplit(":", 1)[-1]


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation of a user.

    Attributes:
        session_id: ``<tenant>:<user>:<uuid>``, the id the API's history uses.
        title: from the first question or a rename (≤ :data:`MAX_TITLE_CHARS`).
        created_at: when the first message was sent, epoch seconds.
        last_activity: when a message was last sent in it (or it was resumed), epoch seconds.
    """

    session_id: str
    title: str
    created_at: float
    last_activity: float

    @property
    def conversation_id(self) -> str:
        """The uuid part of :attr:`session_id` (the store's sort key)."""
        return _conversation_id(self.session_id)

    @property
    def display_title(self) -> str:
        """:attr:`title`, or ``"Untitled conversation"``."""
        return self.title or "Untitled conversation"


class SessionStore(Protocol):
    """Where the conversation records live, per user key ``<tenant>:<user>``. Blocking calls."""

    def recent(self, user_key: str, *, limit: int = DEFAULT_PAGE) -> list[Conversation]:
        """The user's conversations, newest ``last_activity`` first, at most ``limit``."""

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """The user's conversation, or None."""

    def create(self, user_key: str, conversation: Conversation) -> bool:
        """Store a new conversation; False (nothing changed) when one with this id exists."""

    def touch(self, user_key: str, conversation_id: str, at: float) -> bool:
        """Set ``last_activity`` to ``at``; False when there is no such conversation."""

    def rename(self, user_key: str, conversation_id: str, title: str) -> bool:
        """Set the title; False when there is no such conversation."""

    def delete(self, user_key: str, conversation_id: str) -> bool:
        """Remove it; False when there was no such conversation."""


class SqliteSessionStore:
    """Conversations in a SQLite file (local demo, tests), opened with :func:`rag.stores.sqlite.connect`.

    Args:
        path: the database file; created with its parent directory when missing.
    """

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS conversations (user_key TEXT NOT NULL, conversation_id TEXT NOT NULL,"
        " session_id TEXT NOT NULL, title TEXT NOT NULL, created_at REAL NOT NULL, last_activity REAL NOT NULL,"
        " PRIMARY KEY (user_key, conversation_id));"
        "CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (user_key, last_activity DESC);"
    )
    _COLUMNS = "session_id, title, created_at, last_activity"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = connect(self.path, self.SCHEMA)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def recent(self, user_key: str, *, limit: int = DEFAULT_PAGE) -> list[Conversation]:
        """See :class:`SessionStore`."""
        rows = self._rows(
            f"SELECT {self._COLUMNS} FROM conversations WHERE user_key = ?"  # noqa: S608 - constant columns
            " ORDER BY last_activity DESC LIMIT ?",
            (user_key, max(1, min(limit, MAX_PAGE))),
        )
        return [Conversation(r[0], r[1], float(r[2]), float(r[3])) for r in rows]

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """See :class:`SessionStore`."""
        rows = self._rows(
            f"SELECT {self._COLUMNS} FROM conversations WHERE user_key = ? AND conversation_id = ?",  # noqa: S608
            (user_key, conversation_id),
        )
        return Conversation(rows[0][0], rows[0][1], float(rows[0][2]), float(rows[0][3])) if rows else None

    def create(self, user_key: str, conversation: Conversation) -> bool:
        """See :class:`SessionStore`."""
        c = conversation
        return bool(
            self._rows(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (user_key, c.conversation_id, c.session_id, c.title, c.created_at, c.last_activity),
            )
        )

    def touch(self, user_key: str, conversation_id: str, at: float) -> bool:
        """See :class:`SessionStore` (``last_activity`` never moves back)."""
        return bool(
            self._rows(
                "UPDATE conversations SET last_activity = max(last_activity, ?)"
                " WHERE user_key = ? AND conversation_id = ? RETURNING 1",
                (at, user_key, conversation_id),
            )
        )

    def rename(self, user_key: str, conversation_id: str, title: str) -> bool:
        """See :class:`SessionStore`."""
        return bool(
            self._rows(
                "UPDATE conversations SET title = ? WHERE user_key = ? AND conversation_id = ? RETURNING 1",
                (title, user_key, conversation_id),
            )
        )

    def delete(self, user_key: str, conversation_id: str) -> bool:
        """See :class:`SessionStore`."""
        return bool(
            self._rows(
                "DELETE FROM conversations WHERE user_key = ? AND conversation_id = ? RETURNING 1",
                (user_key, conversation_id),
            )
        )


class DynamoSessionStore:
    """Conversations in the tenant's DynamoDB table (HASH ``TenantId``, RANGE ``ConversationId``).

    Listing is one ``Query`` on the user's partition, sorted here by ``last_activity``
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Query.html).

    Args:
        client: a boto3 DynamoDB client (from :func:`rag.aws.make_client`).
        table: the table name (``SESSIONS_TABLE``).
    """

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def _key(self, user_key: str, conversation_id: str) -> dict[str, Any]:
        return {HASH_KEY: {"S": user_key}, RANGE_KEY: {"S": conversation_id}}

    @staticmethod
    def _from_item(item: dict[str, Any]) -> Conversation:
        return Conversation(
            session_id=item["session_id"]["S"],
            title=item.get("title", {}).get("S", ""),
            created_at=float(item.get("created_at", {}).get("N", "0")),
            last_activity=float(item.get("last_activity", {}).get("N", "0")),
        )

    def _conditional(self, call: Callable[..., Any], **kwargs: Any) -> bool:
        try:
            call(TableName=self.table, **kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def recent(self, user_key: str, *, limit: int = DEFAULT_PAGE) -> list[Conversation]:
        """See :class:`SessionStore`."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": HASH_KEY},
            "ExpressionAttributeValues": {":k": {"S": user_key}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        rows = [self._from_item(i) for i in items if "session_id" in i]
        return sorted(rows, key=lambda c: c.last_activity, reverse=True)[: max(1, min(limit, MAX_PAGE))]

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """See :class:`SessionStore` (strongly consistent read)."""
        item = self.client.get_item(
            TableName=self.table, Key=self._key(user_key, conversation_id), ConsistentRead=True
        ).get("Item")
        return self._from_item(item) if item and "session_id" in item else None

    def create(self, user_key: str, conversation: Conversation) -> bool:
        """See :class:`SessionStore`."""
        item = {
            **self._key(user_key, conversation.conversation_id),
            "session_id": {"S": conversation.session_id},
            "title": {"S": conversation.title},
            "created_at": {"N": repr(float(conversation.created_at))},
            "last_activity": {"N": repr(float(conversation.last_activity))},
        }
        return self._conditional(
            self.client.put_item, Item=item, ConditionExpression=f"attribute_not_exists({RANGE_KEY})"
        )

    def touch(self, user_key: str, conversation_id: str, at: float) -> bool:
        """See :class:`SessionStore`."""
        return (
            self._conditional(
                self.client.update_item,
                Key=self._key(user_key, conversation_id),
                UpdateExpression="SET last_activity = :at",
                ConditionExpression=f"attribute_exists({RANGE_KEY}) AND last_activity <= :at",
                ExpressionAttributeValues={":at": {"N": repr(float(at))}},
            )
            or self.get(user_key, conversation_id) is not None
        )

    def rename(self, user_key: str, conversation_id: str, title: str) -> bool:
        """See :class:`SessionStore`."""
        return self._conditional(
            self.client.update_item,
            Key=self._key(user_key, conversation_id),
            UpdateExpression="SET title = :t",
            ConditionExpression=f"attribute_exists({RANGE_KEY})",
            ExpressionAttributeValues={":t": {"S": title}},
        )

    def delete(self, user_key: str, conversation_id: str) -> bool:
        """See :class:`SessionStore`."""
        return self._conditional(
            self.client.delete_item,
            Key=self._key(user_key, conversation_id),
            ConditionExpression=f"attribute_exists({RANGE_KEY})",
        )


class SessionManager:
    """The page's view of a user's conversations: ownership, titles, idle renewal (see the module docstring).

    Args:
        store: where the records live.
        idle_seconds: inactivity after which the next message starts a new conversation, in seconds.
        clock: returns epoch seconds (default :func:`now`).
    """

    def __init__(self, store: SessionStore, idle_seconds: float, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self.clock = clock or now

    def _own(self, tenant: str, user: str, session_id: object) -> tuple[str, str] | None:
        """``(user key, conversation id)`` when ``session_id`` is a valid id of this user, else None."""
        key = user_key(tenant, user)
        try:
            sid = parse_session_id(session_id)
        except ValueError:
            return None
        if sid.user_key != key:
            return None
        return key, _conversation_id(str(sid))

    def _require(self, tenant: str, user: str, session_id: str) -> tuple[str, str]:
        owned = self._own(tenant, user, session_id)
        if owned is None:
            raise ConversationNotFoundError("no such conversation")
        return owned

    def is_idle(self, conversation: Conversation, at: float | None = None) -> bool:
        """True when ``conversation`` was last active more than ``idle_seconds`` before ``at`` (default now)."""
        return (self.clock() if at is None else at) - conversation.last_activity > self.idle_seconds

    def conversations(self, tenant: str, user: str, *, limit: int = DEFAULT_PAGE) -> list[Conversation]:
        """The user's conversations, newest activity first (at most ``limit``).

        Raises:
            ValueError: bad tenant or user id.
        """
        return self.store.recent(user_key(tenant, user), limit=limit)

    def current(self, tenant: str, user: str) -> SessionId:
        """Page load: the latest conversation unless idle, else a fresh id (nothing is written)."""
        latest = self.store.recent(user_key(tenant, user), limit=1)
        if latest and not self.is_idle(latest[0]):
            return parse_session_id(latest[0].session_id)
        return self.renew(tenant, user)

    def renew(self, tenant: str, user: str) -> SessionId:
        """A fresh conversation id ("New chat", or after an idle period); stored with its first message."""
        user_key(tenant, user)
        return SessionId.new(tenant, user)

    def session_for_message(
        self, tenant: str, user: str, session_id: str | None = None, *, question: str = ""
    ) -> SessionId:
        """The conversation a message being sent now belongs to; marks it active.

        Returns:
            ``session_id`` when it is this user's and not idle (created, titled from ``question``,
            if new); else a new conversation's id (the idle one stays listed). A malformed or
            foreign ``session_id`` also gets a new conversation (never someone else's).
        """
        at = self.clock()
        if session_id is None:
            session_id = str(self.current(tenant, user))
        owned = self._own(tenant, user, session_id)
        if owned is not None:
            key, conversation_id = owned
            existing = self.store.get(key, conversation_id)
            if existing is None:
                new = Conversation(session_id, clean_title(question), at, at)
                if self.store.create(key, new) or self.store.touch(key, conversation_id, at):
                    return parse_session_id(session_id)
            elif not self.is_idle(existing, at) and self.store.touch(key, conversation_id, at):
                return parse_session_id(session_id)
        sid = SessionId.new(tenant, user)
        self.store.create(user_key(tenant, user), Conversation(str(sid), clean_title(question), at, at))
        return sid

    def open(self, tenant: str, user: str, session_id: str) -> Conversation:
        """Resume a conversation (sidebar or URL) and mark it active, so its next message continues it.

        Raises:
            ConversationNotFoundError: not a conversation of this user (malformed, someone else's, deleted).
        """
        key, conversation_id = self._require(tenant, user, session_id)
        if not self.store.touch(key, conversation_id, self.clock()):
            raise ConversationNotFoundError("no such conversation")
        conversation = self.store.get(key, conversation_id)
        if conversation is None:
            raise ConversationNotFoundError("no such conversation")
        return conversation

    def rename(self, tenant: str, user: str, session_id: str, title: str) -> Conversation:
        """Give a conversation a new title (cleaned by :func:`clean_title`).

        Raises:
            ValueError: the title is blank.
            ConversationNotFoundError: not a conversation of this user.
        """
        cleaned = clean_title(title)
        if not cleaned:
            raise ValueError("the title must not be blank")
        key, conversation_id = self._require(tenant, user, session_id)
        if not self.store.rename(key, conversation_id, cleaned):
            raise ConversationNotFoundError("no such conversation")
        conversation = self.store.get(key, conversation_id)
        if conversation is None:
            raise ConversationNotFoundError("no such conversation")
        return conversation

    def delete(self, tenant: str, user: str, session_id: str) -> None:
        """Forget a conversation (the caller deletes its messages through the API).

        Raises:
            ConversationNotFoundError: not a conversation of this user (already deleted included).
        """
        key, conversation_id = self._require(tenant, user, session_id)
        if not self.store.delete(key, conversation_id):
            raise ConversationNotFoundError("no such conversation")


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
