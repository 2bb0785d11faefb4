"""Conversation stores (SQLite, DynamoDB via moto) and the conversation rules: many per user, only one's own."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from rag.settings import load_settings
from rag.stores.sessions import (
    HASH_KEY,
    MAX_TITLE_CHARS,
    RANGE_KEY,
    Conversation,
    ConversationNotFoundError,
    DynamoSessionStore,
    SessionManager,
    SqliteSessionStore,
    clean_title,
    store_from_settings,
)
from rag.tenant import parse_session_id

TENANT, EMAIL = "tenanta", "alice@example.com"
KEY = f"{TENANT}:{EMAIL}"
BOB = f"{TENANT}:bob@example.com"
CID1 = f"{KEY}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
CID2 = f"{KEY}:3f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
UUID1, UUID2 = CID1.rsplit(":", 1)[-1], CID2.rsplit(":", 1)[-1]


@pytest.fixture
def dynamo_store(monkeypatch):
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
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="tenanta-sessions",
            KeySchema=[
                {"AttributeName": HASH_KEY, "KeyType": "HASH"},
                {"AttributeName": RANGE_KEY, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": HASH_KEY, "AttributeType": "S"},
                {"AttributeName": RANGE_KEY, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        store = store_from_settings(settings)  # client from rag.aws.make_client
        assert isinstance(store, DynamoSessionStore)
        yield store


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteSessionStore(tmp_path / "nested" / "sessions.db")
    return request.getfixturevalue("dynamo_store")


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_store_lists_newest_first_and_only_the_users_rows(store):
    assert store.recent(KEY) == []
    assert store.create(KEY, Conversation(CID1, "first", 1000.0, 1000.0))
    assert not store.create(KEY, Conversation(CID1, "again", 1.0, 1.0))  # exists: unchanged
    assert store.create(KEY, Conversation(CID2, "second", 1500.0, 2000.0))
    assert store.create(BOB, Conversation(f"{BOB}:4f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "bob's", 3000.0, 3000.0))
    assert [c.title for c in store.recent(KEY)] == ["second", "first"]
    assert store.touch(KEY, UUID1, 2500.0)  # used again: back on top
    assert [c.session_id for c in store.recent(KEY)] == [CID1, CID2]
    assert store.get(KEY, UUID2) == Conversation(CID2, "second", 1500.0, 2000.0)
    assert store.get(BOB, UUID2) is None  # another user's key never reaches alice's row
    assert store.rename(KEY, UUID2, "renamed") and store.get(KEY, UUID2).title == "renamed"
    assert not store.rename(BOB, UUID2, "mine")
    assert store.delete(KEY, UUID2)
    assert not store.delete(KEY, UUID2)
    assert [c.session_id for c in store.recent(KEY)] == [CID1]
    assert [c.title for c in store.recent(BOB)] == ["bob's"]
    assert not store.touch(KEY, UUID2, 9999.0)


def test_dynamodb_item_shape(dynamo_store):
    dynamo_store.create(KEY, Conversation(CID1, "What is SageMaker?", 1234.5, 1240.25))
    item = dynamo_store.client.get_item(
        TableName="tenanta-sessions", Key={HASH_KEY: {"S": KEY}, RANGE_KEY: {"S": UUID1}}
    )["Item"]
    assert item == {
        HASH_KEY: {"S": KEY},
        RANGE_KEY: {"S": UUID1},
        "session_id": {"S": CID1},
        "title": {"S": "What is SageMaker?"},
        "created_at": {"N": "1234.5"},
        "last_activity": {"N": "1240.25"},
    }


def test_clean_title():
    assert clean_title("  What is\n SageMaker?  ") == "What is SageMaker?"
    long = clean_title("word " * 40)
    assert len(long) == MAX_TITLE_CHARS and long.endswith("…")
    assert clean_title("   ") == ""


def test_new_id_is_stored_with_its_first_question_then_touched(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    fresh = str(manager.renew(TENANT, EMAIL))
    assert manager.conversations(TENANT, EMAIL) == []  # a fresh id is not stored
    assert str(manager.session_for_message(TENANT, EMAIL, fresh, question="What is SageMaker?")) == fresh
    assert manager.conversations(TENANT, EMAIL) == [Conversation(fresh, "What is SageMaker?", clock.t, clock.t)]
    clock.t += 100
    assert str(manager.session_for_message(TENANT, EMAIL, fresh, question="And pricing?")) == fresh
    (row,) = manager.conversations(TENANT, EMAIL)
    assert (row.title, row.last_activity) == ("What is SageMaker?", clock.t)  # title kept, activity moved


def test_idle_conversation_gets_a_new_one_and_stays_listed(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    first = str(manager.session_for_message(TENANT, EMAIL, question="first"))
    clock.t += 599
    assert str(manager.session_for_message(TENANT, EMAIL, first, question="q")) == first
    clock.t += 601
    renewed = str(manager.session_for_message(TENANT, EMAIL, first, question="later"))
    assert renewed != first
    assert [(c.session_id, c.title) for c in manager.conversations(TENANT, EMAIL)] == [
        (renewed, "later"),
        (first, "first"),
    ]
    assert parse_session_id(renewed).email == EMAIL


def test_resumed_old_conversation_continues(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    old = str(manager.session_for_message(TENANT, EMAIL, question="old"))
    clock.t += 86_400  # a day later the user opens it from the list on purpose
    assert manager.open(TENANT, EMAIL, old).session_id == old
    clock.t += 30
    assert str(manager.session_for_message(TENANT, EMAIL, old, question="more")) == old


def test_page_load_is_the_latest_unless_idle_and_writes_nothing(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    fresh = manager.current(TENANT, EMAIL)
    assert manager.conversations(TENANT, EMAIL) == []
    sid = manager.session_for_message(TENANT, EMAIL, str(fresh), question="q")
    clock.t += 500
    assert manager.current(TENANT, EMAIL) == sid
    assert manager.conversations(TENANT, EMAIL)[0].last_activity == 1_000_000.0  # a page load is no activity
    clock.t += 200
    assert manager.current(TENANT, EMAIL) != sid  # idle: a new chat; the old one stays listed
    assert len(manager.conversations(TENANT, EMAIL)) == 1


def test_another_users_or_unknown_id_is_refused(store):
    manager = SessionManager(store, idle_seconds=600, clock=Clock())
    bob = str(manager.session_for_message(TENANT, "bob@example.com", question="b"))
    for bad in (bob, "garbage", f"tenantb:{EMAIL}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"):
        for call in (manager.open, manager.delete):
            with pytest.raises(ConversationNotFoundError):
                call(TENANT, EMAIL, bad)
        with pytest.raises(ConversationNotFoundError):
            manager.rename(TENANT, EMAIL, bad, "mine now")
        # sending with someone else's id starts alice's own conversation, never bob's
        assert str(manager.session_for_message(TENANT, EMAIL, bad, question="hi")) != bad
    assert all(c.session_id != bob for c in manager.conversations(TENANT, EMAIL))
    assert [c.title for c in manager.conversations(TENANT, "bob@example.com")] == ["b"]  # untouched


def test_rename_and_delete_own_conversation(store):
    manager = SessionManager(store, idle_seconds=600, clock=Clock())
    sid = str(manager.session_for_message(TENANT, EMAIL, question="q"))
    assert manager.rename(TENANT, EMAIL, sid, "  Pricing \n notes ").title == "Pricing notes"
    assert manager.conversations(TENANT, EMAIL)[0].title == "Pricing notes"
    with pytest.raises(ValueError, match="blank"):
        manager.rename(TENANT, EMAIL, sid, "   ")
    manager.delete(TENANT, EMAIL, sid)
    assert manager.conversations(TENANT, EMAIL) == []
    with pytest.raises(ConversationNotFoundError):
        manager.delete(TENANT, EMAIL, sid)


def test_store_from_settings_sqlite_and_missing(tmp_path):
    common = {"tenant_id": TENANT, "embeddings_provider": "local", "llm_provider": "extractive"}
    store = store_from_settings(load_settings(sessions_url=f"sqlite:///{tmp_path}/x.db", **common))
    assert isinstance(store, SqliteSessionStore)
    assert store.path == tmp_path / "x.db"
    with pytest.raises(ValueError, match="SESSIONS_TABLE or SESSIONS_URL"):
        store_from_settings(load_settings(**common))
