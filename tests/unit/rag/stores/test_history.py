"""Chat history: a conversation's delete removes all of it, and nothing is readable across sessions or users."""

from __future__ import annotations

import inspect
import sqlite3
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from rag.stores.history import DynamoDBHistoryStore, HistoryStore, InMemoryHistoryStore, SQLiteHistoryStore, Turn

ALICE_1 = "tenanta:alice@example.com:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
ALICE_2 = "tenanta:alice@example.com:3f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
BOB_1 = "tenanta:bob@example.com:4f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"


def _history_table():
    """The chat history table (HASH key ``SessionId``) in moto's DynamoDB; call inside ``mock_aws()``."""
    resource = boto3.resource("dynamodb", region_name="us-east-1")
    resource.create_table(
        TableName="chathistory",
        KeySchema=[{"AttributeName": "SessionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "SessionId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return resource.Table("chathistory")


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def history(request, tmp_path, monkeypatch):
    if request.param == "memory":
        yield InMemoryHistoryStore()
    elif request.param == "sqlite":
        yield SQLiteHistoryStore(tmp_path / "history.db", ttl_seconds=3600, max_turns=5)
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with mock_aws():
            yield DynamoDBHistoryStore(_history_table(), ttl_seconds=3600, max_turns=5)


def test_clear_removes_every_turn_of_the_conversation_and_only_that_one(history) -> None:
    for n in range(8):  # more than max_turns on the SQLite and DynamoDB stores
        history.append(ALICE_1, Turn(question=f"q{n}", answer=f"a{n}"))
    history.append(ALICE_2, Turn(question="other chat", answer="kept"))
    history.append(BOB_1, Turn(question="bob's", answer="kept"))
    assert history.load(ALICE_1)
    history.clear(ALICE_1)
    assert history.load(ALICE_1) == []
    assert history.load(ALICE_1, limit=1000) == []  # nothing left behind beyond the page either
    if isinstance(history, SQLiteHistoryStore):
        rows = history._connections.execute("SELECT COUNT(*) FROM chat_turns WHERE session_id = ?", (ALICE_1,))
        assert rows == [(0,)]
    assert [t.answer for t in history.load(ALICE_2)] == ["kept"]
    assert [t.answer for t in history.load(BOB_1)] == ["kept"]
    history.clear(ALICE_1)  # idempotent


def test_turns_are_read_only_by_the_full_session_id(history) -> None:
    history.append(BOB_1, Turn(question="bob's secret", answer="x"))
    for probe in ("tenanta:bob@example.com", "tenanta", BOB_1.upper(), BOB_1 + " ", "%", "*"):
        assert history.load(probe) == [], probe


def test_the_history_store_has_no_operation_that_lists_across_sessions() -> None:
    public = {name for name, _ in inspect.getmembers(HistoryStore) if not name.startswith("_")}
    assert public == {"load", "append", "clear", "replace_last"}
    for backend in (InMemoryHistoryStore, SQLiteHistoryStore, DynamoDBHistoryStore):
        methods = {n for n, v in inspect.getmembers(backend, inspect.isfunction) if not n.startswith("_")}
        assert methods == {"load", "append", "clear", "replace_last"}, backend


def test_replace_last_rewrites_only_the_last_turn_of_that_session(history) -> None:
    for n in range(3):
        history.append(ALICE_1, Turn(question=f"q{n}", answer=f"a{n}", answer_id=f"id{n}"))
    history.append(ALICE_2, Turn(question="other", answer="other answer"))
    history.replace_last(ALICE_1, Turn(question="q2", answer="a2 regenerated", answer_id="id2b"))
    turns = history.load(ALICE_1)
    assert [(t.question, t.answer, t.answer_id) for t in turns] == [
        ("q0", "a0", "id0"),
        ("q1", "a1", "id1"),
        ("q2", "a2 regenerated", "id2b"),
    ]
    assert [t.answer for t in history.load(ALICE_2)] == ["other answer"]  # another conversation untouched


def test_replace_last_on_an_empty_session_appends(history) -> None:
    history.replace_last(BOB_1, Turn(question="q", answer="a"))
    assert [(t.question, t.answer) for t in history.load(BOB_1)] == [("q", "a")]


def test_dynamodb_replace_last_never_overwrites_a_turn_appended_since_its_read(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        store = DynamoDBHistoryStore(_history_table(), ttl_seconds=3600)
        store.append(ALICE_1, Turn(question="q0", answer="a0"))
        real_load = store.load
        raced = []

        def load_then_race(session_id, *, limit=None):
            turns = real_load(session_id, limit=limit)
            if not raced:  # another request appends between this read and the conditional write
                raced.append(True)
                store.append(session_id, Turn(question="q1", answer="a1"))
            return turns

        monkeypatch.setattr(store, "load", load_then_race)
        store.replace_last(ALICE_1, Turn(question="q1", answer="a1 regenerated"))
        assert [t.answer for t in real_load(ALICE_1)] == ["a0", "a1 regenerated"]  # q0's answer survived


def test_sqlite_append_purges_expired_rows_of_every_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.db"
    store = SQLiteHistoryStore(path, ttl_seconds=60, purge_interval_seconds=0)
    old, current = (
        "tenanta:sub-a:00000000-0000-4000-8000-000000000001",
        "tenanta:sub-b:00000000-0000-4000-8000-000000000002",
    )
    store.append(old, Turn(question="old q", answer="old a"))
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # an hour later: the first row has expired
    store.append(current, Turn(question="new q", answer="new a"))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT session_id, question FROM chat_turns ORDER BY seq").fetchall()
    assert rows == [(current, "new q")]  # the expired row is gone from the file, not only hidden
    assert [t.question for t in store.load(current)] == ["new q"]


def test_sqlite_purge_runs_at_most_once_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteHistoryStore(tmp_path / "history.db", ttl_seconds=3600, purge_interval_seconds=300)
    statements: list[str] = []
    run = store._run
    monkeypatch.setattr(store, "_run", lambda sql, params: (statements.append(sql.split()[0]), run(sql, params))[1])
    for n in range(5):
        store.append("tenanta:sub-a:00000000-0000-4000-8000-000000000001", Turn(question=f"q{n}", answer="a"))
    assert statements.count("INSERT") == 5
    assert statements.count("DELETE") == 1  # the first append purges, the next four are inside the interval
