"""Session stores (SQLite, DynamoDB via moto) and the idle-renewal rules."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from rag.settings import load_settings
from rag.stores.sessions import (
    HASH_KEY,
    DynamoSessionStore,
    SessionManager,
    SessionRecord,
    SqliteSessionStore,
    store_from_settings,
)
from rag.tenant import parse_session_id

TENANT, SUBJECT = "tenanta", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
KEY = f"{TENANT}:{SUBJECT}"


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
            KeySchema=[{"AttributeName": HASH_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": HASH_KEY, "AttributeType": "S"}],
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


def test_store_roundtrip(store):
    assert store.get(KEY) is None
    store.put(KEY, SessionRecord(f"{KEY}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", 1000.0))
    store.put(KEY, SessionRecord(f"{KEY}:3f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", 2000.0))
    record = store.get(KEY)
    assert record == SessionRecord(f"{KEY}:3f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", 2000.0)
    assert store.get(f"{TENANT}:bob@example.com") is None


def test_dynamodb_item_shape(dynamo_store):
    dynamo_store.put(KEY, SessionRecord(f"{KEY}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", 1234.9))
    item = dynamo_store.client.get_item(TableName="tenanta-sessions", Key={HASH_KEY: {"S": KEY}})["Item"]
    assert item == {
        HASH_KEY: {"S": KEY},
        "session_id": {"S": f"{KEY}:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"},
        "last_active": {"N": "1234"},
    }


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_manager_keeps_session_while_active_and_renews_after_idle(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    first = manager.current(TENANT, SUBJECT)
    assert (first.tenant, first.subject) == (TENANT, SUBJECT)
    assert manager.session_for_message(TENANT, SUBJECT) == first
    clock.t += 599
    assert manager.session_for_message(TENANT, SUBJECT) == first  # activity resets the timer
    clock.t += 599
    assert manager.current(TENANT, SUBJECT) == first
    assert manager.session_for_message(TENANT, SUBJECT) == first
    clock.t += 601
    renewed = manager.session_for_message(TENANT, SUBJECT)  # checked at send time
    assert renewed != first
    assert store.get(KEY).session_id == str(renewed)
    assert store.get(KEY).last_active == clock.t


def test_page_load_after_idle_gets_new_session(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    first = manager.session_for_message(TENANT, SUBJECT)
    clock.t += 601
    second = manager.current(TENANT, SUBJECT)
    assert second != first
    assert manager.session_for_message(TENANT, SUBJECT) == second


def test_page_load_does_not_count_as_activity(store):
    clock = Clock()
    manager = SessionManager(store, idle_seconds=600, clock=clock)
    first = manager.session_for_message(TENANT, SUBJECT)
    clock.t += 500
    assert manager.current(TENANT, SUBJECT) == first
    clock.t += 200
    assert manager.session_for_message(TENANT, SUBJECT) != first


def test_renew_forces_new_id(store):
    manager = SessionManager(store, idle_seconds=600, clock=Clock())
    first = manager.session_for_message(TENANT, SUBJECT)
    second = manager.renew(TENANT, SUBJECT)
    assert second != first
    assert manager.session_for_message(TENANT, SUBJECT) == second


def test_foreign_or_broken_stored_id_is_replaced(tmp_path):
    store = SqliteSessionStore(tmp_path / "s.db")
    manager = SessionManager(store, idle_seconds=600, clock=Clock())
    store.put(KEY, SessionRecord("tenantb:bob@example.com:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", 1_000_000.0))
    sid = manager.current(TENANT, SUBJECT)
    assert (sid.tenant, sid.subject) == (TENANT, SUBJECT)
    store.put(KEY, SessionRecord("garbage", 1_000_000.0))
    assert parse_session_id(str(manager.session_for_message(TENANT, SUBJECT))).subject == SUBJECT


def test_store_from_settings_sqlite_and_missing(tmp_path):
    common = {"tenant_id": TENANT, "embeddings_provider": "local", "llm_provider": "extractive"}
    store = store_from_settings(load_settings(sessions_url=f"sqlite:///{tmp_path}/x.db", **common))
    assert isinstance(store, SqliteSessionStore)
    assert store.path == tmp_path / "x.db"
    with pytest.raises(ValueError, match="SESSIONS_TABLE or SESSIONS_URL"):
        store_from_settings(load_settings(**common))
