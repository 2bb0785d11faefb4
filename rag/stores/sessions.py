"""A user's conversations (chat sessions): many per user, newest first, renamable, deletable.

Each conversation is one row keyed by the user (``<tenant>:<user>``, :attr:`webapp.identity.Identity.user_key`)
and the conversation id (the session id ``<tenant>:<email>:<uuid>`` the API's history is stored under).
A row holds the title (the first question, renamable), when it was created and when it was last used
(epoch seconds). Rows live in the tenant's DynamoDB table (``SESSIONS_TABLE``: HASH key ``TenantId`` =
the user key, RANGE key ``ConversationId``) or, for the local demo and tests, in SQLite
(``SESSIONS_URL=sqlite:///path``).

Only the user's own rows can be read: every call takes the user key, and a conversation id
is only ever looked up under it, so another user's id is "not found", never opened.

Idleness is checked when a message is *sent* (:meth:`SessionManager.conversation_for_message`): the
first message after ``SESSION_IDLE_SECONDS`` of inactivity starts a new conversation; the old one
stays in the list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.stores.sqlite import connect
from rag.tenant import InvalidSessionIdError, InvalidTenantIdError, SessionId, parse_session_id

#: The DynamoDB table's partition key: the user key ``<tenant>:<user>``.
HASH_KEY = "TenantId"
#: The DynamoDB table's sort key: the conversation (session) id.
RANGE_KEY = "ConversationId"
#: Longest conversation title kept (characters); longer first questions are cut with an ellipsis.
MAX_TITLE_CHARS = 80
#: Most conversations listed in the sidebar (newest first).
MAX_LISTED = 100


def now() -> float:
    """The current time in epoch seconds (tests patch this to a fake clock)."""
    return time.time()


def title_from(question: str) -> str:
    """A conversation title from its first question: one line, at most :data:`MAX_TITLE_CHARS`."""
    text = " ".join(question.split())
    if len(text) <= MAX_TITLE_CHARS:
        return text or "New chat"
    return text[: MAX_TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation of a user.

    Attributes:
        conversation_id: the session id ``<tenant>:<email>:<uuid>`` (the API's history key).
        title: the first question, or the name the user gave it.
        created_at: when it was started, epoch seconds.
        last_active: when a message was last sent in it, epoch seconds.
    """

    conversation_id: str
    title: str
    created_at: float
    last_active: float


class SessionStore(Protocol):
    """Where a user's conversation rows live (every method is scoped to one user key)."""

    def list(self, user_key: str, limit: int = MAX_LISTED) -> list[Conversation]:
        """The user's conversations, most recently active first."""

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """The user's conversation, or None (also for another user's id)."""

    def put(self, user_key: str, conversation: Conversation) -> None:
        """Create or replace the user's conversation row."""

    def delete(self, user_key: str, conversation_id: str) -> None:
        """Remove the row (idempotent)."""


class SqliteSessionStore:
    """Conversation rows in a SQLite file (local demo, tests), opened with :func:`rag.stores.sqlite.connect`.

    Args:
        path: the database file; created with its parent directory when missing.
    """

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS conversations ("
        " user_key TEXT NOT NULL, conversation_id TEXT NOT NULL, title TEXT NOT NULL,"
        " created_at REAL NOT NULL, last_active REAL NOT NULL, PRIMARY KEY (user_key, conversation_id));"
        "CREATE INDEX IF NOT EXISTS conversations_recent ON conversations (user_key, last_active);"
    )

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = connect(self.path, self.SCHEMA)

    def list(self, user_key: str, limit: int = MAX_LISTED) -> list[Conversation]:
        """The user's conversations, most recently active first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT conversation_id, title, created_at, last_active FROM conversations"
                " WHERE user_key = ? ORDER BY last_active DESC LIMIT ?",
                (user_key, limit),
            ).fetchall()
        return [Conversation(r[0], r[1], float(r[2]), float(r[3])) for r in rows]

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """The user's conversation, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT conversation_id, title, created_at, last_active FROM conversations"
                " WHERE user_key = ? AND conversation_id = ?",
                (user_key, conversation_id),
            ).fetchone()
        return Conversation(row[0], row[1], float(row[2]), float(row[3])) if row else None

    def put(self, user_key: str, conversation: Conversation) -> None:
        """Create or replace the user's conversation row."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO conversations (user_key, conversation_id, title, created_at, last_active)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_key, conversation_id) DO UPDATE SET"
                " title = excluded.title, last_active = excluded.last_active",
                (user_key, conversation.conversation_id, conversation.title, conversation.created_at,
                 conversation.last_active),
            )  # fmt: skip

    def delete(self, user_key: str, conversation_id: str) -> None:
        """Remove the row (idempotent)."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM conversations WHERE user_key = ? AND conversation_id = ?", (user_key, conversation_id)
            )


class DynamoSessionStore:
    """Conversation rows in the tenant's DynamoDB table.

    Item shape: ``{"TenantId": "<tenant>:<user>", "ConversationId": "<session id>", "title": "...",
    "created_at": <epoch s>, "last_active": <epoch s>}``. Listing is a ``Query`` on the partition
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Query.html), sorted here by
    ``last_active`` (a user has at most a few hundred rows).

    Args:
        client: a boto3 DynamoDB client (from :func:`rag.aws.make_client`).
        table: the table name (``SESSIONS_TABLE``).
    """

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _from_item(item: dict[str, Any]) -> Conversation:
        return Conversation(
            conversation_id=item[RANGE_KEY]["S"],
            title=item.get("title", {}).get("S", "New chat"),
            created_at=float(item.get("created_at", {}).get("N", "0")),
            last_active=float(item.get("last_active", {}).get("N", "0")),
        )

    def list(self, user_key: str, limit: int = MAX_LISTED) -> list[Conversation]:
        """The user's conversations, most recently active first."""
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
        rows = [self._from_item(i) for i in items if RANGE_KEY in i]
        return sorted(rows, key=lambda c: c.last_active, reverse=True)[:limit]

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """The user's conversation, or None (strongly consistent read)."""
        item = self.client.get_item(
            TableName=self.table,
            Key={HASH_KEY: {"S": user_key}, RANGE_KEY: {"S": conversation_id}},
            ConsistentRead=True,
        ).get("Item")
        return self._from_item(item) if item else None

    def put(self, user_key: str, conversation: Conversation) -> None:
        """Create or replace the user's conversation row."""
        self.client.put_item(
            TableName=self.table,
            Item={
                HASH_KEY: {"S": user_key},
                RANGE_KEY: {"S": conversation.conversation_id},
                "title": {"S": conversation.title},
                "created_at": {"N": repr(float(conversation.created_at))},
                "last_active": {"N": repr(float(conversation.last_active))},
            },
        )

    def delete(self, user_key: str, conversation_id: str) -> None:
        """Remove the row (idempotent)."""
        self.client.delete_item(
            TableName=self.table, Key={HASH_KEY: {"S": user_key}, RANGE_KEY: {"S": conversation_id}}
        )


class ConversationNotFoundError(LookupError):
    """The conversation id is not one of the user's conversations (another user's, deleted, or malformed)."""


class SessionManager:
    """The user's conversations: which one a message goes to, resuming, renaming, deleting.

    A new conversation is a *draft* until its first message: :meth:`new_draft` hands out an id
    without storing anything, so "New chat" and page loads do not fill the list with empty rows.

    Args:
        store: where the rows live.
        idle_seconds: inactivity after which the next message starts a new conversation, in seconds.
        clock: returns epoch seconds (default :func:`now`).
    """

    def __init__(self, store: SessionStore, idle_seconds: float, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self.clock = clock or now

    @staticmethod
    def new_draft(tenant: str, email: str) -> SessionId:
        """A fresh conversation id for the user (stored only once a message is sent)."""
        return SessionId.new(tenant, email)

    def list(self, user_key: str) -> list[Conversation]:
        """The user's conversations, most recently active first."""
        return self.store.list(user_key)

    def owned(self, user_key: str, conversation_id: str) -> Conversation:
        """The user's stored conversation ``conversation_id``.

        Raises:
            ConversationNotFoundError: malformed id, another tenant's or user's, or deleted.
        """
        try:
            parsed = parse_session_id(conversation_id)
        except (InvalidSessionIdError, InvalidTenantIdError):
            raise ConversationNotFoundError("malformed conversation id") from None
        if not user_key.startswith(f"{parsed.tenant}:"):
            raise ConversationNotFoundError("another tenant's conversation")
        found = self.store.get(user_key, str(parsed))
        if found is None:
            raise ConversationNotFoundError("not one of the user's conversations")
        return found

    def latest(self, user_key: str) -> Conversation | None:
        """The conversation to show on page load: the most recent one, unless it is idle."""
        rows = self.store.list(user_key, limit=1)
        if rows and not self.is_idle(rows[0]):
            return rows[0]
        return None

    def is_idle(self, conversation: Conversation, at: float | None = None, *, opened_at: float = 0.0) -> bool:
        """True when neither a message nor an explicit open happened in the last ``idle_seconds``.

        Args:
            conversation: the row.
            at: the time to judge at (default now), epoch seconds.
            opened_at: when the user last opened (resumed) it on this page, epoch seconds; resuming
                an old conversation on purpose makes it current again.
        """
        last = max(conversation.last_active, opened_at)
        return (self.clock() if at is None else at) - last > self.idle_seconds

    def conversation_for_message(
        self, user_key: str, conversation_id: str, question: str, *, draft: bool, opened_at: float = 0.0
    ) -> Conversation:
        """The conversation a message being sent now belongs to; stores it as used.

        A draft (an id from :meth:`new_draft` of this page) becomes a row titled from ``question``;
        an idle conversation is left as it is and a new one is started (its id differs from
        ``conversation_id``).

        Args:
            user_key: the verified user's key.
            conversation_id: the conversation shown on the page.
            question: the message being sent (titles a new row).
            draft: True when the page created ``conversation_id`` itself with :meth:`new_draft`; an
                id that is neither a draft nor one of the user's rows is refused, so an id taken
                from elsewhere (the URL, another user) never gets the user's messages.
            opened_at: see :meth:`is_idle`.

        Raises:
            ConversationNotFoundError: ``conversation_id`` is malformed, another tenant's, or not a
                draft and not one of the user's conversations.
        """
        at = self.clock()
        try:
            parsed = parse_session_id(conversation_id)
        except (InvalidSessionIdError, InvalidTenantIdError):
            raise ConversationNotFoundError("malformed conversation id") from None
        if not user_key.startswith(f"{parsed.tenant}:"):
            raise ConversationNotFoundError("another tenant's conversation")
        existing = self.store.get(user_key, str(parsed))
        if existing is None and not draft:
            raise ConversationNotFoundError("not one of the user's conversations")
        if existing is not None and self.is_idle(existing, at, opened_at=opened_at):
            parsed, existing = self.new_draft(parsed.tenant, parsed.email), None
        if existing is None:
            row = Conversation(str(parsed), title_from(question), created_at=at, last_active=at)
        else:
            row = replace(existing, last_active=at)
        self.store.put(user_key, row)
        return row

    def rename(self, user_key: str, conversation_id: str, title: str) -> Conversation:
        """Give the conversation a new title (trimmed to one line, at most :data:`MAX_TITLE_CHARS`).

        Raises:
            ConversationNotFoundError: not one of the user's conversations.
            ValueError: the title is blank.
        """
        row = self.owned(user_key, conversation_id)
        clean = " ".join(title.split())[:MAX_TITLE_CHARS]
        if not clean:
            raise ValueError("the title must not be blank")
        renamed = replace(row, title=clean)
        self.store.put(user_key, renamed)
        return renamed

    def delete(self, user_key: str, conversation_id: str) -> None:
        """Remove the user's conversation row (the caller deletes its history in the API).

        Raises:
            ConversationNotFoundError: not one of the user's conversations.
        """
        row = self.owned(user_key, conversation_id)
        self.store.delete(user_key, row.conversation_id)


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
