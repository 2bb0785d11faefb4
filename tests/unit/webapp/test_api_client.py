"""The RAG API client over httpx.MockTransport: SSE parsing, errors, history."""

from __future__ import annotations

import json

import httpx
import pytest

from webapp.api_client import (
    ApiError,
    DoneEvent,
    RagApiClient,
    Source,
    SourcesEvent,
    TokenEvent,
    client_from_settings,
    parse_event,
)
from webapp.chat import AnswerStream

SID = "tenanta:alice@example.com:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
SOURCES = [
    {"id": "d1", "source": "Amazon_SageMaker_FAQs.csv", "row": 3, "title": "What is?", "score": 0.9, "snippet": "s"}
]


def sse(*events: tuple[str, dict]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def ok_stream() -> bytes:
    return sse(
        ("token", {"text": "Hello"}),
        ("token", {"text": " world"}),
        ("sources", {"sources": SOURCES}),
        ("done", {"session_id": SID, "answer": "Hello world", "usage": {"input_tokens": 5}, "model_id": "m"}),
    )


def client_for(handler) -> RagApiClient:
    return RagApiClient("http://ragapi.test/", timeout=2.0, transport=httpx.MockTransport(handler))


def test_stream_parses_tokens_sources_done_and_sends_contract():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=ok_stream())

    events = list(client_for(handler).stream_answer("What?", SID, request_id="abc123"))
    assert events[:2] == [TokenEvent("Hello"), TokenEvent(" world")]
    assert isinstance(events[2], SourcesEvent)
    assert events[2].sources[0] == Source(
        id="d1", source="Amazon_SageMaker_FAQs.csv", row=3, title="What is?", score=0.9, snippet="s"
    )
    assert events[3] == DoneEvent(session_id=SID, answer="Hello world", usage={"input_tokens": 5}, model_id="m")
    (request,) = seen
    assert request.method == "POST"
    assert request.url == "http://ragapi.test/api/v1/llm/rag/stream"
    assert request.headers["X-Request-ID"] == "abc123"
    assert json.loads(request.content) == {"q": "What?", "user_session_id": SID, "max_matching_docs": 3}


def test_stream_handles_chunked_crlf_events():
    body = ok_stream().replace(b"\n", b"\r\n")
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    events = list(client_for(handler).stream_answer("q", SID))
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Hello", " world"]


def test_error_event_becomes_api_error():
    def handler(request):
        body = sse(
            ("token", {"text": "Hel"}),
            ("error", {"status": 503, "error": "bedrock_unavailable", "message": "x", "retry_after": 5}),
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    events = []
    with pytest.raises(ApiError) as info:
        events.extend(client_for(handler).stream_answer("q", SID))
    assert events == [TokenEvent("Hel")]
    assert (info.value.status, info.value.code, info.value.retry_after) == (503, "bedrock_unavailable", 5.0)
    assert info.value.retryable
    assert "not available" in info.value.message


@pytest.mark.parametrize(
    ("status", "body", "retryable", "text"),
    [
        (429, {"error": "throttled", "message": "slow down"}, True, "busy"),
        (504, {"error": "timeout", "message": "t"}, True, "too long"),
        (422, {"error": "invalid_question", "message": "The question is empty."}, False, "The question is empty."),
        (413, {"error": "too_large", "message": "The question is too long."}, False, "too long"),
        (403, {"detail": "Forbidden"}, False, "Forbidden"),
    ],
)
def test_http_errors(status, body, retryable, text):
    def handler(request):
        return httpx.Response(status, json=body, headers={"Retry-After": "7"})

    with pytest.raises(ApiError) as info:
        list(client_for(handler).stream_answer("q", SID))
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert text in info.value.message
    assert info.value.retry_after == 7.0


def test_stream_cut_off_without_done():
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(("token", {"text": "a"})))

    with pytest.raises(ApiError) as info:
        list(client_for(handler).stream_answer("q", SID))
    assert info.value.code == "incomplete"


@pytest.mark.parametrize(
    ("exc", "code"), [(httpx.ConnectError("no"), "unavailable"), (httpx.ReadTimeout("slow"), "timeout")]
)
def test_transport_failures(exc, code):
    def handler(request):
        raise exc

    client = client_for(handler)
    with pytest.raises(ApiError) as info:
        list(client.stream_answer("q", SID))
    assert info.value.code == code
    assert info.value.status is None
    with pytest.raises(ApiError):
        client.history(SID)
    assert client.ready() is False


def test_malformed_event_payload():
    with pytest.raises(ApiError) as info:
        parse_event("token", "{not json")
    assert info.value.code == "bad_stream"
    with pytest.raises(ApiError):
        parse_event("surprise", "{}")


def test_history_parses_messages_and_encodes_session_id():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "session_id": SID,
                "messages": [
                    {"role": "user", "content": "Q", "created_at": "2026-01-01T00:00:00Z"},
                    {"role": "assistant", "content": "A", "sources": SOURCES, "created_at": "2026-01-01T00:00:01Z"},
                    {"role": "system", "content": "ignored"},
                ],
            },
        )

    messages = client_for(handler).history(SID)
    assert [(m.role, m.content) for m in messages] == [("user", "Q"), ("assistant", "A")]
    assert messages[1].sources[0].row == 3
    assert seen[0].url.raw_path.decode() == (
        "/api/v1/sessions/tenanta%3Aalice%40example.com%3A2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b/messages"
    )


def test_history_of_unknown_session_is_empty_and_delete():
    def handler(request):
        return httpx.Response(404 if request.method == "GET" else 204, json={} if request.method == "GET" else None)

    client = client_for(handler)
    assert client.history(SID) == []
    client.delete_history(SID)


def test_ready():
    assert client_for(lambda r: httpx.Response(200)).ready() is True
    assert client_for(lambda r: httpx.Response(503)).ready() is False


def test_source_from_json_tolerates_odd_values():
    src = Source.from_json({"source": "a.pdf", "page": "4", "row": "x", "score": "0.5", "extra": 1})
    assert (src.page, src.row, src.score, src.title) == (4, None, 0.5, None)
    assert Source.from_json("plain").snippet == "plain"


def test_answer_stream_collects_text_and_sources():
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=ok_stream())

    answer = AnswerStream(client_for(handler), "q", SID)
    assert "".join(answer) == "Hello world"
    assert answer.sources[0].row == 3
    assert answer.done is not None
    assert answer.as_message()["sources"][0]["source"] == "Amazon_SageMaker_FAQs.csv"
    assert len(answer.request_id) == 32


def test_client_from_settings():
    from rag.settings import load_settings

    settings = load_settings(
        tenant_id="tenanta",
        rag_api_url="http://x:1",
        rag_api_timeout_seconds=9,
        embeddings_provider="local",
        llm_provider="extractive",
    )
    client = client_from_settings(settings)
    assert (client.base_url, client.timeout) == ("http://x:1", 9)
