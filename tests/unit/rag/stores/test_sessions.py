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
    store_from_settings,
    title_from,
)
from rag.tenant import parse_session_id

TENANT, EMAIL = "tenanta", "alice@example.com"
KEY = f"{TENANT}:{EMAIL}"
BOB = f"{TENANT}:bob@example.com"
CID1 = f"{KEY}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
CID2 = f"{KEY}:3f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"


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
    assert store.list(KEY) == []
    store.put(KEY, Conversation(CID1, "first", 1000.0, 1000.0))
    store.put(KEY, Conversation(CID2, "second", 1500.0, 2000.0))
    store.put(BOB, Conversation(f"{BOB}:4f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "bob's", 3000.0, 3000.0))
    assert [c.title for c in store.list(KEY)] == ["second", "first"]
    store.put(KEY, Conversation(CID1, "first", 1000.0, 2500.0))  # used again: back on top
    assert [c.conversation_id for c in store.list(KEY)] == [CID1, CID2]
    assert store.get(KEY, CID2) == Conversation(CID2, "second", 1500.0, 2000.0)
    assert store.get(BOB, CID2) is None  # another user's key never reaches alice's row
    store.delete(KEY, CID2)
    store.delete(KEY, CID2)  # idempotent
    assert [c.conversation_id for c in store.list(KEY)] == [CID1]
    assert [c.title for c in store.list(BOB)] == ["bob's"]


def test_dynamodb_item_shape(dynamo_store):
    dynamo_store.put(KEY, Conversation(CID1, "What is SageMaker?", 1234.5, 1240.25))
    item = dynamo_store.client.get_item(
        TableName="tenanta-sessions", Key={HASH_KEY: {"S": KEY}, RANGE_KEY: {"S": CID1}}
    )["Item"]
    assert item == {
        HASH_KEY: {"S": KEY},
        RANGE_KEY: {"S": CID1},
        "title": {"S": "What is SageMaker?"},
        "created_at": {"N": "1234.5"},
        "last_active": {"N": "1240.25"},
    }


def test_title_from_first_question():
    assert title_from("  What is\n SageMaker?  ") == "What is SageMaker?"
    long = title_from("word " * 40)
    assert len(long) == MAX_TITLE_CHARS and long.endswith("…")
    assert title_from("   ") == "New chat"


def test_draft_is_stored_with_its_first_question_then_touched(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    draft = str(manager.new_draft(TENANT, EMAIL))
    assert store.list(KEY) == []  # a draft is not stored
    row = manager.conversation_for_message(KEY, draft, "What is SageMaker?", draft=True)
    assert row == Conversation(draft, "What is SageMaker?", clock.t, clock.t)
    clock.t += 100
    again = manager.conversation_for_message(KEY, draft, "And pricing?", draft=False)
    assert again == Conversation(draft, "What is SageMaker?", 1_000_000.0, clock.t)  # title kept, activity moved


def test_idle_conversation_gets_a_new_one_and_stays_listed(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    first = manager.conversation_for_message(KEY, str(manager.new_draft(TENANT, EMAIL)), "first", draft=True)
    clock.t += 599
    assert manager.conversation_for_message(KEY, first.conversation_id, "q", draft=False).conversation_id == (
        first.conversation_id
    )
    clock.t += 601
    renewed = manager.conversation_for_message(KEY, first.conversation_id, "later", draft=False)
    assert renewed.conversation_id != first.conversation_id
    assert renewed.title == "later"
    assert [c.conversation_id for c in manager.list(KEY)] == [renewed.conversation_id, first.conversation_id]
    assert parse_session_id(renewed.conversation_id).email == EMAIL


def test_resumed_old_conversation_is_not_idle(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    old = manager.conversation_for_message(KEY, str(manager.new_draft(TENANT, EMAIL)), "old", draft=True)
    clock.t += 86_400  # a day later the user opens it from the list on purpose
    opened_at = clock.t
    clock.t += 30
    follow_up = manager.conversation_for_message(KEY, old.conversation_id, "more", draft=False, opened_at=opened_at)
    assert follow_up.conversation_id == old.conversation_id


def test_latest_is_the_newest_unless_idle(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    assert manager.latest(KEY) is None
    row = manager.conversation_for_message(KEY, str(manager.new_draft(TENANT, EMAIL)), "q", draft=True)
    assert manager.latest(KEY) == row
    clock.t += 601
    assert manager.latest(KEY) is None  # a page load after idle starts a new chat; the row stays listed
    assert manager.list(KEY) == [row]


def test_another_users_or_unknown_id_is_refused(store):
    manager = SessionManager(store, idle_seconds=600, clock=Clock())
    bob_cid = manager.conversation_for_message(BOB, str(manager.new_draft(TENANT, "bob@example.com")), "b", draft=True)
    for bad in (bob_cid.conversation_id, "garbage", f"tenantb:{EMAIL}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"):
        with pytest.raises(ConversationNotFoundError):
            manager.owned(KEY, bad)
        with pytest.raises(ConversationNotFoundError):  # not a draft of alice's page: never gets her messages
            manager.conversation_for_message(KEY, bad, "hi", draft=False)
        with pytest.raises(ConversationNotFoundError):
            manager.rename(KEY, bad, "mine now")
        with pytest.raises(ConversationNotFoundError):
            manager.delete(KEY, bad)
    assert manager.list(KEY) == []
    assert [c.title for c in manager.list(BOB)] == ["b"]  # untouched


def test_rename_and_delete_own_conversation(store):
    manager = SessionManager(store, idle_seconds=600, clock=Clock())
    row = manager.conversation_for_message(KEY, str(manager.new_draft(TENANT, EMAIL)), "q", draft=True)
    assert manager.rename(KEY, row.conversation_id, "  Pricing \n notes ").title == "Pricing notes"
    assert manager.list(KEY)[0].title == "Pricing notes"
    with pytest.raises(ValueError, match="blank"):
        manager.rename(KEY, row.conversation_id, "   ")
    manager.delete(KEY, row.conversation_id)
    assert manager.list(KEY) == []


def test_store_from_settings_sqlite_and_missing(tmp_path):
    common = {"tenant_id": TENANT, "embeddings_provider": "local", "llm_provider": "extractive"}
    store = store_from_settings(load_settings(sessions_url=f"sqlite:///{tmp_path}/x.db", **common))
    assert isinstance(store, SqliteSessionStore)
    assert store.path == tmp_path / "x.db"
    with pytest.raises(ValueError, match="SESSIONS_TABLE or SESSIONS_URL"):
        store_from_settings(load_settings(**common))
