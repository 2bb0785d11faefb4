"""Conversations per user (SQLite, DynamoDB via moto): list, get, create, touch, rename, delete, idle renewal, ownership."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from rag.settings import load_settings
from rag.stores.base import StoreUnavailableError
from rag.stores.sessions import (
    HASH_KEY,
    MAX_PAGE,
    MAX_TITLE_CHARS,
    RANGE_KEY,
    TABLE_DEFINITION,
    Conversation,
    ConversationNotFoundError,
    DynamoSessionStore,
    SessionManager,
    SessionsUnavailableError,
    SqliteSessionStore,
    clean_title,
    store_from_settings,
    user_key,
)
from rag.tenant import SessionId, parse_session_id

TENANT, USER, OTHER = "tenanta", "alice@example.com", "bob@example.com"
KEY = f"{TENANT}:{USER}"
T0 = 1_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sessions_table(client, name: str = "tenanta-sessions") -> None:
    """The table as deploy-scripts/onboard-tenant.sh creates it."""
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **TABLE_DEFINITION)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dynamo_store(monkeypatch, clock):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        settings = load_settings(
            tenant_id=TENANT,
            aws_default_region="us-east-1",
            sessions_table="tenanta-sessions",
            embeddings_provider="local",
            llm_provider="extractive",
        )
        sessions_table(boto3.client("dynamodb", region_name="us-east-1"))
        store = store_from_settings(settings)  # resource from rag.aws.make_resource
        assert isinstance(store, DynamoSessionStore)
        assert store.ttl_seconds == settings.history_ttl_seconds  # conversations live as long as their history
        store.clock, store.ttl_seconds = clock, 86_400
        yield store


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path, clock):
    if request.param == "sqlite":
        return SqliteSessionStore(tmp_path / "nested" / "sessions.db", ttl_seconds=86_400, clock=clock)
    return request.getfixturevalue("dynamo_store")


@pytest.fixture
def manager(store, clock) -> SessionManager:
    return SessionManager(store, idle_seconds=600, clock=clock)


def conv(n: int, at: float, title: str = "", user: str = USER) -> Conversation:
    return Conversation(f"{TENANT}:{user}:{n:08x}-5b6d-4e7f-8a9b-0c1d2e3f4a5b", title, at, at)


# --- the store ---------------------------------------------------------------------------------


def test_store_create_get_touch_rename_delete(store) -> None:
    first = conv(1, T0, "What is SageMaker?")
    assert store.get(KEY, first.conversation_id) is None
    assert store.create(KEY, first) is True
    assert store.create(KEY, conv(1, T0 + 5, "other")) is False  # an existing id is never overwritten
    assert store.get(KEY, first.conversation_id) == first
    assert store.touch(KEY, first.conversation_id, T0 + 30) is True
    assert store.rename(KEY, first.conversation_id, "SageMaker basics") is True
    got = store.get(KEY, first.conversation_id)
    assert (got.title, got.created_at, got.last_activity) == ("SageMaker basics", T0, T0 + 30)
    assert store.delete(KEY, first.conversation_id) is True
    assert store.get(KEY, first.conversation_id) is None
    missing = conv(9, T0).conversation_id
    assert (store.touch(KEY, missing, T0), store.rename(KEY, missing, "x"), store.delete(KEY, missing)) == (
        False,
        False,
        False,
    )
    assert store.get(KEY, first.conversation_id) is None  # a touch of a deleted one does not bring it back


def test_store_lists_newest_activity_first_in_bounded_pages_and_only_the_users_own(store) -> None:
    for n in range(7):
        store.create(KEY, conv(n, T0 + n, f"q{n}"))
    store.create(f"{TENANT}:{OTHER}", conv(100, T0 + 50, "bob's", user=OTHER))
    store.touch(KEY, conv(2, 0).conversation_id, T0 + 100)  # activity moves it to the top
    page = store.recent(KEY, limit=3)
    assert [c.title for c in page] == ["q2", "q6", "q5"]
    rest = store.recent(KEY, limit=3, before=page[-1].last_activity)
    assert [c.title for c in rest] == ["q4", "q3", "q1"]
    assert [c.title for c in store.recent(KEY, limit=3, before=rest[-1].last_activity)] == ["q0"]
    assert all(c.session_id.startswith(f"{KEY}:") for c in page + rest)
    assert [c.title for c in store.recent(f"{TENANT}:{OTHER}")] == ["bob's"]
    assert store.get(KEY, conv(100, 0).conversation_id) is None  # bob's id under alice's key: nothing
    assert len(store.recent(KEY, limit=10_000)) == 7  # the page is capped at MAX_PAGE
    for n in range(7, MAX_PAGE + 5):
        store.create(KEY, conv(n, T0 + n))
    assert len(store.recent(KEY, limit=10_000)) == MAX_PAGE


def test_store_forgets_conversations_after_the_ttl(store, clock) -> None:
    store.create(KEY, conv(1, T0, "old"))
    store.create(KEY, conv(2, T0 + 3600, "newer"))
    clock.t = T0 + 86_400 + 1  # the first is past its TTL (not yet removed by DynamoDB's TTL)
    assert [c.title for c in store.recent(KEY)] == ["newer"]
    assert store.get(KEY, conv(1, 0).conversation_id) is None


def test_dynamodb_item_shape(dynamo_store) -> None:
    dynamo_store.create(KEY, conv(1, 1234.5678, "Title"))
    item = dynamo_store.table.get_item(Key={HASH_KEY: KEY, RANGE_KEY: conv(1, 0).conversation_id})["Item"]
    assert item == {
        HASH_KEY: KEY,
        RANGE_KEY: "00000001-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        "session_id": f"{KEY}:00000001-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        "title": "Title",
        "created_at": Decimal("1234.568"),
        "last_activity": Decimal("1234.568"),
        "expires_at": 1234 + 86_400,
    }


def test_sqlite_store_migrates_the_one_row_per_user_layout(tmp_path, clock) -> None:
    path = tmp_path / "sessions.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE sessions (user_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, last_active REAL NOT NULL)"
    )
    old.execute("INSERT INTO sessions VALUES (?, ?, ?)", (KEY, conv(5, 0).session_id, T0))
    old.commit()
    old.close()
    store = SqliteSessionStore(path, ttl_seconds=86_400, clock=clock)
    (migrated,) = store.recent(KEY)
    assert migrated == Conversation(conv(5, 0).session_id, "", T0, T0)
    assert migrated.display_title == "Untitled conversation"
    assert SqliteSessionStore(path, ttl_seconds=86_400, clock=clock).recent(KEY) == [migrated]  # idempotent


def test_backend_failures_are_sessions_unavailable(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SessionsUnavailableError) as info:
        SqliteSessionStore(blocker / "sessions.db")
    assert isinstance(info.value, StoreUnavailableError) and info.value.code == "sessions_unavailable"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():  # a table that does not exist: ResourceNotFoundException
        table = boto3.resource("dynamodb", region_name="us-east-1").Table("missing")
        with pytest.raises(SessionsUnavailableError, match="sessions \\(DynamoDB\\) failed"):
            DynamoSessionStore(table).recent(KEY)


def test_store_from_settings_sqlite_and_missing(tmp_path) -> None:
    common = {"tenant_id": TENANT, "embeddings_provider": "local", "llm_provider": "extractive"}
    store = store_from_settings(load_settings(sessions_url=f"sqlite:///{tmp_path}/x.db", **common))
    assert isinstance(store, SqliteSessionStore)
    assert store.path == tmp_path / "x.db"
    with pytest.raises(ValueError, match="SESSIONS_TABLE or SESSIONS_URL: one of them is required"):
        store_from_settings(load_settings(**common))


# --- titles and user keys ------------------------------------------------------------------------


def test_clean_title_strips_controls_and_bidi_and_limits_length() -> None:
    assert clean_title("  What is\n\tSageMaker\u2028Studio?  ") == "What is SageMaker Studio?"
    assert clean_title("evil\u202etxt.exe\u200b\x00\x1b[31m") == "eviltxt.exe[31m"
    assert clean_title("\u202e\n \x07") == ""
    long = clean_title("word " * 100)
    assert len(long) <= MAX_TITLE_CHARS and long.endswith("…") and not long.endswith(" …")
    assert len(clean_title("x" * 500)) == MAX_TITLE_CHARS


@pytest.mark.parametrize("user", ["", "a:b", "a b", "a\nb", "x" * 129, "a\u202eb", "a#b"])
def test_user_key_refuses_unusable_user_ids(user: str) -> None:
    # the rule of rag.tenant.SUBJECT_PATTERN, the same one the session id applies
    with pytest.raises(ValueError, match="invalid user subject"):
        user_key(TENANT, user)


def test_user_key_refuses_a_bad_tenant() -> None:
    with pytest.raises(ValueError, match="invalid tenant id"):
        user_key("../x", USER)


# --- the manager ---------------------------------------------------------------------------------


def test_first_message_stores_the_conversation_titled_from_the_question(manager, store, clock) -> None:
    fresh = manager.current(TENANT, USER)
    assert store.recent(KEY) == []  # a page load stores nothing: no empty conversations in the list
    sid = manager.session_for_message(TENANT, USER, str(fresh), question="How do I\nstart a notebook?")
    assert sid == fresh
    (stored,) = manager.conversations(TENANT, USER)
    assert (stored.session_id, stored.title, stored.created_at) == (str(fresh), "How do I start a notebook?", T0)
    clock.t += 60
    assert manager.session_for_message(TENANT, USER, str(sid), question="and then?") == sid
    (again,) = manager.conversations(TENANT, USER)
    assert (again.title, again.last_activity) == ("How do I start a notebook?", T0 + 60)  # title from the first


def test_idle_conversation_stays_listed_and_the_next_message_starts_a_new_one(manager, clock) -> None:
    first = manager.session_for_message(TENANT, USER, str(manager.current(TENANT, USER)), question="first")
    clock.t += 599
    assert manager.session_for_message(TENANT, USER, str(first), question="more") == first  # activity resets
    clock.t += 599
    assert manager.current(TENANT, USER) == first
    clock.t += 2  # idle: checked when the message is sent
    second = manager.session_for_message(TENANT, USER, str(first), question="after a break")
    assert second != first
    assert [c.session_id for c in manager.conversations(TENANT, USER)] == [str(second), str(first)]
    assert [c.title for c in manager.conversations(TENANT, USER)] == ["after a break", "first"]


def test_page_load_does_not_count_as_activity_and_gets_a_fresh_id_after_idle(manager, clock) -> None:
    first = manager.session_for_message(TENANT, USER, question="hello")
    clock.t += 500
    assert manager.current(TENANT, USER) == first
    clock.t += 200  # 700 s after the message: the page load did not reset the timer
    fresh = manager.current(TENANT, USER)
    assert fresh != first
    assert manager.session_for_message(TENANT, USER, str(fresh), question="new") == fresh


def test_new_chat_is_a_fresh_id_and_the_previous_one_can_be_resumed(manager, clock) -> None:
    first = manager.session_for_message(TENANT, USER, question="one")
    second = manager.renew(TENANT, USER)
    assert second != first
    assert manager.session_for_message(TENANT, USER, str(second), question="two") == second
    clock.t += 3600  # both idle now
    resumed = manager.open(TENANT, USER, str(first))
    assert (resumed.session_id, resumed.title, resumed.last_activity) == (str(first), "one", clock.t)
    assert manager.session_for_message(TENANT, USER, str(first), question="back") == first  # resumed: not idle
    assert manager.conversations(TENANT, USER)[0].session_id == str(first)


def test_someone_elses_or_a_broken_conversation_id_is_refused(manager) -> None:
    bobs = manager.session_for_message(TENANT, OTHER, question="bob's secret")
    other_tenant = f"tenantb:{USER}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
    for foreign in (str(bobs), other_tenant, "garbage", f"{KEY}:not-a-uuid"):
        with pytest.raises(ConversationNotFoundError):
            manager.open(TENANT, USER, foreign)
        with pytest.raises(ConversationNotFoundError):
            manager.rename(TENANT, USER, foreign, "mine now")
        with pytest.raises(ConversationNotFoundError):
            manager.delete(TENANT, USER, foreign)
        sid = manager.session_for_message(TENANT, USER, foreign, question="q")  # never continues someone else's
        assert sid != foreign and parse_session_id(str(sid)).user_key == KEY
    (bob_conv,) = manager.conversations(TENANT, OTHER)
    assert (bob_conv.session_id, bob_conv.title) == (str(bobs), "bob's secret")  # untouched
    assert str(bobs) not in {c.session_id for c in manager.conversations(TENANT, USER)}
    with pytest.raises(ConversationNotFoundError):  # an id of alice's that was never stored
        manager.open(TENANT, USER, str(SessionId.new(TENANT, USER)))


def test_rename_and_delete(manager) -> None:
    sid = str(manager.session_for_message(TENANT, USER, question="q"))
    renamed = manager.rename(TENANT, USER, sid, "  My\u202e chat\n")
    assert renamed.title == "My chat"
    with pytest.raises(ValueError, match="must not be blank"):
        manager.rename(TENANT, USER, sid, " \u200b\n")
    assert manager.conversations(TENANT, USER)[0].title == "My chat"
    manager.delete(TENANT, USER, sid)
    assert manager.conversations(TENANT, USER) == []
    with pytest.raises(ConversationNotFoundError):
        manager.delete(TENANT, USER, sid)
    with pytest.raises(ConversationNotFoundError):
        manager.open(TENANT, USER, sid)
