"""The web chat's conversations: many per user, listed newest first, renamed, deleted, renewed when idle.

A *conversation* is one chat session: its id is the session id the RAG API keys the history by,
``<tenant>:<user>:<uuid>`` (:class:`rag.tenant.SessionId`), where the user is the verified
identity's user id (the token's ``sub``; this module treats it as an opaque string). The sessions
store keeps, per user, one record per conversation (:class:`Conversation`): its session id, a
title (from the first question, renamable), ``created_at`` and ``last_activity`` (epoch seconds).
The messages themselves live in the API's history store (``GET``/``DELETE
/api/v1/sessions/{session_id}/messages``).

**Use from the page** (:class:`SessionManager`; every method takes the verified ``tenant`` and
``user``, and only ever reads or changes that user's conversations):

=====================================================  ============================================
``conversations(tenant, user, limit=50, before=None)``  the sidebar: newest activity first, a bounded
                                                        page; the next page passes ``before=`` the
                                                        last item's ``last_activity``
``current(tenant, user) -> SessionId``                  page load: the latest conversation unless
                                                        idle, else a fresh id (stored with its
                                                        first message; a page load is no activity)
``renew(tenant, user) -> SessionId``                    "New chat": a fresh id (stored with its
                                                        first message, so empty chats are not listed)
``session_for_message(tenant, user, session_id,``       sending: the conversation the message
``question=) -> SessionId``                             belongs to, marked active; a new one when
                                                        ``session_id`` is idle, unknown-and-foreign
                                                        or missing (the old one stays listed); a new
                                                        conversation is titled from ``question``
``open(tenant, user, session_id) -> Conversation``      resume from the sidebar or a URL: refused
                                                        (:class:`ConversationNotFoundError`) unless
                                                        it is this user's; marks it active
``rename(tenant, user, session_id, title)``             new title (cleaned, :data:`MAX_TITLE_CHARS`);
``-> Conversation``                                     ``ValueError`` when blank
``delete(tenant, user, session_id)``                    removes the record (the page also deletes the
                                                        history through the API)
=====================================================  ============================================

Idleness is checked when a message is *sent*, not only when the page loads: a tab left open past
``SESSION_IDLE_SECONDS`` starts a new conversation with its next message, and the idle one stays
in the list (the reference deployment kept sending the stale id; the previous version of this
store kept one row per user and so hid the old conversation).

**Storage** (:func:`store_from_settings`, the rule of :func:`rag.stores.base.select_backend`):

* DynamoDB ``SESSIONS_TABLE``: HASH ``TenantId`` = ``<tenant>:<user>``, RANGE ``ConversationId`` =
  the uuid; a local secondary index :data:`ACTIVITY_INDEX` on ``last_activity`` (Number) lists a
  user's conversations newest first with one ``Query``; TTL attribute ``expires_at`` = last
  activity + ``HISTORY_TTL_SECONDS`` (the conversation is listed as long as its history is kept).
  ``deploy-scripts/onboard-tenant.sh`` creates it so.
* SQLite ``SESSIONS_URL=sqlite:///path`` (local demo, tests), on :mod:`rag.stores.sqlite` (WAL, one
  shared connection); a file of the previous one-row-per-user layout is migrated on open.

Every backend failure is raised as :class:`SessionsUnavailableError` (a
:class:`~rag.stores.base.StoreUnavailableError`).
"""

from __future__ import annotations

import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.stores.base import StoreUnavailableError, dynamodb_errors, dynamodb_table, select_backend
from rag.stores.sqlite import SharedConnections
from rag.tenant import SessionId, parse_session_id
from rag.tenant import user_key as tenant_user_key

#: The DynamoDB table's partition key, ``<tenant>:<user>``.
HASH_KEY = "TenantId"
#: The DynamoDB table's sort key: the conversation's uuid.
RANGE_KEY = "ConversationId"
#: The local secondary index ordering a user's conversations by ``last_activity``.
ACTIVITY_INDEX = "ByLastActivity"
#: Longest title kept, characters (a sidebar line).
MAX_TITLE_CHARS = 80
#: Conversations per page of :meth:`SessionManager.conversations` by default, and at most.
DEFAULT_PAGE = 50
MAX_PAGE = 100
#: The table's ``CreateTable`` key schema, attributes and index (what ``onboard-tenant.sh`` creates;
#: tests create theirs from this). https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/LSI.html
TABLE_DEFINITION: dict[str, Any] = {
    "KeySchema": [{"AttributeName": HASH_KEY, "KeyType": "HASH"}, {"AttributeName": RANGE_KEY, "KeyType": "RANGE"}],
    "AttributeDefinitions": [
        {"AttributeName": HASH_KEY, "AttributeType": "S"},
        {"AttributeName": RANGE_KEY, "AttributeType": "S"},
        {"AttributeName": "last_activity", "AttributeType": "N"},
    ],
    "LocalSecondaryIndexes": [
        {
            "IndexName": ACTIVITY_INDEX,
            "KeySchema": [
                {"AttributeName": HASH_KEY, "KeyType": "HASH"},
                {"AttributeName": "last_activity", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
}
_CONDITION_FAILED = frozenset({"ConditionalCheckFailedException"})
_SPACES = re.compile(r"\s+")


def now() -> float:
    """The current time in epoch seconds (tests patch this to a fake clock)."""
    return time.time()


class SessionsUnavailableError(StoreUnavailableError):
    """The sessions backend failed (DynamoDB throttled/unreachable, SQLite locked or unwritable)."""

    code = "sessions_unavailable"
    public_message = "Your conversations could not be loaded or saved right now; try again in a moment."


class ConversationNotFoundError(LookupError):
    """No such conversation for this user: absent, deleted, expired, malformed or someone else's.

    One error for all of these on purpose: a caller cannot tell another user's conversation from
    one that does not exist.
    """


def clean_title(text: str, *, limit: int = MAX_TITLE_CHARS) -> str:
    """A one-line title from free text: control and format characters removed, spaces collapsed, cut.

    Removed are Unicode categories ``Cc`` (controls, incl. newlines), ``Cf`` (format: bidi overrides
    such as U+202E, zero-width characters), ``Co``/``Cs``/``Cn`` (private use, surrogates,
    unassigned); line and paragraph separators become spaces. A longer text is cut at the last
    space before ``limit`` (or at ``limit``) and ends with ``…``.

    Args:
        text: e.g. the first question of a conversation, or a title typed by the user.
        limit: maximum characters of the result (≥ 2).

    Returns:
        The title; ``""`` when nothing printable is left.
    """
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Zl", "Zp") or char in "\t\n\r\v\f":
            kept.append(" ")
        elif not category.startswith("C"):
            kept.append(char)
    title = _SPACES.sub(" ", "".join(kept)).strip()
    if len(title) <= limit:
        return title
    cut = title[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit // 2 else cut).rstrip() + "…"


def user_key(tenant: str, user: str) -> str:
    """``<tenant>:<user>``, the partition of a user's conversations.

    Args:
        tenant: the tenant id (validated).
        user: the verified user id (the token's ``sub``), matching
            :data:`rag.tenant.SUBJECT_PATTERN`: the same rule the session id applies.

    Raises:
        ValueError: a bad tenant id or user id (:class:`rag.tenant.InvalidTenantIdError`,
            :class:`rag.tenant.InvalidSessionIdError`).
    """
    return tenant_user_key(tenant, user)


def _conversation_id(session_id: str) -> str:
    return session_id.rsplit(":", 1)[-1]


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation of a user.

    Attributes:
        session_id: ``<tenant>:<user>:<uuid>``, the id the API's history uses.
        title: from the first question or a rename (≤ :data:`MAX_TITLE_CHARS`); ``""`` when unknown
            (conversations of the previous store layout).
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
    """Where the conversation records live, per user key ``<tenant>:<user>``. Blocking calls.

    Every method raises :class:`SessionsUnavailableError` when the backend fails.
    """

    def recent(self, user_key: str, *, limit: int = DEFAULT_PAGE, before: float | None = None) -> list[Conversation]:
        """The user's conversations, newest ``last_activity`` first, at most ``limit``, only older than ``before``."""

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """The user's conversation, or None (absent or expired)."""

    def create(self, user_key: str, conversation: Conversation) -> bool:
        """Store a new conversation; False (nothing changed) when one with this id exists."""

    def touch(self, user_key: str, conversation_id: str, at: float) -> bool:
        """Set ``last_activity`` to ``at``; False when there is no such conversation."""

    def rename(self, user_key: str, conversation_id: str, title: str) -> bool:
        """Set the title; False when there is no such conversation."""

    def delete(self, user_key: str, conversation_id: str) -> bool:
        """Remove it; False when there was no such conversation."""


class SqliteSessionStore:
    """Conversations in a SQLite file (local demo, tests), on :class:`rag.stores.sqlite.SharedConnections`.

    Args:
        path: the database file; created with its parent directory when missing.
        ttl_seconds: a conversation is forgotten this long after its last activity, seconds.
        clock: epoch seconds for the expiry check (default :func:`now`).
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS conversations (
        user_key TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_activity REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (user_key, conversation_id)
    );
    CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (user_key, last_activity DESC);
    """
    _COLUMNS = "session_id, title, created_at, last_activity"

    def __init__(
        self, path: str | Path, *, ttl_seconds: int = 30 * 86_400, clock: Callable[[], float] | None = None
    ) -> None:
        self.path = Path(path)
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._connections = SharedConnections(
            self.path, self._SCHEMA, error=SessionsUnavailableError, label="sessions", migrate=self._migrate
        )
        self._connections.get()  # fail at start, not on the first message

    def _now(self) -> float:
        return self.clock() if self.clock else now()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Files of the one-row-per-user layout (``sessions``): each row becomes an untitled conversation."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'").fetchone():
            conn.execute(
                "INSERT OR IGNORE INTO conversations SELECT user_key, substr(session_id, -36), session_id, '', "
                "last_active, last_active, last_active + ? FROM sessions",
                (self.ttl_seconds,),
            )
            conn.execute("DROP TABLE sessions")

    @staticmethod
    def _conversation(row: tuple[Any, ...]) -> Conversation:
        return Conversation(str(row[0]), str(row[1]), float(row[2]), float(row[3]))

    def recent(self, user_key: str, *, limit: int = DEFAULT_PAGE, before: float | None = None) -> list[Conversation]:
        """See :class:`SessionStore`: one indexed ``SELECT``."""
        rows = self._connections.execute(
            f"SELECT {self._COLUMNS} FROM conversations WHERE user_key = ? AND expires_at > ? "  # noqa: S608 - constant
            "AND last_activity < ? ORDER BY last_activity DESC LIMIT ?",
            (user_key, self._now(), float("inf") if before is None else before, max(1, min(limit, MAX_PAGE))),
        )
        return [self._conversation(r) for r in rows]

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """See :class:`SessionStore`."""
        rows = self._connections.execute(
            f"SELECT {self._COLUMNS} FROM conversations "  # noqa: S608 - constant column list
            "WHERE user_key = ? AND conversation_id = ? AND expires_at > ?",
            (user_key, conversation_id, self._now()),
        )
        return self._conversation(rows[0]) if rows else None

    def create(self, user_key: str, conversation: Conversation) -> bool:
        """See :class:`SessionStore`: ``INSERT ... ON CONFLICT DO NOTHING``."""
        rows = self._connections.execute(
            "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
            (
                user_key,
                conversation.conversation_id,
                conversation.session_id,
                conversation.title,
                conversation.created_at,
                conversation.last_activity,
                conversation.last_activity + self.ttl_seconds,
            ),
        )
        return bool(rows)

    def touch(self, user_key: str, conversation_id: str, at: float) -> bool:
        """See :class:`SessionStore` (``last_activity`` never moves back)."""
        rows = self._connections.execute(
            "UPDATE conversations SET last_activity = max(last_activity, ?), expires_at = max(expires_at, ?) "
            "WHERE user_key = ? AND conversation_id = ? RETURNING 1",
            (at, at + self.ttl_seconds, user_key, conversation_id),
        )
        return bool(rows)

    def rename(self, user_key: str, conversation_id: str, title: str) -> bool:
        """See :class:`SessionStore`."""
        rows = self._connections.execute(
            "UPDATE conversations SET title = ? WHERE user_key = ? AND conversation_id = ? RETURNING 1",
            (title, user_key, conversation_id),
        )
        return bool(rows)

    def delete(self, user_key: str, conversation_id: str) -> bool:
        """See :class:`SessionStore`."""
        rows = self._connections.execute(
            "DELETE FROM conversations WHERE user_key = ? AND conversation_id = ? RETURNING 1",
            (user_key, conversation_id),
        )
        return bool(rows)


class DynamoSessionStore:
    """Conversations in the tenant's DynamoDB table (HASH ``TenantId``, RANGE ``ConversationId``, LSI by activity).

    Item shape: ``{"TenantId": "<tenant>:<user>", "ConversationId": "<uuid>", "session_id": "...",
    "title": "...", "created_at": <epoch s>, "last_activity": <epoch s>, "expires_at": <epoch s>}``
    (``title`` absent when empty).

    Args:
        table: a boto3 DynamoDB ``Table`` resource (``SESSIONS_TABLE``).
        ttl_seconds: a conversation is forgotten this long after its last activity, seconds.
        clock: epoch seconds for the expiry check (default :func:`now`).
    """

    def __init__(self, table: Any, *, ttl_seconds: int = 30 * 86_400, clock: Callable[[], float] | None = None) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def _now(self) -> float:
        return self.clock() if self.clock else now()

    @staticmethod
    def _number(value: float) -> Decimal:
        return Decimal(f"{value:.3f}")

    def _conversation(self, item: dict[str, Any]) -> Conversation | None:
        if float(item.get("expires_at", 0)) <= self._now():  # TTL passed, not yet deleted by DynamoDB
            return None
        return Conversation(
            session_id=str(item["session_id"]),
            title=str(item.get("title", "")),
            created_at=float(item.get("created_at", 0)),
            last_activity=float(item.get("last_activity", 0)),
        )

    def recent(self, user_key: str, *, limit: int = DEFAULT_PAGE, before: float | None = None) -> list[Conversation]:
        """See :class:`SessionStore`: one ``Query`` of :data:`ACTIVITY_INDEX`, descending.

        Expiry is last activity + TTL, so once one conversation is expired every older one is too.
        """
        from boto3.dynamodb.conditions import Key

        condition = Key(HASH_KEY).eq(user_key)
        if before is not None:
            condition &= Key("last_activity").lt(self._number(before))
        with dynamodb_errors(SessionsUnavailableError, "sessions"):
            items = self.table.query(
                IndexName=ACTIVITY_INDEX,
                KeyConditionExpression=condition,
                ScanIndexForward=False,
                Limit=max(1, min(limit, MAX_PAGE)),
            ).get("Items", [])
        found = [self._conversation(item) for item in items]
        return [c for c in found if c is not None]

    def get(self, user_key: str, conversation_id: str) -> Conversation | None:
        """See :class:`SessionStore`: a strongly consistent ``GetItem``."""
        with dynamodb_errors(SessionsUnavailableError, "sessions"):
            item = self.table.get_item(Key={HASH_KEY: user_key, RANGE_KEY: conversation_id}, ConsistentRead=True).get(
                "Item"
            )
        return self._conversation(item) if item else None

    def create(self, user_key: str, conversation: Conversation) -> bool:
        """See :class:`SessionStore`: a conditional ``PutItem``."""
        from botocore.exceptions import ClientError

        item: dict[str, Any] = {
            HASH_KEY: user_key,
            RANGE_KEY: conversation.conversation_id,
            "session_id": conversation.session_id,
            "created_at": self._number(conversation.created_at),
            "last_activity": self._number(conversation.last_activity),
            "expires_at": int(conversation.last_activity) + self.ttl_seconds,
        }
        if conversation.title:
            item["title"] = conversation.title
        try:
            with dynamodb_errors(SessionsUnavailableError, "sessions", passthrough=_CONDITION_FAILED):
                self.table.put_item(Item=item, ConditionExpression=f"attribute_not_exists({RANGE_KEY})")
        except ClientError:  # only ConditionalCheckFailedException passes through: it exists
            return False
        return True

    def _update(self, user_key: str, conversation_id: str, expression: str, values: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            with dynamodb_errors(SessionsUnavailableError, "sessions", passthrough=_CONDITION_FAILED):
                self.table.update_item(
                    Key={HASH_KEY: user_key, RANGE_KEY: conversation_id},
                    UpdateExpression=expression,
                    ConditionExpression=f"attribute_exists({RANGE_KEY})",
                    ExpressionAttributeValues=values,
                )
        except ClientError:  # only ConditionalCheckFailedException passes through: no such item
            return False
        return True

    def touch(self, user_key: str, conversation_id: str, at: float) -> bool:
        """See :class:`SessionStore`: a conditional ``UpdateItem``."""
        return self._update(
            user_key,
            conversation_id,
            "SET last_activity = :at, expires_at = :exp",
            {":at": self._number(at), ":exp": int(at) + self.ttl_seconds},
        )

    def rename(self, user_key: str, conversation_id: str, title: str) -> bool:
        """See :class:`SessionStore`: a conditional ``UpdateItem``."""
        return self._update(user_key, conversation_id, "SET title = :title", {":title": title})

    def delete(self, user_key: str, conversation_id: str) -> bool:
        """See :class:`SessionStore`: ``DeleteItem`` returning the old item."""
        with dynamodb_errors(SessionsUnavailableError, "sessions"):
            response = self.table.delete_item(
                Key={HASH_KEY: user_key, RANGE_KEY: conversation_id}, ReturnValues="ALL_OLD"
            )
        return bool(response.get("Attributes"))


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

    def is_idle(self, conversation: Conversation, at: float | None = None) -> bool:
        """True when ``conversation`` was last active more than ``idle_seconds`` before ``at`` (default now)."""
        return (self.clock() if at is None else at) - conversation.last_activity > self.idle_seconds

    def conversations(
        self, tenant: str, user: str, *, limit: int = DEFAULT_PAGE, before: float | None = None
    ) -> list[Conversation]:
        """The user's conversations, newest activity first (a page of at most ``limit``, ≤ :data:`MAX_PAGE`).

        Args:
            tenant: the tenant id.
            user: the verified user id.
            limit: page size.
            before: only conversations last active before this (the previous page's last
                ``last_activity``), epoch seconds.

        Raises:
            ValueError: bad tenant or user id.
            SessionsUnavailableError: the store failed.
        """
        return self.store.recent(user_key(tenant, user), limit=limit, before=before)

    def current(self, tenant: str, user: str) -> SessionId:
        """The conversation to show on page load: the latest one unless idle, else a fresh id.

        A page load is not activity: nothing is written (a fresh id is stored with its first message).

        Raises:
            ValueError: bad tenant or user id.
            SessionsUnavailableError: the store failed.
        """
        latest = self.store.recent(user_key(tenant, user), limit=1)
        if latest and not self.is_idle(latest[0]):
            return parse_session_id(latest[0].session_id)
        return self.renew(tenant, user)

    def renew(self, tenant: str, user: str) -> SessionId:
        """A fresh conversation id ("New chat", or after an idle period); stored with its first message.

        Raises:
            ValueError: bad tenant or user id.
        """
        user_key(tenant, user)
        return SessionId.new(tenant, user)

    def session_for_message(
        self, tenant: str, user: str, session_id: str | None = None, *, question: str = ""
    ) -> SessionId:
        """The conversation a message being sent now belongs to; marks it active.

        Args:
            tenant: the tenant id.
            user: the verified user id.
            session_id: the conversation on the page (None: the latest one, as :meth:`current`).
            question: the message; titles a conversation this call creates.

        Returns:
            ``session_id`` when it is this user's and not idle (created if it is new); else a new
            conversation's id (the idle one stays listed). A malformed or foreign ``session_id``
            also gets a new conversation (never someone else's).

        Raises:
            ValueError: bad tenant or user id.
            SessionsUnavailableError: the store failed.
        """
        at = self.clock()
        if session_id is None:
            session_id = str(self.current(tenant, user))
        owned = self._own(tenant, user, session_id)
        if owned is not None:
            key, conversation_id = owned
            existing = self.store.get(key, conversation_id)
            if existing is None:
                # a fresh id from current()/renew(): stored now (another tab may just have stored it)
                new = Conversation(session_id, clean_title(question), at, at)
                if self.store.create(key, new) or self.store.touch(key, conversation_id, at):
                    return parse_session_id(session_id)
            elif not self.is_idle(existing, at) and self.store.touch(key, conversation_id, at):
                return parse_session_id(session_id)
        sid = SessionId.new(tenant, user)
        self.store.create(user_key(tenant, user), Conversation(str(sid), clean_title(question), at, at))
        return sid

    def open(self, tenant: str, user: str, session_id: str) -> Conversation:
        """Resume a conversation (from the sidebar or a URL) and mark it active, so its next message continues it.

        Raises:
            ConversationNotFoundError: not a conversation of this user (malformed, someone else's,
                deleted, expired).
            ValueError: bad tenant or user id.
            SessionsUnavailableError: the store failed.
        """
        key, conversation_id = self._require(tenant, user, session_id)
        at = self.clock()
        if not self.store.touch(key, conversation_id, at):
            raise ConversationNotFoundError("no such conversation")
        conversation = self.store.get(key, conversation_id)
        if conversation is None:  # deleted between the two calls
            raise ConversationNotFoundError("no such conversation")
        return conversation

    def rename(self, tenant: str, user: str, session_id: str, title: str) -> Conversation:
        """Give a conversation a new title (cleaned by :func:`clean_title`).

        Raises:
            ValueError: the title is blank after cleaning (or bad tenant/user id).
            ConversationNotFoundError: not a conversation of this user.
            SessionsUnavailableError: the store failed.
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
        """Forget a conversation (its messages are deleted through the API by the caller).

        Raises:
            ConversationNotFoundError: not a conversation of this user (already deleted included).
            SessionsUnavailableError: the store failed.
        """
        key, conversation_id = self._require(tenant, user, session_id)
        if not self.store.delete(key, conversation_id):
            raise ConversationNotFoundError("no such conversation")

    def _require(self, tenant: str, user: str, session_id: str) -> tuple[str, str]:
        owned = self._own(tenant, user, session_id)
        if owned is None:
            raise ConversationNotFoundError("no such conversation")
        return owned


def store_from_settings(settings: Settings, dynamodb_resource: Any = None) -> SessionStore:
    """The store configured by ``SESSIONS_URL`` (SQLite, wins) or ``SESSIONS_TABLE`` (DynamoDB).

    Args:
        settings: the process settings (``HISTORY_TTL_SECONDS`` is the conversations' lifetime).
        dynamodb_resource: a boto3 DynamoDB resource to reuse; from :func:`rag.aws.make_resource` if None.

    Raises:
        ValueError: neither variable is set (the message names both).
        SessionsUnavailableError: the SQLite file cannot be opened.
    """
    ttl = settings.history_ttl_seconds
    return select_backend(
        settings.sessions_url,
        settings.sessions_table,
        sqlite=lambda path: SqliteSessionStore(path, ttl_seconds=ttl),
        dynamodb=lambda name: DynamoSessionStore(dynamodb_table(settings, name, dynamodb_resource), ttl_seconds=ttl),
        memory=None,
        names="SESSIONS_TABLE or SESSIONS_URL",
    )
