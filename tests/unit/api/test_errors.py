"""Error mapping: 422 / 413 / 403 / 503 + Retry-After / 504, always JSON, never a traceback."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, EventStreamError, ReadTimeoutError

from rag.stores.history import HistoryUnavailableError, InMemoryHistoryStore
from tests.unit.api.fakes import OTHER_TENANT_SESSION, SESSION, ScriptedChatModel, parse_sse, rag_body


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from Bedrock"}}, "ConverseStream")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("q", "", "q:"),
        ("q", "   \n ", "must not be blank"),
        ("q", "x" * 4001, "at most 4000"),
        ("max_matching_docs", 0, "max_matching_docs"),
        ("max_matching_docs", 21, "less than or equal to 20"),
        ("temperature", 1.5, "temperature"),
        ("temperature", -0.1, "temperature"),
        ("maxTokenCount", 0, "maxTokenCount"),
        ("maxTokenCount", 4097, "maxTokenCount"),
        ("topP", 1.01, "topP"),
        ("topK", 501, "topK"),
        ("topK", -1, "topK"),
        ("stopSequences", ["a", "b", "c", "d", "e"], "stopSequences"),
        ("stopSequences", ["x" * 101], "stopSequences.0"),
        ("stopSequences", [""], "stopSequences.0"),
        ("verbose", "maybe", "verbose"),
        ("user_session_id", "not-a-session", "user_session_id"),
    ],
)
@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
def test_validation_errors_are_readable_422(make_client, route, field, value, fragment):
    client = make_client(ScriptedChatModel())
    response = client.post(route, json={**rag_body(), field: value})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert fragment in body["message"]


def test_missing_fields_and_non_json_are_422(make_client):
    client = make_client(ScriptedChatModel())
    assert client.post("/api/v1/llm/rag", json={"q": "hi"}).json()["message"].startswith("user_session_id")
    response = client.post("/api/v1/llm/rag", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_body_over_64_kib_is_413(make_client):
    client = make_client(ScriptedChatModel())
    big = {**rag_body(), "padding": "x" * (65 * 1024)}
    response = client.post("/api/v1/llm/rag", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_chunked_body_over_limit_is_413(make_client):
    client = make_client(ScriptedChatModel())

    def chunks():
        yield b'{"q": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    response = client.post("/api/v1/llm/rag", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
def test_other_tenants_session_is_403(make_client, history, route):
    model = ScriptedChatModel()
    client = make_client(model)
    response = client.post(route, json={**rag_body(), "user_session_id": OTHER_TENANT_SESSION})
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": "this session belongs to another tenant"}
    assert model.calls == []


@pytest.mark.parametrize(
    ("exc", "status", "error", "retry_after"),
    [
        (_client_error("ThrottlingException"), 503, "model_throttled", "5"),
        (_client_error("ServiceUnavailableException"), 503, "model_unavailable", "10"),
        (_client_error("ModelNotReadyException"), 503, "model_unavailable", "10"),
        (
            EndpointConnectionError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
            503,
            "model_unavailable",
            "10",
        ),
        (ReadTimeoutError(endpoint_url="https://bedrock-runtime"), 504, "model_timeout", None),
        (_client_error("ModelTimeoutException"), 504, "model_timeout", None),
        (
            EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow down"}}, "ConverseStream"),
            503,
            "model_throttled",
            "5",
        ),
        (_client_error("ValidationException"), 502, "model_error", None),
    ],
)
def test_bedrock_failures_map_to_status(make_client, history, exc, status, error, retry_after):
    model = ScriptedChatModel(fail_after=0, error=exc)
    client = make_client(model)
    response = client.post("/api/v1/llm/rag", json=rag_body())
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers.get("retry-after") == retry_after
    assert "Traceback" not in response.text
    assert history.load(SESSION) == []


def test_bedrock_failure_in_stream_is_an_error_event(make_client, history):
    model = ScriptedChatModel(replies=["a b c"], fail_after=1, error=_client_error("ThrottlingException"))
    client = make_client(model)
    response = client.post("/api/v1/llm/rag/stream", json=rag_body())
    events = parse_sse(response.text)
    assert [n for n, _ in events] == ["token", "error"]
    assert events[-1][1] == {
        "status": 503,
        "error": "model_throttled",
        "message": "The language model is busy (throttled); retry later.",
        "retry_after": 5,
    }
    assert history.load(SESSION) == []


class _BrokenHistory(InMemoryHistoryStore):
    def __init__(self, *, fail_load: bool = False, fail_append: bool = False) -> None:
        super().__init__()
        self.fail_load, self.fail_append = fail_load, fail_append

    def load(self, session_id, *, limit=None):
        if self.fail_load:
            raise HistoryUnavailableError("DynamoDB: ProvisionedThroughputExceededException")
        return super().load(session_id, limit=limit)

    def append(self, session_id, turn):
        if self.fail_append:
            raise HistoryUnavailableError("DynamoDB: unreachable")
        super().append(session_id, turn)

    def clear(self, session_id):
        raise HistoryUnavailableError("DynamoDB: unreachable")

    def replace_last(self, session_id, turn):
        raise HistoryUnavailableError("DynamoDB: unreachable")


@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
def test_history_down_before_answer_is_503(make_client, route):
    model = ScriptedChatModel()
    client = make_client(model, history_store=_BrokenHistory(fail_load=True))
    response = client.post(route, json=rag_body())
    assert response.status_code == 503
    assert response.json()["error"] == "history_unavailable"
    assert response.headers["retry-after"] == "2"
    assert "ProvisionedThroughput" not in response.text
    assert model.calls == []  # no model tokens spent on an answer that could not be saved


HISTORY_DOWN = {"error": "history_unavailable", "message": "Chat history is unavailable; try again shortly."}


def test_history_down_after_answer(make_client):
    client = make_client(ScriptedChatModel(), history_store=_BrokenHistory(fail_append=True))
    response = client.post("/api/v1/llm/rag", json=rag_body())
    assert response.status_code == 503 and response.json() == HISTORY_DOWN
    assert response.headers["retry-after"] == "2"
    events = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body()).text)
    assert [n for n, _ in events][-2:] == ["sources", "error"]
    assert events[-1][1] == {"status": 503, **HISTORY_DOWN, "retry_after": 2}


def test_sessions_routes_map_history_failures(make_client):
    client = make_client(ScriptedChatModel(), history_store=_BrokenHistory(fail_load=True))
    for response in (
        client.get(f"/api/v1/sessions/{SESSION}/messages"),
        client.delete(f"/api/v1/sessions/{SESSION}/messages"),
    ):
        assert response.status_code == 503, response.text
        assert response.json() == HISTORY_DOWN  # the backend's detail ("unreachable") stays in the logs
        assert response.headers["retry-after"] == "2"


def test_unknown_route_is_json_404(make_client):
    response = make_client(ScriptedChatModel()).get("/nope")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
