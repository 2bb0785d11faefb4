"""The shared store base: one error family (503 + Retry-After in one place), DynamoDB error mapping, URLs, backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from api.errors import classify_exception
from rag.settings import SettingsError, SqliteUrl, load_settings
from rag.stores.base import RETRY_AFTER_SECONDS, StoreUnavailableError, dynamodb_errors, select_backend
from rag.stores.feedback import FeedbackUnavailableError, InMemoryFeedbackStore, SQLiteFeedbackStore
from rag.stores.history import HistoryUnavailableError, InMemoryHistoryStore, SQLiteHistoryStore, make_history_store
from rag.stores.quota import QuotaUnavailableError
from rag.stores.sessions import SessionsUnavailableError
from rag.stores.usage import UsageUnavailableError
from tests.unit.api.fakes import SESSION, ScriptedChatModel, rag_body

FAMILY = {
    HistoryUnavailableError: "history_unavailable",
    SessionsUnavailableError: "sessions_unavailable",
    UsageUnavailableError: "usage_unavailable",
    QuotaUnavailableError: "quota_unavailable",
    FeedbackUnavailableError: "feedback_unavailable",
}


@pytest.mark.parametrize(("error", "code"), FAMILY.items(), ids=FAMILY.values())
def test_every_store_error_is_one_family_mapped_to_503_with_its_code(error, code) -> None:
    exc = error("feedback (SQLite /x.db) failed: database is locked")
    assert isinstance(exc, StoreUnavailableError) and isinstance(exc, RuntimeError)
    api_error = classify_exception(exc)
    assert (api_error.status, api_error.error, api_error.retry_after) == (503, code, RETRY_AFTER_SECONDS)
    assert api_error.message == error.public_message and "SQLite" not in api_error.message
    assert api_error.headers() == {"Retry-After": "2"}


def _fail(error: type[StoreUnavailableError]):
    def failing(*args, **kwargs):
        raise error("backend detail that must not reach the client")

    return failing


@pytest.mark.parametrize(
    ("store", "method", "call", "error"),
    [
        ("usage", "query", lambda api: api.get("/api/v1/usage"), "usage_unavailable"),
        ("feedback", "query", lambda api: api.get("/api/v1/feedback/export"), "feedback_unavailable"),
        (
            "feedback",
            "put",
            lambda api: api.post("/api/v1/feedback", json={"session_id": SESSION, "turn_index": 0, "rating": "up"}),
            "feedback_unavailable",
        ),
        ("history", "load", lambda api: api.get(f"/api/v1/sessions/{SESSION}/messages"), "history_unavailable"),
        ("history", "clear", lambda api: api.delete(f"/api/v1/sessions/{SESSION}/messages"), "history_unavailable"),
    ],
)
def test_routes_answer_a_failing_store_with_its_code_message_and_retry_after(
    ops_client, stores, monkeypatch, store, method, call, error
) -> None:
    api = ops_client(ScriptedChatModel())
    assert api.post("/api/v1/llm/rag", json=rag_body()).status_code == 200  # a turn to rate
    target = getattr(stores, store)
    monkeypatch.setattr(target, method, _fail(next(e for e, c in FAMILY.items() if c == error)))
    response = call(api)
    assert response.status_code == 503, response.text
    expected = next(e for e, c in FAMILY.items() if c == error).public_message
    assert response.json() == {"error": error, "message": expected}
    assert response.headers["retry-after"] == "2"
    assert "backend detail" not in response.text


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "UpdateItem")


@pytest.mark.parametrize(
    "raised",
    [
        _client_error("ProvisionedThroughputExceededException"),
        _client_error("ResourceNotFoundException"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://10.255.255.1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=["throttled", "missing-table", "unreachable", "connect-timeout", "read-timeout"],
)
def test_dynamodb_errors_become_the_stores_error(raised) -> None:
    with (
        pytest.raises(UsageUnavailableError, match=r"^usage \(DynamoDB\) failed: ") as info,
        dynamodb_errors(UsageUnavailableError, "usage"),
    ):
        raise raised
    assert info.value.__cause__ is raised


def test_dynamodb_errors_pass_answers_through_and_leave_other_errors_alone() -> None:
    condition = _client_error("ConditionalCheckFailedException")
    with (
        pytest.raises(ClientError) as info,
        dynamodb_errors(QuotaUnavailableError, "quota", passthrough=frozenset({"ConditionalCheckFailedException"})),
    ):
        raise condition
    assert info.value is condition
    with pytest.raises(KeyError), dynamodb_errors(QuotaUnavailableError, "quota"):  # a bug stays a bug (500)
        raise KeyError("x")


@pytest.mark.parametrize(
    ("url", "path"), [("sqlite:///data/h.db", Path("data/h.db")), ("sqlite:////var/lib/h.db", Path("/var/lib/h.db"))]
)
def test_sqlite_url_relative_and_absolute(url: str, path: Path) -> None:
    settings = load_settings(tenant_id="tenanta", history_url=url, feedback_url=url)
    assert isinstance(settings.history_url, SqliteUrl) and settings.history_url.path == path
    assert settings.history_url == url  # still the string the operator wrote


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgres://db/x", "must look like sqlite:///"),
        ("sqlite://relative.db", "must look like sqlite:///"),
        ("sqlite:///", "is empty"),
        ("sqlite:///   ", "is empty"),
        ("sqlite:///:memory:", "must name a database file"),
        ("sqlite:///x.db?mode=ro", "must name a database file"),
        ("sqlite:///x\x00.db", "printable characters"),
        ("sqlite:///" + "x" * 1025, "printable characters"),
    ],
)
@pytest.mark.parametrize("variable", ["history_url", "sessions_url", "usage_url", "quota_url", "feedback_url"])
def test_bad_sqlite_urls_name_the_variable(variable: str, url: str, reason: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable.upper()}: .*{reason}"):
        load_settings(tenant_id="tenanta", **{variable: url})


def test_select_backend_url_wins_then_table_then_memory(tmp_path) -> None:
    def pick(url, table, memory=lambda: "memory"):
        return select_backend(
            url,
            table,
            sqlite=lambda p: ("sqlite", p),
            dynamodb=lambda t: ("dynamodb", t),
            memory=memory,
            names="A or B",
        )

    assert pick(SqliteUrl.parse(f"sqlite:///{tmp_path}/a.db"), "table") == ("sqlite", tmp_path / "a.db")
    assert pick(None, "table") == ("dynamodb", "table")
    assert pick(None, None) == "memory"
    with pytest.raises(ValueError, match=r"^A or B: one of them is required$"):
        pick(None, None, memory=None)
    settings = load_settings(tenant_id="tenanta", history_url=f"sqlite:///{tmp_path}/h.db", chathistory_table="t-x")
    assert isinstance(make_history_store(settings), SQLiteHistoryStore)  # the URL wins over the table
    assert isinstance(make_history_store(load_settings(tenant_id="tenanta")), InMemoryHistoryStore)


def test_a_sqlite_file_that_cannot_be_opened_is_the_stores_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FeedbackUnavailableError, match="cannot be opened") as info:
        SQLiteFeedbackStore(blocker / "f.db").query("tenanta", *_day())
    assert info.value.code == "feedback_unavailable"
    assert InMemoryFeedbackStore().query("tenanta", *_day()) == []


def _day():
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 1, tzinfo=UTC)
    return start, start + timedelta(days=1)
