"""SQLite under many writers: threads and processes share one file (two gunicorn workers, one history) and lose nothing."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rag.stores import sqlite as sqlite_module
from rag.stores.history import HistoryUnavailableError, SQLiteHistoryStore, Turn
from rag.stores.quota import SQLiteCounterStore
from rag.stores.sqlite import BUSY_ATTEMPTS, SharedConnections, is_busy

PROCESSES, THREADS, TURNS = 4, 8, 25


def _writer(path: str, counters: str, worker: int, threads: int, turns: int, attempts: int) -> list[str]:
    """One "gunicorn worker": ``threads`` threads append turns (and read them back) and count tokens."""
    sqlite_module.BUSY_ATTEMPTS = attempts  # the child's own module (spawned): 1 = no retry
    history = SQLiteHistoryStore(path, ttl_seconds=3600, max_turns=10_000)
    quota = SQLiteCounterStore(counters)
    start = threading.Barrier(threads)

    def run(thread: int) -> list[str]:
        errors: list[str] = []
        session = f"tenanta:user{worker}-{thread}@example.com:00000000-0000-4000-8000-{worker:06d}{thread:06d}"
        start.wait()
        for n in range(turns):
            try:
                history.append(session, Turn(question=f"q{n}", answer=f"a{n}", answer_id=f"{worker}-{thread}-{n}"))
                history.load(session, limit=5)
                quota.add("tenanta#tenant#tpd#20300101", 1, 2**31)
            except Exception as exc:  # counted, not raised: the parent asserts there are none
                errors.append(f"{type(exc).__name__}: {exc}")
        return errors

    with ThreadPoolExecutor(threads) as pool:
        return [e for errors in pool.map(run, range(threads)) for e in errors]


def _hammer(tmp_path: Path, attempts: int) -> tuple[list[str], Path, Path]:
    history, counters = tmp_path / "history.db", tmp_path / "quota.db"
    SQLiteHistoryStore(history, ttl_seconds=3600)._connections.get()  # the file and its schema exist first
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like gunicorn workers
    with ctx.Pool(PROCESSES) as pool:
        results = pool.starmap(
            _writer, [(str(history), str(counters), w, THREADS, TURNS, attempts) for w in range(PROCESSES)]
        )
    return [e for r in results for e in r], history, counters


def test_many_writers_in_threads_and_processes_lose_nothing(tmp_path) -> None:
    errors, history, counters = _hammer(tmp_path, BUSY_ATTEMPTS)
    assert errors == []
    conn = sqlite3.connect(history)
    rows = conn.execute("SELECT session_id, COUNT(*), COUNT(DISTINCT answer_id) FROM chat_turns GROUP BY session_id")
    per_session = {session: (count, distinct) for session, count, distinct in rows}
    assert len(per_session) == PROCESSES * THREADS
    assert set(per_session.values()) == {(TURNS, TURNS)}  # every turn once: nothing lost, nothing doubled
    total = sqlite3.connect(counters).execute("SELECT count FROM quota").fetchone()[0]
    assert total == PROCESSES * THREADS * TURNS  # no lost increment
    store = SQLiteHistoryStore(history, ttl_seconds=3600, max_turns=10_000)
    some = next(iter(per_session))
    assert [t.question for t in store.load(some)] == [f"q{n}" for n in range(TURNS)]  # in order


def test_busy_is_retried_a_bounded_number_of_times_then_the_stores_error(tmp_path, monkeypatch) -> None:
    connections = SharedConnections(
        tmp_path / "x.db", "CREATE TABLE IF NOT EXISTS t (v INTEGER)", error=HistoryUnavailableError
    )
    calls = []

    def busy(sql, params):
        calls.append(sql)
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(connections, "_run", busy)
    with pytest.raises(HistoryUnavailableError, match="database is locked"):
        connections.execute("INSERT INTO t VALUES (1)")
    assert len(calls) == BUSY_ATTEMPTS

    calls.clear()
    outcomes = iter([sqlite3.OperationalError("database is locked"), [(1,)]])

    def busy_once(sql, params):
        calls.append(sql)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(connections, "_run", busy_once)
    assert connections.execute("SELECT 1") == [(1,)]
    assert len(calls) == 2


def test_other_sqlite_errors_are_not_retried(tmp_path) -> None:
    connections = SharedConnections(tmp_path / "x.db", error=HistoryUnavailableError, label="chat history")
    with pytest.raises(HistoryUnavailableError, match=r"^chat history \(SQLite .*x\.db\) failed: no such table"):
        connections.execute("SELECT * FROM missing")
    assert not is_busy(sqlite3.OperationalError("no such table: missing"))
    assert is_busy(sqlite3.OperationalError("database is locked"))
    assert not is_busy(ValueError("database is locked"))


def test_pragmas_wal_and_busy_timeout(tmp_path) -> None:
    connections = SharedConnections(tmp_path / "x.db")
    assert connections.execute("PRAGMA journal_mode") == [("wal",)]
    assert connections.execute("PRAGMA busy_timeout") == [(sqlite_module.BUSY_TIMEOUT_MS,)]
    assert connections.get() is connections.get()  # one shared connection (sqlite3.threadsafety == 3)
