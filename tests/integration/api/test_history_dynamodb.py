"""rag.stores.history.DynamoDBHistoryStore against DynamoDB Local (the real AWS jar)."""

from __future__ import annotations

import threading
import time
import uuid

import boto3
import pytest

from rag.stores.history import DynamoDBHistoryStore, Turn
from tests.integration.conftest import FAKE_CREDS, create_table

pytestmark = pytest.mark.integration


@pytest.fixture
def table(dynamodb_local):
    name = f"history-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb_local, name, "SessionId", "expires_at")
    return boto3.resource("dynamodb", endpoint_url=dynamodb_local, **FAKE_CREDS).Table(name)


def _turn(n: int) -> Turn:
    return Turn(
        question=f"q{n}", answer=f"a{n}", sources=[{"id": f"d{n}", "score": 0.25}], created_at="c", answered_at="a"
    )


def test_concurrent_appends_lose_no_turn(table):
    store = DynamoDBHistoryStore(table, ttl_seconds=600, max_turns=100)
    threads = [threading.Thread(target=store.append, args=("s", _turn(n))) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    turns = store.load("s")
    assert sorted(t.question for t in turns) == sorted(f"q{n}" for n in range(16))
    assert turns[0].sources == [{"id": turns[0].sources[0]["id"], "score": 0.25}]


def test_oldest_turns_are_trimmed_and_ttl_is_set(table):
    store = DynamoDBHistoryStore(table, ttl_seconds=600, max_turns=3)
    for n in range(5):
        store.append("s", _turn(n))
    assert [t.question for t in store.load("s")] == ["q2", "q3", "q4"]
    assert [t.question for t in store.load("s", limit=2)] == ["q3", "q4"]
    item = table.get_item(Key={"SessionId": "s"})["Item"]
    assert time.time() < int(item["expires_at"]) <= time.time() + 600


def test_expired_session_reads_as_empty_and_clear_is_idempotent(table):
    store = DynamoDBHistoryStore(table, ttl_seconds=600)
    store.append("s", _turn(1))
    table.update_item(
        Key={"SessionId": "s"}, UpdateExpression="SET expires_at = :p", ExpressionAttributeValues={":p": 1}
    )  # DynamoDB deletes expired items lazily (up to days later): readers must filter
    assert store.load("s") == []
    store.clear("s")
    store.clear("s")
    assert table.get_item(Key={"SessionId": "s"}).get("Item") is None
